// The inside of a Context, shared by context.cpp and multi_eval.cpp (which runs the staged
// batches of several contexts in one graph). Not part of the engine's public surface.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "graph.h"
#include "kv_cache.h"
#include "lmi/engine.h"
#include "model.h"

namespace lmi::engine {

// A built graph for one shape, its tensor metadata, and the nodes whose data is rewritten per call.
struct CachedGraph {
  int64_t n = 0;
  LogitsMode mode = LogitsMode::Last;
  ggml_context* ctx = nullptr;  // the graph's tensor metadata
  ggml_cgraph* gf = nullptr;
  ggml_tensor* tokens = nullptr;
  ggml_tensor* slots = nullptr;
  ggml_tensor* logits = nullptr;
  std::vector<ggml_tensor*> attnNodes;  // per layer; data is null when the node is not in the graph
  uint64_t lastUse = 0;
  // MultiEval: the memory of ctx, recycled for the next graph when this one is evicted (null:
  // ggml allocated it).
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, FreeDeleter> metadata;

  CachedGraph() = default;
  CachedGraph(const CachedGraph&) = delete;
  CachedGraph& operator=(const CachedGraph&) = delete;
  ~CachedGraph() {
    if (ctx != nullptr) ggml_free(ctx);
  }
};

// The segmented forward pass (segmented.h): GPU models, or ContextOptions::segmented.
class SegmentedExecutor;
struct SegmentedDeleter {
  void operator()(SegmentedExecutor* e) const;
};

// The per-layer userdata of the attention custom op.
struct LayerAttention {
  Context::Impl* ctx = nullptr;
  int layer = 0;
  attn::Problem problem;  // filled before each compute
};

struct Context::Impl {
  std::shared_ptr<const Model> model;
  ContextOptions opt;
  int64_t nSlotArchive = 0;  // nSlot + nArchive

  ggml_threadpool* pool = nullptr;
  ggml_backend_t backend = nullptr;
  ggml_context* kvCtx = nullptr;
  ggml_backend_buffer_t kvBuffer = nullptr;
  GraphTarget target;  // K/V cache tensors + the op's userdata
  KeyTurn keyTurn;     // how the cache's keys are turned (period 0: they are not)
  size_t kvBytes = 0;
  std::vector<LayerAttention> layerOps;

  ggml_gallocr_t galloc = nullptr;
  bool computeReserved = false;  // the compute buffer is reserved on the first run()
  std::vector<std::unique_ptr<CachedGraph>> graphs;
  uint64_t clock = 0;

  // The staged batch (sized once: maxBatch / nSlot + nArchive entries).
  int64_t n = 0;
  std::vector<int32_t> tokens;
  std::vector<int64_t> qPos;
  std::vector<int64_t> slotIndex;
  std::vector<int32_t> copies;
  int64_t nCopies = 0;
  std::vector<int64_t> slotPos;
  attn::LambdaMask mask;
  attn::TopKMiddle topK;
  LogitsMode mode = LogitsMode::Last;
  std::vector<uint32_t> slotStamp;  // duplicate-slot detection without clearing per batch
  // MultiEval: the batch's K/V rows of the layer being computed, in the K/V type ([n][Hkv]).
  std::vector<uint8_t> kNewRows, vNewRows;
  uint32_t stampEpoch = 0;
  // decode(): before the run, every layer's K and V rows of the slots its steps overwrite
  // ([layer][K, V][step] rows), so that rollback() can put them back.
  std::vector<uint8_t> journal;
  std::vector<int32_t> journalSlots;  // [journalCapacity]: the run's slots
  int64_t journalCapacity = 0;
  int64_t journalSteps = 0;  // steps done that rollback() can take back

  std::atomic<bool> opFailed{false};
  std::mutex opErrorMutex;
  std::string opError;

  // Set: run() goes through it instead of the single graph above (which is then never built).
  std::unique_ptr<SegmentedExecutor, SegmentedDeleter> segmented;

  ~Impl() {
    segmented.reset();
    graphs.clear();
    if (galloc != nullptr) ggml_gallocr_free(galloc);
    if (kvBuffer != nullptr) ggml_backend_buffer_free(kvBuffer);
    if (kvCtx != nullptr) ggml_free(kvCtx);
    if (backend != nullptr) ggml_backend_free(backend);
    if (pool != nullptr) ggml_threadpool_free(pool);
  }

  CachedGraph& graphFor(int64_t nTok, LogitsMode m);
  std::unique_ptr<CachedGraph> build(int64_t nTok, LogitsMode m);
  // Ring slot -> archive slot copies of the staged batch, in the layers that have an archive.
  void applyArchiveCopies();
  // Reserves the compute buffer for the largest graph, once.
  void ensureComputeBuffer();
  // decode(): copies every layer's K and V rows of the run's steps [from, to) into (save) or out
  // of the journal.
  void journalRows(int64_t from, int64_t to, bool save);
};

}  // namespace lmi::engine
