# cuDNN and NCCL live in the CUDA toolkit tree on the development machine and in the system
# multiarch directories on the GPU machine (Ubuntu packages). Look in both.
set(LH_GPU_LIB_HINTS
  ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib ${CUDAToolkit_LIBRARY_ROOT}/lib64
  /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib)
set(LH_GPU_INC_HINTS
  ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include /usr/include/x86_64-linux-gnu /usr/include)

function(lh_find_gpu_library target header library)
  find_path(${target}_INCLUDE_DIR ${header} HINTS ${LH_GPU_INC_HINTS})
  find_library(${target}_LIBRARY ${library} HINTS ${LH_GPU_LIB_HINTS})
  if(NOT ${target}_INCLUDE_DIR OR NOT ${target}_LIBRARY)
    message(FATAL_ERROR "Could not find ${library} (${header}). Install it or set "
                        "${target}_INCLUDE_DIR and ${target}_LIBRARY.")
  endif()
  message(STATUS "Found ${library}: ${${target}_LIBRARY} (headers in ${${target}_INCLUDE_DIR})")
  add_library(lh::${target} UNKNOWN IMPORTED)
  set_target_properties(lh::${target} PROPERTIES
    IMPORTED_LOCATION ${${target}_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${${target}_INCLUDE_DIR})
endfunction()

lh_find_gpu_library(cudnn cudnn.h cudnn)
lh_find_gpu_library(nccl nccl.h nccl)
