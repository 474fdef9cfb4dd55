// The segmented forward pass: how a model runs where the Λ kernel cannot be a ggml custom op
// (ggml's CUDA backend runs GGML_OP_CUSTOM on no device but the CPU).
//
// The pass is cut at every attention into nLayer + 1 ordinary ggml graphs, computed one after
// another on the context's backend:
//   segment 0      embeddings (looked up on the host) -> layer 0 up to its attention input
//   segment l      layer l-1's output projection, residual and feed-forward -> layer l up to its
//                  attention input
//   segment nLayer the last layer's tail -> final norm and classifier (logits)
// Each segment copies its layer's new K/V rows (in the cache's type), q and the residual stream
// into small persistent "boundary" tensors (SegmentBoundary, sized for maxBatch, on the context's
// device). Between segment l and l + 1 the executor calls the Λ kernel directly on the tensors'
// data: q, the layer's K/V cache and the new rows -> the boundary's attention output. Segment
// l + 1 first writes the new rows into the cache (set_rows: attended before written, see
// GraphBuilder::attention), then starts from the attention output and the residual stream (leaves). Nothing crosses a boundary
// except through those tensors, so one graph allocator serves every segment.
//
// Backend-generic: on the CPU backend the kernel is lmi::attn::run with the context's threads
// (what tests compare with the single-graph path); on a GPU, lmi::attn::cuda::run on device
// pointers, after ggml's compute has synchronized and followed by a device synchronize.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "context_impl.h"

namespace lmi::engine {

class SegmentedExecutor {
 public:
  // Allocates the boundary tensors (and, on a GPU, device copies of positions and ALiBi slopes)
  // on the context's backend. c must have its backend, K/V and graph allocator.
  explicit SegmentedExecutor(Context::Impl& c);
  ~SegmentedExecutor();
  SegmentedExecutor(const SegmentedExecutor&) = delete;
  SegmentedExecutor& operator=(const SegmentedExecutor&) = delete;

  // Builds the largest graph and reserves the compute buffer for it now (a GPU context does this
  // at creation, so that a model the device cannot run, or memory it lacks, fails there).
  void prepare() { reserve(); }
  // Context::run for the staged batch: archive copies, inputs, segments and kernels, logits.
  void run(float* logits);

 private:
  struct Graph;

  Graph& graphFor(int64_t n, LogitsMode mode);
  std::unique_ptr<Graph> build(int64_t n, LogitsMode mode);
  // Allocates every segment of g in the compute buffer; false when the buffer had to grow (the
  // cached graphs' tensors then point into the freed one).
  bool allocate(Graph& g);
  void reserve();
  void archiveCopies();
  void uploadInputs();
  attn::Problem problem(int il) const;
  void compute(ggml_cgraph* gf);

  Context::Impl& c_;
  const bool gpu_;
  ggml_context* boundaryCtx_ = nullptr;
  ggml_backend_buffer_t boundaryBuffer_ = nullptr;
  SegmentBoundary boundary_;
  ggml_tensor* qPosDev_ = nullptr;     // GPU: I64 [maxBatch]
  ggml_tensor* slotPosDev_ = nullptr;  // GPU: I64 [nSlot + nArchive]
  ggml_tensor* slopesDev_ = nullptr;   // GPU, ALiBi: F32 [nHead]
  GraphTarget target_;
  std::vector<std::unique_ptr<Graph>> graphs_;
  uint64_t clock_ = 0;
  bool reserved_ = false;
  std::vector<float> embd_;            // [maxBatch][E] the batch's embeddings, on the host
  std::vector<attn::Problem> problems_;
  std::vector<uint8_t> rowCopy_;       // GPU archive copies pass through the host
};

}  // namespace lmi::engine
