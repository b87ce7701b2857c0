// Argument checking shared by every CPU kernel wrapper: dtype, contiguity,
// shapes. Every failure becomes a Python exception whose message names the
// kernel, the argument and its shape (ValueError for shapes, TypeError for
// dtypes, IndexError for out-of-range indices) -- a kernel never crashes the
// interpreter on bad input.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kiln {
namespace py = pybind11;

enum class DType { f32, f64, i64, b8, other };

inline DType dtype_of(const py::array& a) {
  const char k = a.dtype().kind();
  const auto n = a.itemsize();
  if (k == 'f' && n == 4) return DType::f32;
  if (k == 'f' && n == 8) return DType::f64;
  if (k == 'i' && n == 8) return DType::i64;
  if (k == 'b') return DType::b8;
  return DType::other;
}

inline std::string dtype_name(const py::array& a) {
  return py::str(a.dtype()).cast<std::string>();
}

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

inline std::string describe(const py::array& a, const char* name) {
  return std::string(name) + " of shape " + shape_str(a) + " and dtype " + dtype_name(a);
}

[[noreturn]] inline void fail_value(const std::string& msg) { throw py::value_error(msg); }
[[noreturn]] inline void fail_type(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] inline void fail_index(const std::string& msg) { throw py::index_error(msg); }

// Inputs must be C-contiguous (the ops layer makes them so); outputs must also be writeable.
inline void check_input(const py::array& a, const char* op, const char* name) {
  if (!(a.flags() & py::array::c_style))
    fail_value(std::string(op) + ": " + describe(a, name) + " must be C-contiguous");
}
inline void check_output(const py::array& a, const char* op, const char* name) {
  check_input(a, op, name);
  if (!a.writeable()) fail_value(std::string(op) + ": " + describe(a, name) + " is read-only");
}
inline void check_float(const py::array& a, const char* op, const char* name) {
  const DType d = dtype_of(a);
  if (d != DType::f32 && d != DType::f64)
    fail_type(std::string(op) + ": " + describe(a, name) + " must be float32 or float64");
}
inline void check_same_dtype(const py::array& a, const py::array& b, const char* op,
                             const char* na, const char* nb) {
  if (!a.dtype().is(b.dtype()) && dtype_of(a) != dtype_of(b))
    fail_type(std::string(op) + ": dtype mismatch: " + describe(a, na) + " vs " + describe(b, nb));
}
inline void check_same_shape(const py::array& a, const py::array& b, const char* op,
                             const char* na, const char* nb) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same)
    fail_value(std::string(op) + ": shape mismatch: " + describe(a, na) + " vs " + describe(b, nb));
}

// Calls f(T{}) with T = float or double according to the array's dtype.
template <class F>
inline void dispatch_float(const py::array& a, const char* op, const char* name, F&& f) {
  switch (dtype_of(a)) {
    case DType::f32: f(float{}); break;
    case DType::f64: f(double{}); break;
    default: fail_type(std::string(op) + ": " + describe(a, name) + " must be float32 or float64");
  }
}

template <class T> inline T* data(py::array& a) { return static_cast<T*>(a.mutable_data()); }
template <class T> inline const T* cdata(const py::array& a) { return static_cast<const T*>(a.data()); }

}  // namespace kiln
