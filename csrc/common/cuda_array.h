// Argument checking for the kiln._cuda kernel wrappers: the CUDA counterpart of
// common/array.h. A CUDA argument is any Python object exposing
// __cuda_array_interface__ (CuPy, PyTorch, Numba, kiln's own device arrays);
// this header reads its shape, typestr, data pointer, strides and stream, and
// turns every problem into a Python exception naming the kernel and the
// argument: TypeError for a non-CUDA object or a wrong dtype, ValueError for
// shapes, strides and read-only outputs. Host code only (pybind11).
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "common/array.h"

namespace kiln::cuda {
namespace py = pybind11;
using kiln::DType;
using kiln::fail_type;
using kiln::fail_value;

// A parsed __cuda_array_interface__: a view, it owns nothing. The caller keeps
// the Python object alive for the duration of the call.
struct CudaArray {
  void* ptr = nullptr;
  std::vector<int64_t> shape;
  int64_t size = 1;  // number of elements
  DType dtype = DType::other;
  std::string typestr;  // as given, e.g. "<f4"
  bool readonly = false;
  std::optional<uintptr_t> stream;  // the interface's "stream" entry; empty when absent or None

  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  template <class T> T* data() const { return static_cast<T*>(ptr); }
};

// "numpy.ndarray", "torch.Tensor", "int"
inline std::string type_name(py::handle obj) {
  const py::handle t = reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr()));
  const std::string mod = py::str(t.attr("__module__")), qual = py::str(t.attr("__qualname__"));
  return mod == "builtins" ? qual : mod + "." + qual;
}

inline std::string dtype_name(const CudaArray& a) {
  switch (a.dtype) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i64: return "int64";
    case DType::b8: return "bool";
    default: return "typestr '" + a.typestr + "'";
  }
}

inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline std::string describe(const CudaArray& a, const char* name) {
  return std::string(name) + " of shape " + shape_str(a.shape) + " and dtype " + dtype_name(a);
}

inline DType dtype_from_typestr(const std::string& t) {
  if (t.size() < 3 || t[0] == '>') return DType::other;  // big-endian data never comes from a GPU
  const std::string kind = t.substr(1);
  if (kind == "f4") return DType::f32;
  if (kind == "f8") return DType::f64;
  if (kind == "i8") return DType::i64;
  if (kind == "b1") return DType::b8;
  return DType::other;
}

// Parses obj.__cuda_array_interface__ (protocol versions 0-3). Raises TypeError
// when obj has none, ValueError when it is malformed or not C-contiguous.
inline CudaArray cuda_array(py::handle obj, const char* op, const char* name) {
  const std::string pre = std::string(op) + ": " + name;
  // getattr with a default swallows any error: a property that raises (torch's on a
  // host tensor) reads as "no interface", which is what it means.
  const py::object iface = py::getattr(obj, "__cuda_array_interface__", py::none());
  if (iface.is_none())
    fail_type(pre + " must be a CUDA array (an object with __cuda_array_interface__), got " +
              type_name(obj));
  if (!py::isinstance<py::dict>(iface))
    fail_type(pre + ": __cuda_array_interface__ must be a dict, got " + type_name(iface));
  const auto d = iface.cast<py::dict>();
  CudaArray a;
  try {
    for (auto s : d["shape"].cast<py::tuple>()) a.shape.push_back(s.cast<int64_t>());
    a.typestr = d["typestr"].cast<std::string>();
    const auto data = d["data"].cast<py::tuple>();
    if (data.size() != 2) throw py::cast_error("data must be a (pointer, read_only) pair");
    a.ptr = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
    a.readonly = data[1].cast<bool>();
  } catch (py::error_already_set& e) {
    fail_value(pre + ": malformed __cuda_array_interface__ (" + e.what() + ")");
  } catch (py::cast_error& e) {
    fail_value(pre + ": malformed __cuda_array_interface__ (" + e.what() + ")");
  }
  a.dtype = dtype_from_typestr(a.typestr);
  for (int64_t s : a.shape) {
    if (s < 0) fail_value(pre + " has a negative extent in shape " + shape_str(a.shape));
    a.size *= s;
  }
  if (d.contains("mask") && !d["mask"].is_none())
    fail_value(pre + ": masked CUDA arrays are not supported");
  if (d.contains("stream") && !d["stream"].is_none()) {
    const py::object st = d["stream"];
    if (!py::isinstance<py::int_>(st) || st.cast<py::int_>() < py::int_(0))
      fail_value(pre + ": __cuda_array_interface__ stream must be None or a non-negative int, got " +
                 std::string(py::repr(st)));
    a.stream = st.cast<uintptr_t>();
  }
  if (a.ptr == nullptr && a.size > 0) fail_value(pre + " has a null data pointer");
  // strides None means C-contiguous; explicit strides must be the C-contiguous ones
  // (extents of 1 may carry any stride, as NumPy and PyTorch sometimes report).
  if (d.contains("strides") && !d["strides"].is_none() && a.size > 0) {
    const auto strides = d["strides"].cast<py::tuple>();
    const int64_t item = std::strtoll(a.typestr.c_str() + (a.typestr.size() >= 2 ? 2 : 0), nullptr, 10);
    bool contiguous = static_cast<int64_t>(strides.size()) == a.ndim();
    int64_t expect = item;
    for (int64_t i = a.ndim() - 1; contiguous && i >= 0; --i) {
      if (a.shape[i] != 1 && strides[i].cast<int64_t>() != expect) contiguous = false;
      expect *= a.shape[i];
    }
    if (!contiguous)
      fail_value(std::string(op) + ": " + describe(a, name) + " must be C-contiguous, got strides " +
                 std::string(py::str(strides)));
  }
  return a;
}

// ---- checks in the style of common/array.h --------------------------------
inline void check_output(const CudaArray& a, const char* op, const char* name) {
  if (a.readonly) fail_value(std::string(op) + ": " + describe(a, name) + " is read-only");
}
inline void check_float(const CudaArray& a, const char* op, const char* name) {
  if (a.dtype != DType::f32 && a.dtype != DType::f64)
    fail_type(std::string(op) + ": " + describe(a, name) + " must be float32 or float64");
}
inline void check_same_dtype(const CudaArray& a, const CudaArray& b, const char* op,
                             const char* na, const char* nb) {
  if (a.dtype != b.dtype || (a.dtype == DType::other && a.typestr != b.typestr))
    fail_type(std::string(op) + ": dtype mismatch: " + describe(a, na) + " vs " + describe(b, nb));
}
inline void check_same_shape(const CudaArray& a, const CudaArray& b, const char* op,
                             const char* na, const char* nb) {
  if (a.shape != b.shape)
    fail_value(std::string(op) + ": shape mismatch: " + describe(a, na) + " vs " + describe(b, nb));
}

// Calls f(T{}) with T = float or double according to the array's dtype.
template <class F>
inline void dispatch_float(const CudaArray& a, const char* op, const char* name, F&& f) {
  switch (a.dtype) {
    case DType::f32: f(float{}); break;
    case DType::f64: f(double{}); break;
    default: fail_type(std::string(op) + ": " + describe(a, name) + " must be float32 or float64");
  }
}

}  // namespace kiln::cuda
