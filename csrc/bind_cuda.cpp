// kiln._cuda: placeholder, replaced by the CUDA work.
#include <pybind11/pybind11.h>
PYBIND11_MODULE(_cuda, m) { m.doc() = "kiln CUDA kernels"; }
