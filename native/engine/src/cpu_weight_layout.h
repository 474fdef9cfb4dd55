// ggml's CPU backend computes some weight types much faster from its own layouts: Q4_0, Q4_K,
// IQ4_NL and Q8_0 rows interleaved for AVX2/AVX-512/NEON ("repack"), and AMX tiles where the CPU
// has them. These layouts live in ggml's CPU "extra" buffer types, which convert a tensor's bytes
// when they are written into it. llama.cpp places its weights there by default; so do we.
#pragma once
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"

namespace lmi::engine {

struct Model;

// Moves every matrix the forward pass multiplies by (and reads in no other way) from the mapping
// into the first extra buffer type whose kernels accept it, copying and converting its bytes.
// Returns the buffers created (owned by the model). Weights no extra type accepts stay mapped.
// Throws Error(Native) when a buffer cannot be allocated.
std::vector<ggml_backend_buffer_t> placeWeightsInCpuLayouts(Model& model);

}  // namespace lmi::engine
