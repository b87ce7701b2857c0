// Which instruction set the CPU kernels use, chosen once at import from cpuid.
// KILN_CPU_ISA=avx512|avx2|scalar may lower the choice (never raise it above
// what the CPU supports), so every code path can be tested on one machine.
#pragma once
#include <string>

namespace kiln::cpu {
enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };
Isa isa();                       // the ISA in use
Isa isa_supported();             // the best the CPU supports
std::string isa_name(Isa);
void set_isa(const std::string& name);  // for tests and bench; raises ValueError if unsupported
std::string get_isa();
}  // namespace kiln::cpu
