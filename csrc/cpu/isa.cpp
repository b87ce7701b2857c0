// Run-time instruction-set selection (see isa.h).
#include "cpu/isa.h"

#include <cstdlib>
#include <pybind11/pybind11.h>

namespace kiln::cpu {
namespace {
Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
  return Isa::scalar;
}

Isa parse(const std::string& s, bool* ok) {
  *ok = true;
  if (s == "avx512") return Isa::avx512;
  if (s == "avx2") return Isa::avx2;
  if (s == "scalar") return Isa::scalar;
  *ok = false;
  return Isa::scalar;
}

Isa initial() {
  Isa best = detect();
  if (const char* env = std::getenv("KILN_CPU_ISA")) {
    bool ok;
    Isa want = parse(env, &ok);
    if (ok && static_cast<int>(want) < static_cast<int>(best)) return want;
  }
  return best;
}

Isa g_isa = initial();
}  // namespace

Isa isa() { return g_isa; }
Isa isa_supported() { return detect(); }
std::string isa_name(Isa i) {
  switch (i) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "scalar";
  }
}
std::string get_isa() { return isa_name(g_isa); }
void set_isa(const std::string& name) {
  bool ok;
  Isa want = parse(name, &ok);
  if (!ok) throw pybind11::value_error("set_isa: unknown ISA '" + name + "' (avx512, avx2, scalar)");
  if (static_cast<int>(want) > static_cast<int>(detect()))
    throw pybind11::value_error("set_isa: this CPU does not support " + name);
  g_isa = want;
}
}  // namespace kiln::cpu
