// Shared pieces of every architecture's forward pass: embeddings, norms, projections,
// attention through the Λ kernel, feed-forward blocks and the classifier head. Builders call
// these in order and name every intermediate ("attn_norm-3") so a dump is readable.
//
// Shapes are ggml order, [row length, rows]: x is [E, n] for n tokens of the batch.
#pragma once
#include <cstdint>
#include <vector>

#include "ggml.h"
#include "lmi/engine.h"
#include "model.h"

namespace lmi::engine {

// What a context provides to the builder: its K/V cache tensors and the attention custom op.
struct GraphTarget {
  std::vector<ggml_tensor*> kCache;  // per layer, [Hkv, nSlotL] f16/f32, rows = slots
  std::vector<ggml_tensor*> vCache;  // per layer, same
  ggml_custom_op_t attentionFn = nullptr;
  std::vector<void*> attentionUserdata;  // per layer
};

class GraphBuilder {
 public:
  GraphBuilder(const Model& model, const GraphTarget& target, ggml_context* ctx, ggml_cgraph* gf, int64_t n,
               LogitsMode mode);

  const Model& model;
  const Hyperparameters& hp;
  ggml_context* const ctx;
  ggml_cgraph* const gf;
  const int64_t n;          // tokens in the batch
  const LogitsMode mode;

  // Inputs, written before every compute.
  ggml_tensor* inpTokens = nullptr;  // I32 [n]
  ggml_tensor* inpSlots = nullptr;   // I64 [n]: the slot each token's K/V row goes to
  // Outputs of the build.
  std::vector<ggml_tensor*> attnNodes;  // per layer: the kernel's custom op node [headDim, nHead, n]
  ggml_tensor* logits = nullptr;        // [nVocab, rows]; null when mode is None

  // x = token_embd[tokens]                                   [E, n]
  ggml_tensor* embed();
  // RMSNorm (llama, qwen2) or LayerNorm (gptneox, mpt), times w (plus b when given).   [E, m]
  ggml_tensor* norm(ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, const char* name, int il);
  // w^T x (+ b)                                              [out, m]
  ggml_tensor* linear(ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, const char* name, int il);
  // Writes k and v ([Hkv, n], rows may be strided views) into the layer's cache rows at the
  // batch's slots, then attends q ([Hq, n], un-rotated) over every slot with the Λ kernel.
  // The kernel op depends on the writes. Returns [Hq, n].
  ggml_tensor* attention(int il, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v);
  // down(silu(gate x) * up x)                                 [E, m]
  ggml_tensor* ffnSwiGLU(ggml_tensor* x, const LayerWeights& w, int il);
  // down(gelu(up x + up_b)) + down_b                          [E, m]
  ggml_tensor* ffnGelu(ggml_tensor* x, const LayerWeights& w, int il);
  // In the last layer, after attention: keeps only the rows whose logits are wanted
  // (all of them, or the last one). Identity in other layers.
  ggml_tensor* outputRows(ggml_tensor* x, int il);
  // Final norm and classifier; expands the graph to the logits (nothing when mode is None:
  // the K/V writes were expanded by attention()).
  void head(ggml_tensor* x);

  // Names t "<base>-<il>" (or "<base>" when il < 0) and returns it.
  ggml_tensor* named(ggml_tensor* t, const char* base, int il);

 private:
  const GraphTarget& target_;
  bool rmsNorm_;
};

// Upper bounds for sizing the graph's ggml context.
size_t graphNodeBudget(const Hyperparameters& hp);

}  // namespace lmi::engine
