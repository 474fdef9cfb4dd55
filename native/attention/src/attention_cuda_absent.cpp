// lmi::attn::cuda for builds without CUDA (LMI_CUDA=OFF): reports no kernels and no
// devices; validateShape is the real one (attention_cuda_shape.cpp).
#include <stdexcept>

#include "lmi/attention_cuda.h"

namespace lmi::attn::cuda {

bool compiled() { return false; }

int deviceCount() { return 0; }

void run(const Problem& p, void* stream) {
  (void)p;
  (void)stream;
  throw std::runtime_error("lmi attention: this build has no CUDA kernels (build with LMI_CUDA=ON)");
}

}  // namespace lmi::attn::cuda
