// The GPU side of the engine, reached only through ggml's backend registry and the CUDA Λ
// kernel's plain C++ interface (lmi/attention_cuda.h), so this file and everything that includes
// it compile with the host compiler in every build; only gpu_sync.cpp touches the CUDA runtime.
#pragma once
#include "ggml-backend.h"
#include "lmi/attention.h"
#include "lmi/engine.h"

namespace lmi::engine {

// The GPU Device::Gpu runs on: ggml's first GPU device. Throws Error(Unsupported) with
// gpuUnavailableReason() when there is none.
ggml_backend_dev_t requireGpu();

// The CUDA Λ kernel: every pointer of p is a device pointer. kernelValidateShape() checks sizes
// and options without dereferencing anything; kernelRun() enqueues the kernel on the default
// stream and waits for it (ggml's CUDA streams are non-blocking, so they do not order themselves
// after the default stream: without the wait, the next segment could read the output early).
void kernelValidateShape(const attn::Problem& p);
void kernelRun(const attn::Problem& p);

}  // namespace lmi::engine
