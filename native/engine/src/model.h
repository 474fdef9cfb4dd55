// Loaded weights: ggml tensors (metadata in a no_alloc context) whose data lies in the
// read-only mapping of the GGUF file. Shared, immutable after loading, so any number of
// contexts may read it from any thread.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "lmi/engine.h"
#include "mapped_file.h"

namespace lmi::engine {

// Shapes in ggml order [in, out] (dims[0] first). E = nEmbd, Hq = nHead * headDim,
// Hkv = nHeadKV * headDim, F = nFF. Optional tensors are null when absent.
struct LayerWeights {
  ggml_tensor* attnNorm = nullptr;   // [E]
  ggml_tensor* attnNormB = nullptr;  // [E]             LayerNorm bias
  ggml_tensor* wq = nullptr;         // [E, Hq]         separate projections (llama, qwen2)
  ggml_tensor* bq = nullptr;         // [Hq]
  ggml_tensor* wk = nullptr;         // [E, Hkv]
  ggml_tensor* bk = nullptr;         // [Hkv]
  ggml_tensor* wv = nullptr;         // [E, Hkv]
  ggml_tensor* bv = nullptr;         // [Hkv]
  ggml_tensor* wqkv = nullptr;       // [E, Hq + 2 Hkv] fused projection (gptneox, mpt): q | k | v blocks
  ggml_tensor* bqkv = nullptr;       // [Hq + 2 Hkv]
  ggml_tensor* wo = nullptr;         // [Hq, E]
  ggml_tensor* bo = nullptr;         // [E]
  ggml_tensor* ffnNorm = nullptr;    // [E]
  ggml_tensor* ffnNormB = nullptr;   // [E]
  ggml_tensor* ffnGate = nullptr;    // [E, F]          SwiGLU gate (llama, qwen2)
  ggml_tensor* ffnGateB = nullptr;   // [F]
  ggml_tensor* ffnUp = nullptr;      // [E, F]
  ggml_tensor* ffnUpB = nullptr;     // [F]
  ggml_tensor* ffnDown = nullptr;    // [F, E]
  ggml_tensor* ffnDownB = nullptr;   // [E]
};

struct Model {
  Arch arch = Arch::Llama;
  Hyperparameters hp;
  int threads = 1;

  Device device = Device::Cpu;
  ggml_backend_dev_t gpu = nullptr;          // Device::Gpu: the ggml device holding the weights

  std::unique_ptr<MappedFile> file;
  ggml_context* ctx = nullptr;               // tensor metadata only (no_alloc)
  // Cpu: a CPU buffer over the mapping (does not own it). Gpu: device memory holding a copy.
  ggml_backend_buffer_t buffer = nullptr;
  // CPU: the matrices placed in ggml's faster CPU layouts (cpu_weight_layout.h), copied out of the mapping.
  std::vector<ggml_backend_buffer_t> layoutBuffers;
  std::vector<WeightLayout> weightLayouts;  // what placeWeightsInCpuLayouts did
  // token_embd's rows in the mapping, on either device: the segmented forward pass looks the
  // batch's embeddings up on the host (ggml's CUDA get_rows lacks the k-quant types).
  const void* tokEmbdHost = nullptr;

  ggml_tensor* tokEmbd = nullptr;      // [E, nVocab]
  ggml_tensor* outputNorm = nullptr;   // [E]
  ggml_tensor* outputNormB = nullptr;  // [E]
  ggml_tensor* output = nullptr;       // [E, nVocab]; == tokEmbd when the classifier is tied
  std::vector<LayerWeights> layers;

  // What the Λ kernel needs to encode positions; alibiSlopes backs pe.alibiSlopes.
  attn::PositionEncoding pe;
  std::vector<float> alibiSlopes;  // [nHead] (mpt)
  float attnScale = 1.0f;          // 1 / sqrt(headDim)

  size_t weightBytes = 0;

  Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model();
};

// ALiBi slopes as ggml's soft_max (and so llama.cpp) derives them from max_bias, for any head
// count: with n2 = the largest power of two <= nHead, m0 = 2^(-maxBias / n2) and
// m1 = 2^(-(maxBias / 2) / n2), head h < n2 gets m0^(h+1) and head h >= n2 gets m1^(2(h - n2) + 1).
std::vector<float> alibiSlopes(int64_t nHead, double maxBias);

}  // namespace lmi::engine
