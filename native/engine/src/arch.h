// Per-architecture knowledge: which GGUF tensors exist and their shapes (the loader checks the
// file against it), and one short graph builder per architecture over the shared helpers in
// graph.h. Tensor names are llama.cpp's.
#pragma once
#include <string>
#include <vector>

#include "lmi/engine.h"
#include "model.h"

namespace lmi::engine {

class GraphBuilder;

// One tensor the architecture reads: its GGUF name, expected shape (ggml order), whether it must
// be present, and where the loader stores it. `vector` tensors (norm weights, biases) must be F32.
struct TensorSlot {
  std::string name;
  std::vector<int64_t> shape;
  bool required = true;
  bool vector = false;
  ggml_tensor** dst = nullptr;
};

struct ArchPlan {
  std::vector<TensorSlot> tensors;
  // Names that mean a variant this engine does not implement (e.g. MoE, learned positions):
  // their presence is an UNSUPPORTED error rather than silently wrong output.
  std::vector<std::pair<std::string, std::string>> unsupported;  // name, what it means
};

// Checks the hyperparameters for the architecture (throws Error INVALID_ARGUMENT) and returns
// the tensors to load into `model`. The plan's dst pointers point into model.
ArchPlan planArch(Model& model);

// Builds the forward pass of model.arch into the builder's graph.
void buildArch(GraphBuilder& g);

// The tensors shared by the LayerNorm / fused-QKV / GELU-MLP architectures (gptneox, mpt):
// token_embd, output_norm, output (optional: tied), and per layer attn_norm, attn_qkv
// ([q | k | v] blocks), attn_output, ffn_norm, ffn_up, ffn_down. gptneox requires every bias;
// for mpt they are optional.
ArchPlan planLayerNormFusedQkv(Model& m, bool biasesRequired);

// The per-architecture halves of the above.
ArchPlan planLlama(Model& m);    // llama and qwen2
ArchPlan planGptNeoX(Model& m);
ArchPlan planMpt(Model& m);
void buildLlama(GraphBuilder& g);  // llama and qwen2
void buildGptNeoX(GraphBuilder& g);
void buildMpt(GraphBuilder& g);

}  // namespace lmi::engine
