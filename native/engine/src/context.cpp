// A context: K/V memory for every layer (fixed at creation), a ggml CPU backend with its own
// thread pool, and a small cache of built-and-allocated graphs keyed by (n_tokens, logits mode).
// Between evals only the inputs (token ids, slot indices) and the kernel's per-call parameters
// (positions, slot positions, mask, top-k) change; nothing is rebuilt or reallocated per token.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "arch.h"
#include "context_impl.h"
#include "cpu_backend.h"
#include "graph_lru.h"
#include "ggml-cpu.h"
#include "segmented.h"

namespace lmi::engine {

namespace {

constexpr int64_t kMaxSlots = int64_t(1) << 31;
constexpr int64_t kMaxBatch = int64_t(1) << 16;
constexpr int64_t kMaxPosition = int64_t(1) << 53;
constexpr size_t kMaxCachedGraphs = 16;

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

// The Λ kernel as a ggml custom op: ggml calls it on each of its nth threads.
void attentionOp(ggml_tensor* dst, int ith, int nth, void* userdata) {
  auto* op = static_cast<LayerAttention*>(userdata);
  (void)dst;  // problem.out == dst->data, set before compute
  try {
    attn::runPartition(op->problem, ith, nth);
  } catch (const std::exception& e) {
    // No exception may cross ggml's C frames; report after the compute.
    if (!op->ctx->opFailed.exchange(true)) {
      std::lock_guard<std::mutex> lock(op->ctx->opErrorMutex);
      op->ctx->opError = std::string("attention kernel failed in layer ") + std::to_string(op->layer) + ": " + e.what();
    }
  } catch (...) {
    op->ctx->opFailed.store(true);
  }
}

}  // namespace

std::unique_ptr<CachedGraph> Context::Impl::build(int64_t nTok, LogitsMode m) {
  const Hyperparameters& hp = model->hp;
  const size_t budget = graphNodeBudget(hp);
  auto g = std::make_unique<CachedGraph>();
  g->n = nTok;
  g->mode = m;
  g->ctx = buildExactly(ggml_tensor_overhead() * budget * 2 + ggml_graph_overhead_custom(budget, false),
                        [&](ggml_context* ctx) {
                          g->gf = ggml_new_graph_custom(ctx, budget, false);
                          GraphBuilder b(*model, target, ctx, g->gf, nTok, m);
                          buildArch(b);
                          g->tokens = b.inpTokens;
                          g->slots = b.inpSlots;
                          g->logits = b.logits;
                          g->attnNodes = b.attnNodes;
                        });
  if (g->ctx == nullptr) throw Error(ErrorCode::Native, "cannot create a ggml context for the graph");
  return g;
}

CachedGraph& Context::Impl::graphFor(int64_t nTok, LogitsMode m) {
  clock++;
  if (CachedGraph* g = findCachedGraph(graphs, nTok, m, clock)) return *g;
  if (graphs.size() >= kMaxCachedGraphs)
    graphs.erase(graphs.begin() + static_cast<std::ptrdiff_t>(leastRecentlyUsed(graphs)));
  graphs.push_back(build(nTok, m));
  graphs.back()->lastUse = clock;
  return *graphs.back();
}

Context::Context(std::shared_ptr<const Model> model, const ContextOptions& o) : impl_(std::make_unique<Impl>()) {
  Impl& c = *impl_;
  const Hyperparameters& hp = model->hp;
  if (o.nSlot < 1 || o.nSlot > kMaxSlots) invalid("nSlot = " + std::to_string(o.nSlot) + " is outside [1, 2^31]");
  if (o.nArchive < 0 || o.nArchive > kMaxSlots - o.nSlot)
    invalid("nArchive = " + std::to_string(o.nArchive) + " is negative or makes nSlot + nArchive exceed 2^31");
  if (o.topKFromLayer < 0 || o.topKFromLayer > hp.nLayer)
    invalid("topKFromLayer = " + std::to_string(o.topKFromLayer) + " is outside [0, nLayer = " +
            std::to_string(hp.nLayer) + "]");
  if (o.nArchive > 0 && o.topKFromLayer == hp.nLayer)
    invalid("nArchive > 0 needs topKFromLayer < nLayer (no layer would read the archive)");
  if (o.maxBatch < 1 || o.maxBatch > kMaxBatch)
    invalid("maxBatch = " + std::to_string(o.maxBatch) + " is outside [1, " + std::to_string(kMaxBatch) + "]");
  if (o.threads < 1 || o.threads > 1024) invalid("threads = " + std::to_string(o.threads) + " is outside [1, 1024]");
  if (o.kvType != attn::KVType::F16 && o.kvType != attn::KVType::F32 && o.kvType != attn::KVType::Q8_0)
    invalid("kvType must be f16, f32 or q8_0");
  if (o.kvType == attn::KVType::Q8_0) {
    if (hp.headDim % attn::kQ8Block != 0)
      invalid("kvType q8_0 needs a head dimension that is a multiple of 32; this model's is " +
              std::to_string(hp.headDim) + " (use f16)");
    if (model->device == Device::Gpu) invalid("kvType q8_0 is CPU-only: the CUDA kernels read f16 or f32 K/V");
  }
  c.model = std::move(model);
  c.opt = o;
  c.nSlotArchive = o.nSlot + o.nArchive;

  const bool gpu = c.model->device == Device::Gpu;
  if (gpu) {
    // GPU model: its own ggml backend (stream) on the model's device; K/V there too.
    c.backend = ggml_backend_dev_init(c.model->gpu, nullptr);
    if (c.backend == nullptr)
      throw Error(ErrorCode::Native, std::string("cannot initialise ggml's backend for ") +
                                         ggml_backend_dev_description(c.model->gpu));
  } else {
    createCpuBackend(o.threads, &c.pool, &c.backend);
  }

  // K/V: per layer nSlot (+ nArchive from topKFromLayer on) slots, head-major [headDim, slots,
  // nHeadKV] on the CPU, slot-major [Hkv, slots] on a GPU (kv_cache.h).
  const bool headMajor = o.headMajorKV && !gpu;
  const int64_t nLayer = hp.nLayer;
  const int64_t rowLen = hp.nHeadKV * hp.headDim;
  const ggml_type kvType = o.kvType == attn::KVType::F16    ? GGML_TYPE_F16
                           : o.kvType == attn::KVType::Q8_0 ? GGML_TYPE_Q8_0
                                                            : GGML_TYPE_F32;
  {
    const double bytes = 2.0 * static_cast<double>(nLayer) * static_cast<double>(c.nSlotArchive) *
                         static_cast<double>(attn::kvBytes(o.kvType, rowLen));
    if (bytes > 1.0e15) invalid("K/V memory of " + std::to_string(bytes) + " bytes is not allocatable");
  }
  ggml_init_params params{};
  params.mem_size = ggml_tensor_overhead() * static_cast<size_t>(2 * nLayer + 1);
  params.no_alloc = true;
  c.kvCtx = ggml_init(params);
  if (c.kvCtx == nullptr) throw Error(ErrorCode::Native, "cannot create the ggml context for K/V");
  c.layerOps.resize(static_cast<size_t>(nLayer));
  for (int64_t il = 0; il < nLayer; il++) {
    const int64_t rows = (o.nArchive > 0 && il >= o.topKFromLayer) ? c.nSlotArchive : o.nSlot;
    ggml_tensor* k = headMajor ? ggml_new_tensor_3d(c.kvCtx, kvType, hp.headDim, rows, hp.nHeadKV)
                               : ggml_new_tensor_2d(c.kvCtx, kvType, rowLen, rows);
    ggml_tensor* v = headMajor ? ggml_new_tensor_3d(c.kvCtx, kvType, hp.headDim, rows, hp.nHeadKV)
                               : ggml_new_tensor_2d(c.kvCtx, kvType, rowLen, rows);
    ggml_format_name(k, "cache_k-%d", static_cast<int>(il));
    ggml_format_name(v, "cache_v-%d", static_cast<int>(il));
    c.target.kCache.push_back(k);
    c.target.vCache.push_back(v);
    c.kvBytes += ggml_nbytes(k) + ggml_nbytes(v);
    c.layerOps[il].ctx = &c;
    c.layerOps[il].layer = static_cast<int>(il);
  }
  c.kvBuffer = ggml_backend_alloc_ctx_tensors_from_buft(
      c.kvCtx, gpu ? ggml_backend_dev_buffer_type(c.model->gpu) : ggml_backend_cpu_buffer_type());
  if (c.kvBuffer == nullptr)
    throw Error(ErrorCode::Native, "cannot allocate " + std::to_string(c.kvBytes) + " bytes of K/V memory for " +
                                       std::to_string(c.nSlotArchive) +
                                       " slots (fewer slots: a smaller nLocal, maxContext or maxArchive)");
  // Not cleared: createContext runs on the JS thread and a multi-GB memset would stall it. A slot's
  // rows are only read once the slot table gives it a position, i.e. after a batch wrote it.
  c.target.attentionFn = attentionOp;
  for (auto& op : c.layerOps) c.target.attentionUserdata.push_back(&op);

  // Staging buffers, sized once.
  c.tokens.resize(static_cast<size_t>(o.maxBatch));
  c.qPos.resize(static_cast<size_t>(o.maxBatch));
  c.keyTurn.period = keyTurnPeriod(*c.model, gpu);
  c.keyTurn.pe = c.model->pe;
  c.keyTurn.nHeadKV = static_cast<int>(hp.nHeadKV);
  c.keyTurn.headDim = static_cast<int>(hp.headDim);
  c.keyTurn.positions = c.qPos.data();  // sized once: the pointer stays
  c.target.keyTurn = &c.keyTurn;
  c.slotIndex.resize(static_cast<size_t>(o.maxBatch));
  c.slotPos.assign(static_cast<size_t>(c.nSlotArchive), -1);
  c.slotStamp.assign(static_cast<size_t>(o.nSlot), 0);
  c.copies.reserve(static_cast<size_t>(2 * o.nArchive));

  // The compute buffer is reserved by the first run() (ensureComputeBuffer): a context that only
  // ever runs inside MultiEval (batched with other sessions) never needs one of its own.
  c.galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(c.backend));
  if (c.galloc == nullptr) throw Error(ErrorCode::Native, "cannot create the ggml graph allocator");

  if (gpu || o.segmented) c.segmented.reset(new SegmentedExecutor(c));
  if (gpu) c.segmented->prepare();
}

void Context::Impl::ensureComputeBuffer() {
  if (computeReserved) return;
  // Reserved for the largest graph (maxBatch tokens, every row's logits), so smaller graphs fit
  // without reallocating.
  CachedGraph& worst = graphFor(opt.maxBatch, LogitsMode::All);
  if (!ggml_gallocr_reserve(galloc, worst.gf))
    throw Error(ErrorCode::Native, "cannot allocate the compute buffer for maxBatch = " + std::to_string(opt.maxBatch));
  computeReserved = true;
}

Context::~Context() = default;

size_t Context::kvBytes() const { return impl_->kvBytes; }
int64_t Context::nVocab() const { return impl_->model->hp.nVocab; }
const ContextOptions& Context::options() const { return impl_->opt; }
bool Context::segmented() const { return impl_->segmented != nullptr; }

int64_t Context::stagedOutputRows() const {
  switch (impl_->mode) {
    case LogitsMode::All: return impl_->n;
    case LogitsMode::Last: return 1;
    case LogitsMode::None: return 0;
  }
  return 0;
}

void Context::stage(const Batch& b) {
  Impl& c = *impl_;
  c.journalSteps = 0;  // the next write makes the last decode run's journal stale
  const ContextOptions& o = c.opt;
  const Hyperparameters& hp = c.model->hp;
  if (b.n < 1 || b.n > o.maxBatch)
    invalid("batch of " + std::to_string(b.n) + " tokens; it must hold 1 to maxBatch = " + std::to_string(o.maxBatch));
  if (b.tokens == nullptr || b.positions == nullptr || b.slots == nullptr || b.slotPositions == nullptr)
    invalid("batch arrays missing");
  if (b.nSlotPositions != c.nSlotArchive)
    invalid("slotPositions has " + std::to_string(b.nSlotPositions) + " entries, expected nSlot + nArchive = " +
            std::to_string(c.nSlotArchive));
  if (++c.stampEpoch == 0) {  // wrapped: reset the stamps once every 2^32 batches
    std::fill(c.slotStamp.begin(), c.slotStamp.end(), 0);
    c.stampEpoch = 1;
  }
  for (int64_t i = 0; i < b.n; i++) {
    const int32_t tok = b.tokens[i];
    if (tok < 0 || tok >= hp.nVocab)
      invalid("tokens[" + std::to_string(i) + "] = " + std::to_string(tok) + " is outside [0, nVocab = " +
              std::to_string(hp.nVocab) + ")");
    const int64_t pos = b.positions[i];
    if (pos < 0 || pos > kMaxPosition)
      invalid("positions[" + std::to_string(i) + "] = " + std::to_string(pos) + " is outside [0, 2^53]");
    if (i > 0 && pos <= b.positions[i - 1])
      invalid("positions[" + std::to_string(i) + "] = " + std::to_string(pos) + " does not increase");
    const int32_t slot = b.slots[i];
    if (slot < 0 || slot >= o.nSlot)
      invalid("slots[" + std::to_string(i) + "] = " + std::to_string(slot) + " is outside [0, nSlot = " +
              std::to_string(o.nSlot) + ")");
    if (c.slotStamp[slot] == c.stampEpoch)
      invalid("slot " + std::to_string(slot) + " appears twice in one batch");
    c.slotStamp[slot] = c.stampEpoch;
  }
  // The batch appends to the stream: every slot holds an older position (the batch's own keys
  // come from the batch, not from the slots it overwrites).
  for (int64_t s = 0; s < b.nSlotPositions; s++) {
    const int64_t p = b.slotPositions[s];
    if (p < -1 || p > kMaxPosition)
      invalid("slotPositions[" + std::to_string(s) + "] = " + std::to_string(p) + " (must be -1 or in [0, 2^53])");
    if (p >= b.positions[0])
      invalid("slotPositions[" + std::to_string(s) + "] = " + std::to_string(p) +
              ": slots hold the positions before the batch, all older than its first position " +
              std::to_string(b.positions[0]));
  }
  if (b.nArchiveCopies < 0 || (b.nArchiveCopies > 0 && b.archiveCopies == nullptr))
    invalid("archiveCopies malformed");
  if (b.nArchiveCopies > 0 && o.nArchive == 0) invalid("archiveCopies given, but the context has no archive");
  if (b.nArchiveCopies > o.nArchive)
    invalid("archiveCopies holds " + std::to_string(b.nArchiveCopies) + " copies, more than nArchive = " +
            std::to_string(o.nArchive));
  for (int64_t i = 0; i < b.nArchiveCopies; i++) {
    const int64_t src = b.archiveCopies[2 * i], dst = b.archiveCopies[2 * i + 1];
    if (src < 0 || src >= o.nSlot)
      invalid("archiveCopies source " + std::to_string(src) + " is not a ring slot [0, " + std::to_string(o.nSlot) + ")");
    if (dst < o.nSlot || dst >= c.nSlotArchive)
      invalid("archiveCopies destination " + std::to_string(dst) + " is not an archive slot [" +
              std::to_string(o.nSlot) + ", " + std::to_string(c.nSlotArchive) + ")");
  }
  const attn::LambdaMask& m = b.mask;
  if (m.nLocal < 1 || m.nLocal > kMaxPosition) invalid("mask.nLocal must be in [1, 2^53]");
  if (m.nGlobal < 0 || m.nGlobal > kMaxPosition) invalid("mask.nGlobal must be in [0, 2^53]");
  if (m.limitDistance < 0 || m.limitDistance > kMaxPosition) invalid("mask.limitDistance must be in [0, 2^53]");
  if (m.origin < 0 || m.origin > kMaxPosition) invalid("mask.origin must be in [0, 2^53]");
  if (b.topK.k < 0 || b.topK.k > (1 << 20)) invalid("topK.k must be in [0, 2^20]");
  if (b.topK.insertAt < 0 || b.topK.insertAt > kMaxPosition) invalid("topK.insertAt must be in [0, 2^53]");

  // Valid: copy into the context's own buffers (no allocation).
  c.n = b.n;
  std::memcpy(c.tokens.data(), b.tokens, sizeof(int32_t) * b.n);
  std::memcpy(c.qPos.data(), b.positions, sizeof(int64_t) * b.n);
  for (int64_t i = 0; i < b.n; i++) c.slotIndex[i] = b.slots[i];
  std::memcpy(c.slotPos.data(), b.slotPositions, sizeof(int64_t) * b.nSlotPositions);
  c.nCopies = b.nArchiveCopies;
  c.copies.assign(b.archiveCopies, b.archiveCopies + 2 * b.nArchiveCopies);  // within the reserved 2 * nArchive
  c.mask = b.mask;
  c.topK = b.topK;
  c.mode = b.logits;
}

void Context::Impl::applyArchiveCopies() {
  if (nCopies == 0) return;
  for (int64_t il = opt.topKFromLayer; il < model->hp.nLayer; il++) {
    for (ggml_tensor* cache : {target.kCache[il], target.vCache[il]}) {
      auto* base = static_cast<uint8_t*>(cache->data);
      for (int64_t g = 0; g < kvPieces(cache); g++)
        for (int64_t i = 0; i < nCopies; i++)
          std::memcpy(base + kvPieceOffset(cache, g, copies[2 * i + 1]), base + kvPieceOffset(cache, g, copies[2 * i]),
                      kvPieceBytes(cache));
    }
  }
}

void Context::run(float* logits) {
  Impl& c = *impl_;
  if (c.segmented) {
    c.segmented->run(logits);
    return;
  }
  const Model& model = *c.model;
  const Hyperparameters& hp = model.hp;
  const ContextOptions& o = c.opt;

  // 1. Archive copies (ring slot -> archive slot) in the layers that have an archive, before
  //    this batch's writes can overwrite the ring slot.
  c.applyArchiveCopies();

  // 2. The graph for this shape, allocated in the shared compute buffer.
  c.ensureComputeBuffer();
  CachedGraph& g = c.graphFor(c.n, c.mode);
  const size_t before = ggml_gallocr_get_buffer_size(c.galloc, 0);
  if (!ggml_gallocr_alloc_graph(c.galloc, g.gf)) throw Error(ErrorCode::Native, "cannot allocate the compute graph");
  if (ggml_gallocr_get_buffer_size(c.galloc, 0) != before) {
    // The buffer moved: every other cached graph's tensors point into the old one.
    for (auto it = c.graphs.begin(); it != c.graphs.end();) {
      if (it->get() != &g) it = c.graphs.erase(it);
      else ++it;
    }
  }

  // 3. Inputs and the kernel's per-call parameters.
  std::memcpy(g.tokens->data, c.tokens.data(), sizeof(int32_t) * c.n);
  std::memcpy(g.slots->data, c.slotIndex.data(), sizeof(int64_t) * c.n);
  // Every layer reads the same position arrays: their contents are checked once, for the slot
  // count they were checked with (-1: not yet).
  int64_t checkedSlots = -1;
  for (int64_t il = 0; il < hp.nLayer; il++) {
    ggml_tensor* node = g.attnNodes[il];
    LayerAttention& op = c.layerOps[il];
    if (node == nullptr || node->data == nullptr) continue;  // not in this graph (logits 'none', last layer)
    attn::Problem& p = op.problem;
    const bool hasArchive = o.nArchive > 0 && il >= o.topKFromLayer;
    p.nQ = static_cast<int>(c.n);
    p.nHead = static_cast<int>(hp.nHead);
    p.nHeadKV = static_cast<int>(hp.nHeadKV);
    p.headDim = static_cast<int>(hp.headDim);
    p.nSlot = hasArchive ? c.nSlotArchive : o.nSlot;
    p.q = static_cast<const float*>(node->src[0]->data);
    p.k = c.target.kCache[il]->data;
    p.v = c.target.vCache[il]->data;
    p.kNew = node->src[3]->data;  // the batch's own rows (GraphBuilder::attention)
    p.vNew = node->src[4]->data;
    p.kvType = o.kvType;
    setCacheStrides(p, c.target.kCache[il], c.target.vCache[il]);
    p.slotPos = c.slotPos.data();
    p.qPos = c.qPos.data();
    p.scale = model.attnScale;
    p.pe = model.pe;
    p.keyTurnPeriod = c.keyTurn.period;
    p.mask = c.mask;
    p.topK = il >= o.topKFromLayer ? c.topK : attn::TopKMiddle{};
    p.out = static_cast<float*>(node->data);
    try {
      if (p.nSlot == checkedSlots) {
        attn::validateExceptPositions(p);
      } else {
        attn::validate(p);
        checkedSlots = p.nSlot;
      }
    } catch (const std::exception& e) {
      throw Error(ErrorCode::InvalidArgument, std::string("attention problem rejected: ") + e.what());
    }
  }

  // 4. Compute.
  c.opFailed.store(false);
  c.keyTurn.failed.store(false);
  const ggml_status status = ggml_backend_graph_compute(c.backend, g.gf);
  if (status != GGML_STATUS_SUCCESS)
    throw Error(ErrorCode::Native, std::string("ggml graph compute failed: ") + ggml_status_to_string(status));
  if (c.keyTurn.failed.load()) throw Error(ErrorCode::Native, c.keyTurn.error);
  if (c.opFailed.load()) {
    std::lock_guard<std::mutex> lock(c.opErrorMutex);
    throw Error(ErrorCode::Native, c.opError.empty() ? "attention kernel failed" : c.opError);
  }

  // 5. Logits.
  if (g.logits != nullptr && logits != nullptr) {
    std::memcpy(logits, g.logits->data, ggml_nbytes(g.logits));
  }
}

}  // namespace lmi::engine
