#include "gpu_sync.h"

#ifdef LMI_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace lmi::engine::gpu {

std::string synchronize() {
#ifdef LMI_HAVE_CUDA
  cudaError_t err = cudaDeviceSynchronize();
  if (err == cudaSuccess) err = cudaGetLastError();
  if (err != cudaSuccess) return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  return {};
#else
  return "this build has no CUDA support";
#endif
}

}  // namespace lmi::engine::gpu
