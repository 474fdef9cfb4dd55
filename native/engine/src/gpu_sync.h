// The one place the engine calls the CUDA runtime (compiled with CUDA only when LMI_HAVE_CUDA).
#pragma once
#include <string>

namespace lmi::engine::gpu {

// Waits for all work on the device (cudaDeviceSynchronize) and returns the first error it or an
// earlier asynchronous launch reported; empty when fine. Builds without CUDA: returns an error.
std::string synchronize();

}  // namespace lmi::engine::gpu
