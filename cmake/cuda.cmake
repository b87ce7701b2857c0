# kiln._cuda: sm_80 and sm_90 machine code plus compute_90 PTX for newer GPUs.
# cudart is linked statically so the module imports on a machine with no GPU driver
# and reports that none is present instead of failing to load; the static runtime
# dlopen()s libcuda.so on first use, so libcuda is not a link dependency either.
# Sources: csrc/cuda/*.cu hold the kernels (nvcc; no pybind11, so nvcc's per-arch
# passes stay cheap); csrc/cuda/*.cpp hold the pybind11 wrappers and device
# queries (the host C++ compiler).
# Override the architectures with -DCMAKE_CUDA_ARCHITECTURES=... or the CUDAARCHS
# environment variable (both read by CMake itself).
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES "80-real;90")
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
find_package(CUDAToolkit REQUIRED)

# What compiled_architectures() reports: "80-real" -> sm_80, "90" -> sm_90 + compute_90,
# "90-virtual" -> compute_90. The symbolic values (all, all-major, native) are passed
# through as-is, since CMake resolves them inside nvcc's flags.
set(_kiln_archs "")
foreach(_a IN LISTS CMAKE_CUDA_ARCHITECTURES)
  if(_a MATCHES "^([0-9]+[af]?)-real$")
    list(APPEND _kiln_archs "sm_${CMAKE_MATCH_1}")
  elseif(_a MATCHES "^([0-9]+[af]?)-virtual$")
    list(APPEND _kiln_archs "compute_${CMAKE_MATCH_1}")
  elseif(_a MATCHES "^([0-9]+[af]?)$")
    list(APPEND _kiln_archs "sm_${CMAKE_MATCH_1}" "compute_${CMAKE_MATCH_1}")
  else()
    list(APPEND _kiln_archs "${_a}")
  endif()
endforeach()
list(JOIN _kiln_archs "," _kiln_archs)
message(STATUS "kiln: building kiln._cuda for ${_kiln_archs} (CUDA ${CMAKE_CUDA_COMPILER_VERSION})")

file(GLOB KILN_CUDA_SOURCES CONFIGURE_DEPENDS
  ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cu ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cpp)
# NO_EXTRAS: no LTO. The host side is glue around kernel launches, and LTO made the
# link the slowest step of the CUDA build; the Release strip is kept.
pybind11_add_module(_cuda MODULE NO_EXTRAS csrc/bind_cuda.cpp ${KILN_CUDA_SOURCES})
if(CMAKE_BUILD_TYPE MATCHES "^(Release|MinSizeRel)$")
  pybind11_strip(_cuda)
endif()
target_include_directories(_cuda PRIVATE csrc)
# cudart_static brings -ldl -lrt -lpthread; never CUDA::cuda_driver (libcuda.so must stay optional).
target_link_libraries(_cuda PRIVATE CUDA::cudart_static)
set_target_properties(_cuda PROPERTIES CUDA_RUNTIME_LIBRARY Static)
target_compile_definitions(_cuda PRIVATE KILN_CUDA_ARCHS="${_kiln_archs}")
target_compile_options(_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 --expt-relaxed-constexpr>
  $<$<COMPILE_LANGUAGE:CXX>:-O2 -Wall>)
install(TARGETS _cuda LIBRARY DESTINATION kiln)
