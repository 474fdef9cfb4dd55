// Shared pieces of every architecture's forward pass: embeddings, norms, projections,
// attention through the Λ kernel, feed-forward blocks and the classifier head. Builders call
// these in order and name every intermediate ("attn_norm-3") so a dump is readable.
//
// Shapes are ggml order, [row length, rows]: x is [E, n] for n tokens of the batch.
#pragma once
#include <cstdint>
#include <vector>

#include "ggml.h"
#include "key_turn.h"
#include "lmi/engine.h"
#include "model.h"

namespace lmi::engine {

// The persistent tensors a segmented forward pass (segmented.h) carries across the boundaries
// between its graphs, allocated once for maxBatch tokens on the context's device. Each graph
// uses views [.., n] of them: as leaves where it starts, as ggml_cpy destinations where it ends.
struct SegmentBoundary {
  ggml_tensor* slots = nullptr;  // I64 [maxBatch]: the slot each token's K/V row goes to
  ggml_tensor* x = nullptr;      // F32 [E, maxBatch]: the residual stream (the embeddings before layer 0)
  ggml_tensor* q = nullptr;      // F32 [Hq, maxBatch]: the layer's queries, for the kernel
  ggml_tensor* attn = nullptr;   // F32 [Hq, maxBatch]: the kernel's output
  ggml_tensor* kNew = nullptr;   // cache type [Hkv, maxBatch]: the layer's new K rows, written into the
  ggml_tensor* vNew = nullptr;   // cache by the next graph, once the kernel has attended them (kNew, vNew)
};

// What a context provides to the builder: its K/V cache tensors and the attention custom op,
// or (segmented) the boundary tensors: then the builder cuts the pass at every attention.
struct GraphTarget {
  std::vector<ggml_tensor*> kCache;  // per layer, [Hkv, nSlotL] f16/f32, rows = slots
  std::vector<ggml_tensor*> vCache;  // per layer, same
  ggml_custom_op_t attentionFn = nullptr;
  std::vector<void*> attentionUserdata;  // per layer
  const SegmentBoundary* boundary = nullptr;  // set: segmented build
  size_t segmentNodes = 0;                    // segmented: node budget of each segment's graph
  // MultiEval: kCache/vCache are f32 staging [Hkv, n] that the op itself reads the batch's rows
  // from (and writes into each sequence's cache): set_rows fills them before the op.
  bool staging = false;
  // Set: the batch's K rows are turned (key_turn.h) before the kernel attends and the cache keeps them.
  KeyTurn* keyTurn = nullptr;
};

class GraphBuilder {
 public:
  // gf: the graph to build into; segmented (target.boundary set), the first segment's graph,
  // and the builder adds one graph per attention to ctx.
  GraphBuilder(const Model& model, const GraphTarget& target, ggml_context* ctx, ggml_cgraph* gf, int64_t n,
               LogitsMode mode);

  const Model& model;
  const Hyperparameters& hp;
  ggml_context* const ctx;
  ggml_cgraph* gf;          // the graph being built (segmented: the current segment's)
  const int64_t n;          // tokens in the batch
  const LogitsMode mode;

  // Inputs, written before every compute. Segmented: inpTokens is null (the embeddings arrive in
  // the boundary's x) and inpSlots is a view of the boundary's slots.
  ggml_tensor* inpTokens = nullptr;  // I32 [n]
  ggml_tensor* inpSlots = nullptr;   // I64 [n]: the slot each token's K/V row goes to
  // Outputs of the build.
  std::vector<ggml_tensor*> attnNodes;  // per layer: the kernel's custom op node [headDim, nHead, n]
  ggml_tensor* logits = nullptr;        // [nVocab, rows]; null when mode is None
  // Segmented: the graphs in order, segments[l] ending at layer l's attention input (K/V written,
  // q and the residual stream copied into the boundary), and the last (gf after the build) from
  // the last attention to the logits. A segment's kernel is skipped when the graph after it is
  // empty (logits 'none': the last layer's attention output is not needed).
  std::vector<ggml_cgraph*> segments;

  // x = token_embd[tokens]                                   [E, n]
  ggml_tensor* embed();
  // RMSNorm (llama, qwen2) or LayerNorm (gptneox, mpt), times w (plus b when given).   [E, m]
  ggml_tensor* norm(ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, const char* name, int il);
  // w^T x (+ b)                                              [out, m]
  ggml_tensor* linear(ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, const char* name, int il);
  // Attends q ([Hq, n], un-rotated) with the Λ kernel over the layer's cache slots and the batch's
  // own k and v ([Hkv, n], rows may be strided views; converted to the cache type and passed as
  // the kernel's kNew/vNew), then writes k and v into the cache at the batch's slots. Attending
  // before writing lets a batch overwrite ring slots its earlier tokens still see, so a Λ ring
  // needs no room beyond the window. With a key turn (GraphTarget::keyTurn) k is turned first, so
  // the kernel's kNew and the cache hold the turned rows. Returns [Hq, n].
  // Segmented: ends the current graph there (q, the converted k and v, and *residual, the residual
  // stream [E, n], go to the boundary), starts the next one with the cache writes, and replaces
  // *residual by its boundary view; the returned [Hq, n] is the boundary's kernel output, which
  // the executor fills between the two graphs.
  // Staging (MultiEval): k and v go to the staging rows first, and the op takes those.
  ggml_tensor* attention(int il, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, ggml_tensor** residual);
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
  // Segmented: ends the current graph at layer il's attention and starts the next (attention()).
  ggml_tensor* segmentBoundary(int il, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, ggml_tensor** residual);
  // Writes rows ([Hkv, n], the cache's type) into layer il's cache at the batch's slots.
  void writeCache(int il, ggml_tensor* kRows, ggml_tensor* vRows);

  const GraphTarget& target_;
  bool rmsNorm_;
  ggml_tensor* xLeaf_ = nullptr;  // segmented: the current graph's view of the boundary's x
};

// Upper bounds for sizing the graph's ggml context.
size_t graphNodeBudget(const Hyperparameters& hp);

}  // namespace lmi::engine
