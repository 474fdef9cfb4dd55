#pragma once
#include "ggml-backend.h"
#include "ggml-cpu.h"

namespace lmi::engine {

// ggml's CPU backend running on a thread pool of its own with `threads` workers that sleep between
// graphs (polling off, so idle contexts cost no CPU). Each handle is stored as soon as it exists, so
// a caller whose destructor frees non-null handles leaks nothing when this throws Error(Native).
void createCpuBackend(int threads, ggml_threadpool** pool, ggml_backend_t* backend);

}  // namespace lmi::engine
