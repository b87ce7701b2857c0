# kiln._cuda: sm_80 and sm_90 machine code plus compute_90 PTX for newer GPUs.
# cudart is linked statically so the module imports on a machine with no GPU driver
# and reports that none is present instead of failing to load.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "80-real;90")
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
find_package(CUDAToolkit REQUIRED)
file(GLOB KILN_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cu)
pybind11_add_module(_cuda MODULE csrc/bind_cuda.cpp ${KILN_CUDA_SOURCES})
target_include_directories(_cuda PRIVATE csrc)
target_link_libraries(_cuda PRIVATE CUDA::cudart_static)
set_target_properties(_cuda PROPERTIES CUDA_RUNTIME_LIBRARY Static)
target_compile_options(_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3 --expt-relaxed-constexpr>)
install(TARGETS _cuda LIBRARY DESTINATION kiln)
