// The segmented forward pass (see segmented.h).
#include "segmented.h"

#include <cstring>
#include <string>

#include "arch.h"
#include "device.h"
#include "graph_lru.h"

namespace lmi::engine {

namespace {

constexpr size_t kMaxCachedGraphs = 16;
// Nodes of one segment's graph: one layer's tail and the next layer's head (~40 nodes in the
// largest builder) plus the classifier; generous so ggml's graph never overflows.
constexpr size_t kSegmentNodes = 512;

[[noreturn]] void native(const std::string& message) { throw Error(ErrorCode::Native, message); }

}  // namespace

void SegmentedDeleter::operator()(SegmentedExecutor* e) const { delete e; }

struct SegmentedExecutor::Graph {
  int64_t n = 0;
  LogitsMode mode = LogitsMode::Last;
  ggml_context* ctx = nullptr;         // every segment's tensor metadata and graphs
  std::vector<ggml_cgraph*> segments;  // [nLayer]: segments[l] ends at layer l's attention input
  ggml_cgraph* tail = nullptr;         // the last layer's K/V writes, then (unless 'none') on to the logits
  ggml_tensor* logits = nullptr;
  uint64_t lastUse = 0;

  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  ~Graph() {
    if (ctx != nullptr) ggml_free(ctx);
  }
};

SegmentedExecutor::SegmentedExecutor(Context::Impl& c) : c_(c), gpu_(c.model->device == Device::Gpu) {
  const Hyperparameters& hp = c.model->hp;
  const int64_t maxBatch = c.opt.maxBatch;
  if (c.model->tokEmbdHost == nullptr) native("internal: the model has no host copy of token_embd");
  ggml_init_params params{};
  params.mem_size = ggml_tensor_overhead() * 10;
  params.no_alloc = true;
  boundaryCtx_ = ggml_init(params);
  if (boundaryCtx_ == nullptr) native("cannot create the ggml context for the segment boundaries");
  const int64_t hq = hp.nHead * hp.headDim;
  boundary_.slots = ggml_new_tensor_1d(boundaryCtx_, GGML_TYPE_I64, maxBatch);
  boundary_.x = ggml_new_tensor_2d(boundaryCtx_, GGML_TYPE_F32, hp.nEmbd, maxBatch);
  boundary_.q = ggml_new_tensor_2d(boundaryCtx_, GGML_TYPE_F32, hq, maxBatch);
  boundary_.attn = ggml_new_tensor_2d(boundaryCtx_, GGML_TYPE_F32, hq, maxBatch);
  const ggml_type kvType = c.target.kCache[0]->type;
  boundary_.kNew = ggml_new_tensor_2d(boundaryCtx_, kvType, hp.nHeadKV * hp.headDim, maxBatch);
  boundary_.vNew = ggml_new_tensor_2d(boundaryCtx_, kvType, hp.nHeadKV * hp.headDim, maxBatch);
  ggml_set_name(boundary_.slots, "boundary_slots");
  ggml_set_name(boundary_.kNew, "boundary_k_new");
  ggml_set_name(boundary_.vNew, "boundary_v_new");
  ggml_set_name(boundary_.x, "boundary_x");
  ggml_set_name(boundary_.q, "boundary_q");
  ggml_set_name(boundary_.attn, "boundary_attn");
  if (gpu_) {
    // The kernel reads positions (and ALiBi slopes) from device memory.
    qPosDev_ = ggml_new_tensor_1d(boundaryCtx_, GGML_TYPE_I64, maxBatch);
    slotPosDev_ = ggml_new_tensor_1d(boundaryCtx_, GGML_TYPE_I64, c.nSlotArchive);
    ggml_set_name(qPosDev_, "q_pos");
    ggml_set_name(slotPosDev_, "slot_pos");
    if (c.model->pe.kind == attn::Encoding::Alibi) {
      slopesDev_ = ggml_new_tensor_1d(boundaryCtx_, GGML_TYPE_F32, hp.nHead);
      ggml_set_name(slopesDev_, "alibi_slopes");
    }
  }
  boundaryBuffer_ = ggml_backend_alloc_ctx_tensors_from_buft(boundaryCtx_, ggml_backend_get_default_buffer_type(c.backend));
  if (boundaryBuffer_ == nullptr) {
    ggml_free(boundaryCtx_);
    native("cannot allocate the segment boundaries for maxBatch = " + std::to_string(maxBatch));
  }
  if (slopesDev_ != nullptr)
    ggml_backend_tensor_set(slopesDev_, c.model->alibiSlopes.data(), 0, ggml_nbytes(slopesDev_));

  target_.kCache = c.target.kCache;
  target_.vCache = c.target.vCache;
  target_.keyTurn = c.target.keyTurn;
  target_.boundary = &boundary_;
  target_.segmentNodes = kSegmentNodes;
  embd_.resize(static_cast<size_t>(maxBatch * hp.nEmbd));
  problems_.resize(static_cast<size_t>(hp.nLayer));
}

SegmentedExecutor::~SegmentedExecutor() {
  graphs_.clear();
  if (boundaryBuffer_ != nullptr) ggml_backend_buffer_free(boundaryBuffer_);
  if (boundaryCtx_ != nullptr) ggml_free(boundaryCtx_);
}

std::unique_ptr<SegmentedExecutor::Graph> SegmentedExecutor::build(int64_t n, LogitsMode mode) {
  const Hyperparameters& hp = c_.model->hp;
  const size_t nGraphs = static_cast<size_t>(hp.nLayer) + 1;
  auto g = std::make_unique<Graph>();
  g->n = n;
  g->mode = mode;
  size_t segmentCount = 0;
  g->ctx = buildExactly(ggml_tensor_overhead() * (graphNodeBudget(hp) * 2 + 8 * nGraphs) +
                            nGraphs * ggml_graph_overhead_custom(kSegmentNodes, false),
                        [&](ggml_context* ctx) {
                          GraphBuilder b(*c_.model, target_, ctx, ggml_new_graph_custom(ctx, kSegmentNodes, false), n,
                                         mode);
                          buildArch(b);
                          segmentCount = b.segments.size();
                          g->segments = b.segments;
                          g->tail = b.gf;
                          g->logits = b.logits;
                        });
  if (g->ctx == nullptr) native("cannot create a ggml context for the segmented graphs");
  if (segmentCount != static_cast<size_t>(hp.nLayer)) native("internal: the builder made a wrong number of segments");
  if (!gpu_) return g;
  // ggml's CUDA backend aborts on an op it lacks; say which one instead.
  std::vector<ggml_cgraph*> all = g->segments;
  all.push_back(g->tail);
  for (ggml_cgraph* gf : all) {
    for (int i = 0; i < ggml_graph_n_nodes(gf); i++) {
      ggml_tensor* node = ggml_graph_node(gf, i);
      if (ggml_backend_supports_op(c_.backend, node)) continue;
      std::string types;
      for (int s = 0; s < GGML_MAX_SRC && node->src[s] != nullptr; s++)
        types += std::string(s ? ", " : "") + ggml_type_name(node->src[s]->type);
      throw Error(ErrorCode::Unsupported, std::string("gpu: ggml's ") + ggml_backend_name(c_.backend) +
                                              " backend cannot compute " + ggml_op_desc(node) + " (" + node->name +
                                              ", inputs " + types + "); run this model on the CPU");
    }
  }
  return g;
}

SegmentedExecutor::Graph& SegmentedExecutor::graphFor(int64_t n, LogitsMode mode) {
  clock_++;
  if (Graph* g = findCachedGraph(graphs_, n, mode, clock_)) return *g;
  if (graphs_.size() >= kMaxCachedGraphs)
    graphs_.erase(graphs_.begin() + static_cast<std::ptrdiff_t>(leastRecentlyUsed(graphs_)));
  graphs_.push_back(build(n, mode));
  graphs_.back()->lastUse = clock_;
  return *graphs_.back();
}

void SegmentedExecutor::reserve() {
  if (reserved_) return;
  // For the largest shape (maxBatch tokens, every row's logits), segment by segment: the buffer
  // ends as large as the largest segment, and smaller shapes fit without growing it.
  Graph& worst = graphFor(c_.opt.maxBatch, LogitsMode::All);
  std::vector<ggml_cgraph*> all = worst.segments;
  all.push_back(worst.tail);
  for (ggml_cgraph* gf : all)
    if (!ggml_gallocr_reserve(c_.galloc, gf))
      native("cannot allocate the compute buffer for maxBatch = " + std::to_string(c_.opt.maxBatch));
  reserved_ = true;
}

bool SegmentedExecutor::allocate(Graph& g) {
  // Segments share the buffer: each one's intermediates may overlap the previous ones', which
  // are dead by then (segments run strictly one after another and meet only in the boundary).
  const size_t before = ggml_gallocr_get_buffer_size(c_.galloc, 0);
  for (ggml_cgraph* gf : g.segments)
    if (!ggml_gallocr_alloc_graph(c_.galloc, gf)) native("cannot allocate a segment of the compute graph");
  if (!ggml_gallocr_alloc_graph(c_.galloc, g.tail)) native("cannot allocate the last segment of the compute graph");
  return ggml_gallocr_get_buffer_size(c_.galloc, 0) == before;
}

void SegmentedExecutor::archiveCopies() {
  if (c_.nCopies == 0) return;
  if (ggml_backend_buffer_is_host(c_.kvBuffer)) {
    c_.applyArchiveCopies();
    return;
  }
  // Device memory: runs of consecutive (src, dst) slot pairs, one round trip through the host
  // each (a ring evicts consecutive slots into consecutive archive slots: one or two runs).
  for (int64_t il = c_.opt.topKFromLayer; il < c_.model->hp.nLayer; il++) {
    for (ggml_tensor* cache : {c_.target.kCache[il], c_.target.vCache[il]}) {
      for (int64_t i = 0; i < c_.nCopies;) {
        int64_t len = 1;
        while (i + len < c_.nCopies && c_.copies[2 * (i + len)] == c_.copies[2 * i] + len &&
               c_.copies[2 * (i + len) + 1] == c_.copies[2 * i + 1] + len)
          len++;
        rowCopy_.resize(kvPieceBytes(cache) * static_cast<size_t>(len));
        for (int64_t g = 0; g < kvPieces(cache); g++) {
          ggml_backend_tensor_get(cache, rowCopy_.data(), kvPieceOffset(cache, g, c_.copies[2 * i]), rowCopy_.size());
          ggml_backend_tensor_set(cache, rowCopy_.data(), kvPieceOffset(cache, g, c_.copies[2 * i + 1]),
                                  rowCopy_.size());
        }
        i += len;
      }
    }
  }
}

void SegmentedExecutor::uploadInputs() {
  const Model& model = *c_.model;
  const int64_t n = c_.n, E = model.hp.nEmbd;
  ggml_backend_tensor_set(boundary_.slots, c_.slotIndex.data(), 0, sizeof(int64_t) * static_cast<size_t>(n));
  // Embedding rows, dequantized on the host exactly as ggml's CPU get_rows does.
  const ggml_type type = model.tokEmbd->type;
  const size_t rowBytes = ggml_row_size(type, E);
  const auto* base = static_cast<const uint8_t*>(model.tokEmbdHost);
  const ggml_to_float_t toFloat = ggml_get_type_traits(type)->to_float;
  for (int64_t i = 0; i < n; i++) {
    const uint8_t* src = base + rowBytes * static_cast<size_t>(c_.tokens[static_cast<size_t>(i)]);
    float* dst = embd_.data() + i * E;
    if (type == GGML_TYPE_F32) std::memcpy(dst, src, rowBytes);
    else toFloat(src, dst, E);
  }
  ggml_backend_tensor_set(boundary_.x, embd_.data(), 0, sizeof(float) * static_cast<size_t>(n * E));
  if (gpu_) {
    ggml_backend_tensor_set(qPosDev_, c_.qPos.data(), 0, sizeof(int64_t) * static_cast<size_t>(n));
    ggml_backend_tensor_set(slotPosDev_, c_.slotPos.data(), 0, ggml_nbytes(slotPosDev_));
  }
}

attn::Problem SegmentedExecutor::problem(int il) const {
  const Model& model = *c_.model;
  const Hyperparameters& hp = model.hp;
  const ContextOptions& o = c_.opt;
  attn::Problem p;
  const bool hasArchive = o.nArchive > 0 && il >= o.topKFromLayer;
  p.nQ = static_cast<int>(c_.n);
  p.nHead = static_cast<int>(hp.nHead);
  p.nHeadKV = static_cast<int>(hp.nHeadKV);
  p.headDim = static_cast<int>(hp.headDim);
  p.nSlot = hasArchive ? c_.nSlotArchive : o.nSlot;
  p.q = static_cast<const float*>(boundary_.q->data);
  p.k = c_.target.kCache[il]->data;
  p.v = c_.target.vCache[il]->data;
  p.kNew = boundary_.kNew->data;
  p.vNew = boundary_.vNew->data;
  p.kvType = o.kvType;
  setCacheStrides(p, c_.target.kCache[il], c_.target.vCache[il]);
  p.slotPos = gpu_ ? static_cast<const int64_t*>(slotPosDev_->data) : c_.slotPos.data();
  p.qPos = gpu_ ? static_cast<const int64_t*>(qPosDev_->data) : c_.qPos.data();
  p.scale = model.attnScale;
  p.pe = model.pe;
  p.keyTurnPeriod = c_.keyTurn.period;
  if (gpu_ && slopesDev_ != nullptr) p.pe.alibiSlopes = static_cast<const float*>(slopesDev_->data);
  p.mask = c_.mask;
  p.topK = il >= o.topKFromLayer ? c_.topK : attn::TopKMiddle{};
  p.out = static_cast<float*>(boundary_.attn->data);
  return p;
}

void SegmentedExecutor::compute(ggml_cgraph* gf) {
  c_.keyTurn.failed.store(false);
  const ggml_status status = ggml_backend_graph_compute(c_.backend, gf);  // returns synchronized
  if (status != GGML_STATUS_SUCCESS) native(std::string("ggml graph compute failed: ") + ggml_status_to_string(status));
  if (c_.keyTurn.failed.load()) native(c_.keyTurn.error);
}

void SegmentedExecutor::run(float* logits) {
  const int nLayer = static_cast<int>(c_.model->hp.nLayer);

  // 1. The kernel's problems, validated before anything is written.
  for (int il = 0; il < nLayer; il++) {
    problems_[il] = problem(il);
    try {
      if (gpu_) kernelValidateShape(problems_[il]);
      else attn::validate(problems_[il]);
    } catch (const std::exception& e) {
      throw Error(ErrorCode::InvalidArgument, std::string("attention problem rejected: ") + e.what());
    }
  }

  // 2. Archive copies (ring slot -> archive slot), before this batch's writes can overwrite the ring slot.
  archiveCopies();

  // 3. The graphs for this shape, allocated in the compute buffer.
  reserve();
  Graph* g = &graphFor(c_.n, c_.mode);
  if (!allocate(*g)) {
    // The buffer grew: every cached graph's tensors (this one's earlier segments too) point into
    // the freed one. Rebuild; the second allocation fits.
    graphs_.clear();
    g = &graphFor(c_.n, c_.mode);
    if (!allocate(*g)) native("internal: the compute buffer grew twice for one graph");
  }

  // 4. Inputs: slots, embeddings (and positions on a GPU).
  uploadInputs();

  // 5. Segments, with the layer's Λ kernel after each (skipped for the last layer when nothing
  //    reads its output: logits 'none'; the tail still writes its K/V).
  for (int il = 0; il < nLayer; il++) {
    compute(g->segments[il]);
    if (il == nLayer - 1 && c_.mode == LogitsMode::None) break;
    try {
      if (gpu_) kernelRun(problems_[il]);
      else attn::run(problems_[il], attn::RunOptions{c_.opt.threads, false});
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      native("attention kernel failed in layer " + std::to_string(il) + ": " + e.what());
    }
  }
  compute(g->tail);

  // 6. Logits.
  if (g->logits != nullptr && logits != nullptr) ggml_backend_tensor_get(g->logits, logits, 0, ggml_nbytes(g->logits));
}

}  // namespace lmi::engine
