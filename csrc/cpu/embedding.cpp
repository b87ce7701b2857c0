// Embedding lookup, its backward and max_norm renormalisation (torch.nn.functional.embedding).
//   forward   out[n, :] = weight[idx[n], :]
//   backward  grad_weight[r, :] = sum_{n : idx[n] = r} grad_out[n, :] * (scale_grad_by_freq ?
//             1 / count(r) : 1), and 0 for r = padding_idx (-1: none)
//   renorm    for each distinct r in idx: weight[r] *= max_norm / (||weight[r]||_p + 1e-7) when
//             ||weight[r]||_p > max_norm (in place, as torch's embedding_renorm_)
// Backward without atomics and deterministic for any thread count: thread t owns the rows
// [V t / T, V (t + 1) / T) of grad_weight and scans every index, adding only rows it owns, in
// index order -- duplicate indices accumulate in the same order as a serial loop.
#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/kernels.h"

namespace kiln::cpu {
namespace {
void check_indices(const char* op, const Arr& idx, int64_t V) {
  check_input(idx, op, "indices");
  if (dtype_of(idx) != DType::i64)
    fail_type(std::string(op) + ": " + describe(idx, "indices") + " must be int64");
  const int64_t* p = cdata<int64_t>(idx);
  for (int64_t n = 0; n < idx.size(); ++n)
    if (p[n] < 0 || p[n] >= V)
      fail_index(std::string(op) + ": index " + std::to_string(p[n]) +
                 " is out of range for a weight of " + std::to_string(V) + " rows");
}

void check_weight(const char* op, const Arr& w, const char* name) {
  check_float(w, op, name);
  check_input(w, op, name);
  if (w.ndim() != 2) fail_value(std::string(op) + ": " + describe(w, name) + " must be 2-d");
}

void check_rows(const char* op, const Arr& a, const char* name, int64_t N, int64_t E) {
  if (a.ndim() != 2 || a.shape(0) != N || a.shape(1) != E)
    fail_value(std::string(op) + ": " + describe(a, name) + " must have shape (" +
               std::to_string(N) + ", " + std::to_string(E) + ")");
}
}  // namespace

void embedding(const Arr& weight, const Arr& indices, Arr out) {
  const char* op = "embedding";
  check_weight(op, weight, "weight");
  const int64_t V = weight.shape(0), E = weight.shape(1), N = indices.size();
  check_indices(op, indices, V);
  check_output(out, op, "out");
  check_same_dtype(weight, out, op, "weight", "out");
  check_rows(op, out, "out", N, E);
  dispatch_float(weight, op, "weight", [&](auto t) {
    using T = decltype(t);
    const T* w = cdata<T>(weight);
    const int64_t* ix = cdata<int64_t>(indices);
    T* o = data<T>(out);
    py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (N * E > 65536)
    for (int64_t n = 0; n < N; ++n) std::memcpy(o + n * E, w + ix[n] * E, sizeof(T) * size_t(E));
  });
}

void embedding_backward(const Arr& grad_out, const Arr& indices, Arr grad_weight,
                        int64_t padding_idx, bool scale_grad_by_freq) {
  const char* op = "embedding_backward";
  check_weight(op, grad_weight, "grad_weight");
  check_output(grad_weight, op, "grad_weight");
  const int64_t V = grad_weight.shape(0), E = grad_weight.shape(1), N = indices.size();
  check_indices(op, indices, V);
  check_input(grad_out, op, "grad_out");
  check_same_dtype(grad_weight, grad_out, op, "grad_weight", "grad_out");
  check_rows(op, grad_out, "grad_out", N, E);
  dispatch_float(grad_weight, op, "grad_weight", [&](auto t) {
    using T = decltype(t);
    const T* g = cdata<T>(grad_out);
    const int64_t* ix = cdata<int64_t>(indices);
    T* gw = data<T>(grad_weight);
    py::gil_scoped_release nogil;
    std::vector<int64_t> count;
    if (scale_grad_by_freq) {
      count.assign(size_t(V), 0);
      for (int64_t n = 0; n < N; ++n) ++count[size_t(ix[n])];
    }
    const bool par = N * E > 65536 && V > 1;
#pragma omp parallel if (par)
    {
      const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
      const int64_t r0 = V * tid / nt, r1 = V * (tid + 1) / nt;
      std::memset(gw + r0 * E, 0, sizeof(T) * size_t((r1 - r0) * E));
      for (int64_t n = 0; n < N; ++n) {
        const int64_t r = ix[n];
        if (r < r0 || r >= r1 || r == padding_idx) continue;
        const T s = scale_grad_by_freq ? T(1) / T(count[size_t(r)]) : T(1);
        T* dst = gw + r * E;
        const T* src = g + n * E;
        for (int64_t e = 0; e < E; ++e) dst[e] += src[e] * s;
      }
    }
  });
}

void embedding_renorm(Arr weight, const Arr& indices, double max_norm, double norm_type) {
  const char* op = "embedding_renorm";
  check_weight(op, weight, "weight");
  check_output(weight, op, "weight");
  const int64_t V = weight.shape(0), E = weight.shape(1), N = indices.size();
  check_indices(op, indices, V);
  dispatch_float(weight, op, "weight", [&](auto t) {
    using T = decltype(t);
    T* w = data<T>(weight);
    const int64_t* ix = cdata<int64_t>(indices);
    py::gil_scoped_release nogil;
    std::vector<bool> seen(size_t(V), false);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t r = ix[n];
      if (seen[size_t(r)]) continue;
      seen[size_t(r)] = true;
      T* row = w + r * E;
      double norm = 0;
      if (norm_type == 1) {
        for (int64_t e = 0; e < E; ++e) norm += std::fabs(double(row[e]));
      } else if (norm_type == 2) {
        for (int64_t e = 0; e < E; ++e) norm += double(row[e]) * double(row[e]);
        norm = std::sqrt(norm);
      } else if (std::isinf(norm_type)) {
        for (int64_t e = 0; e < E; ++e) norm = std::max(norm, std::fabs(double(row[e])));
      } else {
        for (int64_t e = 0; e < E; ++e) norm += std::pow(std::fabs(double(row[e])), norm_type);
        norm = std::pow(norm, 1.0 / norm_type);
      }
      if (norm > max_norm) {
        const T s = T(max_norm / (norm + 1e-7));
        for (int64_t e = 0; e < E; ++e) row[e] *= s;
      }
    }
  });
}

}  // namespace kiln::cpu
