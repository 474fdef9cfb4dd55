// Several contexts' staged batches as one forward pass (continuous batching across sessions).
//
// The architecture builders (graph.h, GraphTarget::staging) write each layer's new K/V rows with
// set_rows into one f32 staging tensor [Hkv, capacity] per layer (the batch's slots are 0..n-1), so
// the concatenated K/V rows of all sequences land in staging, and hand it to the attention op,
// which then, split over its threads:
//   1. converts each token's K and V row into its own context's new rows (Context::Impl::kNewRows,
//      in that context's K/V type),
//   2. waits for every thread (the kernel of one sequence reads rows another thread converted),
//   3. runs the Λ kernel once per sequence, q and out being that sequence's rows, against the
//      context's K/V, slot positions, mask and top-k settings, and its new rows (kNew, vNew),
//   4. waits again (a kernel may still read a slot the next step overwrites),
//   5. writes each token's new rows into its context's cache at its slot.
// Nothing in the graph depends on which contexts take part or how the tokens split between them,
// so graphs are cached by (total tokens, logits mode) alone.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

#include "arch.h"
#include "context_impl.h"
#include "cpu_backend.h"
#include "graph_lru.h"
#include "ggml-cpu.h"

namespace lmi::engine {

namespace {

constexpr int64_t kMaxTotal = int64_t(1) << 16;
constexpr size_t kMaxCachedGraphs = 48;

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

// A barrier among the nth threads ggml runs one custom op on. ggml's CPU backend calls every
// node on all nth threads of the pool concurrently (and puts its own barrier between nodes), so
// all nth arrive. Reusable: the last thread in resets the count before releasing the others.
class SpinBarrier {
 public:
  void wait(int nth) {
    if (nth <= 1) return;
    const uint32_t generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == nth - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; spins++)
      if (spins >= 256) std::this_thread::yield();
  }

 private:
  std::atomic<int> arrived_{0};
  std::atomic<uint32_t> generation_{0};
};

}  // namespace

// The per-layer userdata of the multi attention op.
struct MultiLayerOp {
  MultiEval::Impl* owner = nullptr;
  int layer = 0;
  std::vector<attn::Problem> problems;  // one per sequence, filled before each compute
};

struct MultiEval::Impl {
  std::shared_ptr<const Model> model;
  int threads = 1;

  ggml_threadpool* pool = nullptr;
  ggml_backend_t backend = nullptr;
  // Staging for one layer's new K/V rows: [Hkv, capacity] f32 each, shared by every layer (layer
  // l + 1's writes depend, through the residual stream, on layer l's attention having run).
  ggml_context* stageCtx = nullptr;
  ggml_backend_buffer_t stageBuffer = nullptr;
  ggml_tensor* kStage = nullptr;
  ggml_tensor* vStage = nullptr;
  int64_t capacity = 0;
  GraphTarget target;
  std::vector<MultiLayerOp> layerOps;

  ggml_gallocr_t galloc = nullptr;
  std::vector<std::unique_ptr<CachedGraph>> graphs;
  uint64_t clock = 0;

  // The current call.
  int64_t nTotal = 0;
  std::vector<Context::Impl*> seqs;
  std::vector<int64_t> start;   // [seq] first token of the sequence in the concatenated batch
  std::vector<int32_t> seqOf;   // [token] its sequence
  std::vector<int32_t> tokens;  // [token]
  std::vector<int64_t> rows;    // [token] = token: staging row of each token
  std::vector<int64_t> positions;  // [token] its position, for the key turn
  KeyTurn keyTurn;                 // the contexts' (all CPU, one model): the same turn as each of theirs
  SpinBarrier barrier;

  std::atomic<bool> opFailed{false};
  std::mutex opErrorMutex;
  std::string opError;

  ~Impl() {
    graphs.clear();
    if (galloc != nullptr) ggml_gallocr_free(galloc);
    freeStaging();
    if (backend != nullptr) ggml_backend_free(backend);
    if (pool != nullptr) ggml_threadpool_free(pool);
  }

  void freeStaging() {
    if (stageBuffer != nullptr) ggml_backend_buffer_free(stageBuffer);
    if (stageCtx != nullptr) ggml_free(stageCtx);
    stageBuffer = nullptr;
    stageCtx = nullptr;
    kStage = vStage = nullptr;
    capacity = 0;
  }

  void ensureCapacity(int64_t n);
  CachedGraph& graphFor(int64_t n, LogitsMode mode);
  void fail(const std::string& message) {
    if (!opFailed.exchange(true)) {
      std::lock_guard<std::mutex> lock(opErrorMutex);
      opError = message;
    }
  }
};

namespace {

// The rounding set_rows applies when it writes these rows into a q8_0 cache, so that the batch
// attends the very blocks the cache will hold.
void quantizeQ8(const float* src, void* to, int64_t n) {
  static const ggml_from_float_t fromFloat = ggml_get_type_traits_cpu(GGML_TYPE_Q8_0)->from_float;
  fromFloat(src, to, n);
}

// The steps at the top of the file. Called on each of nth threads.
void multiAttentionOp(ggml_tensor* dst, int ith, int nth, void* userdata) {
  auto* op = static_cast<MultiLayerOp*>(userdata);
  MultiEval::Impl& m = *op->owner;
  const int il = op->layer;
  const int64_t rowLen = m.model->hp.nHeadKV * m.model->hp.headDim;
  // Token t's sequence, its index in that sequence's batch, and the size of one K/V row there.
  auto locate = [&](int64_t t, Context::Impl** c, int64_t* i, size_t* rowBytes) {
    const int32_t s = m.seqOf[static_cast<size_t>(t)];
    *c = m.seqs[static_cast<size_t>(s)];
    *i = t - m.start[static_cast<size_t>(s)];
    *rowBytes = ggml_row_size((*c)->target.kCache[static_cast<size_t>(il)]->type, rowLen);
  };
  try {
    const ggml_tensor* staged[2] = {dst->src[1], dst->src[2]};  // set_rows' views of the staging tensors
    for (int64_t t = ith; t < m.nTotal; t += nth) {
      Context::Impl* c;
      int64_t i;
      size_t rowBytes;
      locate(t, &c, &i, &rowBytes);
      std::vector<uint8_t>* rows[2] = {&c->kNewRows, &c->vNewRows};
      for (int kv = 0; kv < 2; kv++) {
        const auto* src = reinterpret_cast<const float*>(static_cast<const uint8_t*>(staged[kv]->data) + t * staged[kv]->nb[1]);
        uint8_t* to = rows[kv]->data() + static_cast<size_t>(i) * rowBytes;
        if (c->opt.kvType == attn::KVType::F16) ggml_fp32_to_fp16_row(src, reinterpret_cast<ggml_fp16_t*>(to), rowLen);
        else if (c->opt.kvType == attn::KVType::Q8_0) quantizeQ8(src, to, rowLen);
        else std::memcpy(to, src, rowBytes);
      }
    }
  } catch (const std::exception& e) {
    m.fail(std::string("K/V conversion failed in layer ") + std::to_string(il) + ": " + e.what());
  }
  m.barrier.wait(nth);  // every thread reaches it, failed or not
  try {
    for (const attn::Problem& p : op->problems) attn::runPartition(p, ith, nth);
  } catch (const std::exception& e) {
    m.fail(std::string("attention kernel failed in layer ") + std::to_string(il) + ": " + e.what());
  } catch (...) {
    m.fail("attention kernel failed in layer " + std::to_string(il));
  }
  m.barrier.wait(nth);
  for (int64_t t = ith; t < m.nTotal; t += nth) {
    Context::Impl* c;
    int64_t i;
    size_t rowBytes;
    locate(t, &c, &i, &rowBytes);
    const int64_t slot = c->slotIndex[static_cast<size_t>(i)];
    ggml_tensor* cache[2] = {c->target.kCache[static_cast<size_t>(il)], c->target.vCache[static_cast<size_t>(il)]};
    const std::vector<uint8_t>* rows[2] = {&c->kNewRows, &c->vNewRows};
    for (int kv = 0; kv < 2; kv++)
      for (int64_t g = 0; g < kvPieces(cache[kv]); g++)  // a new row's piece g is its bytes [g, g + 1) * piece
        std::memcpy(static_cast<uint8_t*>(cache[kv]->data) + kvPieceOffset(cache[kv], g, slot),
                    rows[kv]->data() + static_cast<size_t>(i) * rowBytes + static_cast<size_t>(g) * kvPieceBytes(cache[kv]),
                    kvPieceBytes(cache[kv]));
  }
}

}  // namespace

void MultiEval::Impl::ensureCapacity(int64_t n) {
  if (n <= capacity) return;
  int64_t cap = 64;
  while (cap < n) cap *= 2;
  graphs.clear();  // they write into the old staging tensors
  freeStaging();
  const int64_t rowLen = model->hp.nHeadKV * model->hp.headDim;
  ggml_init_params params{};
  params.mem_size = ggml_tensor_overhead() * 4;
  params.no_alloc = true;
  stageCtx = ggml_init(params);
  if (stageCtx == nullptr) throw Error(ErrorCode::Native, "cannot create the ggml context for K/V staging");
  kStage = ggml_new_tensor_2d(stageCtx, GGML_TYPE_F32, rowLen, cap);
  vStage = ggml_new_tensor_2d(stageCtx, GGML_TYPE_F32, rowLen, cap);
  ggml_set_name(kStage, "k_stage");
  ggml_set_name(vStage, "v_stage");
  stageBuffer = ggml_backend_alloc_ctx_tensors_from_buft(stageCtx, ggml_backend_cpu_buffer_type());
  if (stageBuffer == nullptr) {
    freeStaging();
    throw Error(ErrorCode::Native, "cannot allocate K/V staging for " + std::to_string(cap) + " tokens");
  }
  capacity = cap;
  const size_t nLayer = static_cast<size_t>(model->hp.nLayer);
  target.kCache.assign(nLayer, kStage);
  target.vCache.assign(nLayer, vStage);
  target.staging = true;
}

CachedGraph& MultiEval::Impl::graphFor(int64_t n, LogitsMode mode) {
  clock++;
  if (CachedGraph* cached = findCachedGraph(graphs, n, mode, clock)) return *cached;
  const size_t budget = graphNodeBudget(model->hp);
  const size_t metaBytes = (ggml_tensor_overhead() * budget * 2 + ggml_graph_overhead_custom(budget, false) + 63) / 64 * 64;
  auto g = std::make_unique<CachedGraph>();
  if (graphs.size() >= kMaxCachedGraphs) {
    // Evict the least recently used graph and build the new one in its memory: shapes come and
    // go with the traffic, and a long-running server must not churn the allocator.
    const size_t oldest = leastRecentlyUsed(graphs);
    g->metadata = std::move(graphs[oldest]->metadata);
    graphs.erase(graphs.begin() + static_cast<std::ptrdiff_t>(oldest));
  }
  if (!g->metadata) g->metadata.reset(std::aligned_alloc(64, metaBytes));
  if (!g->metadata) throw Error(ErrorCode::Native, "cannot allocate " + std::to_string(metaBytes) + " bytes for a graph");
  g->n = n;
  g->mode = mode;
  ggml_init_params params{};
  params.mem_size = metaBytes;
  params.mem_buffer = g->metadata.get();
  params.no_alloc = true;
  g->ctx = ggml_init(params);
  if (g->ctx == nullptr) throw Error(ErrorCode::Native, "cannot create a ggml context for the graph");
  g->gf = ggml_new_graph_custom(g->ctx, budget, false);
  GraphBuilder b(*model, target, g->ctx, g->gf, n, mode);
  buildArch(b);
  g->tokens = b.inpTokens;
  g->slots = b.inpSlots;
  g->logits = b.logits;
  g->attnNodes = b.attnNodes;
  g->lastUse = clock;
  graphs.push_back(std::move(g));
  return *graphs.back();
}

MultiEval::MultiEval(std::shared_ptr<const Model> model, int threads) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  if (!model) invalid("MultiEval needs a model");
  if (threads < 0 || threads > 1024) invalid("threads = " + std::to_string(threads) + " is outside [0, 1024]");
  m.model = std::move(model);
  m.threads = threads == 0 ? std::max(1, m.model->threads) : threads;

  createCpuBackend(m.threads, &m.pool, &m.backend);

  const int64_t nLayer = m.model->hp.nLayer;
  m.layerOps.resize(static_cast<size_t>(nLayer));
  m.target.attentionFn = multiAttentionOp;
  for (int64_t il = 0; il < nLayer; il++) {
    m.layerOps[il].owner = &m;
    m.layerOps[il].layer = static_cast<int>(il);
    m.target.attentionUserdata.push_back(&m.layerOps[il]);
  }
  m.keyTurn.period = keyTurnPeriod(*m.model, false);
  m.keyTurn.pe = m.model->pe;
  m.keyTurn.nHeadKV = static_cast<int>(m.model->hp.nHeadKV);
  m.keyTurn.headDim = static_cast<int>(m.model->hp.headDim);
  m.target.keyTurn = &m.keyTurn;
  m.galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(m.backend));
  if (m.galloc == nullptr) throw Error(ErrorCode::Native, "cannot create the ggml graph allocator");
  m.ensureCapacity(64);
}

MultiEval::~MultiEval() = default;

bool MultiEval::accepts(const Context& context) const { return context.impl_->model.get() == impl_->model.get(); }

void MultiEval::run(const std::vector<Context*>& contexts, const std::vector<float*>& logits) {
  Impl& m = *impl_;
  const Model& model = *m.model;
  const Hyperparameters& hp = model.hp;
  if (contexts.empty()) invalid("evalMany needs at least one context");
  if (logits.size() != contexts.size()) invalid("evalMany: one logits buffer per context");

  // 1. The sequences, in the given order, and their token ranges in the concatenated batch.
  std::unordered_set<const Context::Impl*> seen;
  int64_t total = 0;
  bool anyLogits = false;
  for (size_t s = 0; s < contexts.size(); s++) {
    if (contexts[s] == nullptr) invalid("evalMany: null context");
    const Context::Impl& c = *contexts[s]->impl_;
    if (c.model.get() != m.model.get()) invalid("evalMany: context " + std::to_string(s) + " belongs to another model");
    if (!seen.insert(&c).second) invalid("evalMany: context " + std::to_string(s) + " appears twice");
    if (c.n < 1) invalid("evalMany: context " + std::to_string(s) + " has no staged batch");
    total += c.n;
    anyLogits = anyLogits || c.mode != LogitsMode::None;
  }
  if (total > kMaxTotal)
    invalid("evalMany: " + std::to_string(total) + " tokens in one call; at most " + std::to_string(kMaxTotal));
  // Segmented contexts (GPU models, the CPU testing knob) have no joint batched pass: one after
  // another, each through its own segmented forward pass.
  for (Context* context : contexts) {
    if (!context->segmented()) continue;
    for (size_t s = 0; s < contexts.size(); s++) contexts[s]->run(logits[s]);
    return;
  }
  // 'last' graphs keep every layer's attention node (so every layer's K/V is scattered) at the
  // cost of one logits row; 'none' graphs would drop the last layer's.
  const LogitsMode mode = anyLogits ? LogitsMode::All : LogitsMode::Last;
  m.ensureCapacity(total);
  m.nTotal = total;
  m.seqs.clear();
  m.start.clear();
  m.seqOf.resize(static_cast<size_t>(total));
  m.tokens.resize(static_cast<size_t>(total));
  m.rows.resize(static_cast<size_t>(total));
  m.positions.resize(static_cast<size_t>(total));
  int64_t at = 0;
  const int64_t rowLen = hp.nHeadKV * hp.headDim;
  for (size_t s = 0; s < contexts.size(); s++) {
    Context::Impl& c = *contexts[s]->impl_;
    m.seqs.push_back(&c);
    m.start.push_back(at);
    const size_t rowsBytes = static_cast<size_t>(c.n) * ggml_row_size(c.target.kCache[0]->type, rowLen);
    if (c.kNewRows.size() < rowsBytes) {
      c.kNewRows.resize(rowsBytes);
      c.vNewRows.resize(rowsBytes);
    }
    for (int64_t i = 0; i < c.n; i++) {
      m.seqOf[static_cast<size_t>(at + i)] = static_cast<int32_t>(s);
      m.tokens[static_cast<size_t>(at + i)] = c.tokens[static_cast<size_t>(i)];
      m.rows[static_cast<size_t>(at + i)] = at + i;
      m.positions[static_cast<size_t>(at + i)] = c.qPos[static_cast<size_t>(i)];
    }
    at += c.n;
  }

  // 2. Archive copies of top-k contexts, before this batch's writes can overwrite the ring slot.
  for (Context::Impl* c : m.seqs) c->applyArchiveCopies();

  // 3. The graph for this total shape, allocated in the compute buffer.
  CachedGraph& g = m.graphFor(total, mode);
  const size_t before = ggml_gallocr_get_buffer_size(m.galloc, 0);
  if (!ggml_gallocr_alloc_graph(m.galloc, g.gf)) throw Error(ErrorCode::Native, "cannot allocate the compute graph");
  if (ggml_gallocr_get_buffer_size(m.galloc, 0) != before) {
    // The buffer moved: every other cached graph's tensors point into the old one.
    for (auto it = m.graphs.begin(); it != m.graphs.end();) {
      if (it->get() != &g) it = m.graphs.erase(it);
      else ++it;
    }
  }

  // 4. Inputs and the kernel's per-sequence parameters.
  std::memcpy(g.tokens->data, m.tokens.data(), sizeof(int32_t) * static_cast<size_t>(total));
  std::memcpy(g.slots->data, m.rows.data(), sizeof(int64_t) * static_cast<size_t>(total));
  const int64_t hq = hp.nHead * hp.headDim;
  // Every layer of a sequence reads its same position arrays: their contents are checked once,
  // for the slot count they were checked with (-1: not yet).
  std::vector<int64_t> checkedSlots(m.seqs.size(), -1);
  for (int64_t il = 0; il < hp.nLayer; il++) {
    ggml_tensor* node = g.attnNodes[static_cast<size_t>(il)];
    if (node == nullptr || node->data == nullptr)
      throw Error(ErrorCode::Native, "internal: layer " + std::to_string(il) + "'s attention is missing from the batched graph");
    const auto* qBase = static_cast<const float*>(node->src[0]->data);
    auto* outBase = static_cast<float*>(node->data);
    MultiLayerOp& op = m.layerOps[static_cast<size_t>(il)];
    op.problems.resize(m.seqs.size());
    for (size_t s = 0; s < m.seqs.size(); s++) {
      const Context::Impl& c = *m.seqs[s];
      attn::Problem& p = op.problems[s];
      const bool hasArchive = c.opt.nArchive > 0 && il >= c.opt.topKFromLayer;
      p = attn::Problem{};
      p.nQ = static_cast<int>(c.n);
      p.nHead = static_cast<int>(hp.nHead);
      p.nHeadKV = static_cast<int>(hp.nHeadKV);
      p.headDim = static_cast<int>(hp.headDim);
      p.nSlot = hasArchive ? c.nSlotArchive : c.opt.nSlot;
      p.q = qBase + m.start[s] * hq;
      p.k = c.target.kCache[static_cast<size_t>(il)]->data;
      p.v = c.target.vCache[static_cast<size_t>(il)]->data;
      p.kNew = c.kNewRows.data();
      p.vNew = c.vNewRows.data();
      p.kvType = c.opt.kvType;
      setCacheStrides(p, c.target.kCache[static_cast<size_t>(il)], c.target.vCache[static_cast<size_t>(il)]);
      p.slotPos = c.slotPos.data();
      p.qPos = c.qPos.data();
      p.scale = model.attnScale;
      p.pe = model.pe;
      p.keyTurnPeriod = c.keyTurn.period;
      if (c.keyTurn.period != m.keyTurn.period)
        throw Error(ErrorCode::Native, "internal: a context's key turn differs from the batched pass's");
      p.mask = c.mask;
      p.topK = il >= c.opt.topKFromLayer ? c.topK : attn::TopKMiddle{};
      p.out = outBase + m.start[s] * hq;
      try {
        if (checkedSlots[s] == p.nSlot) {
          attn::validateExceptPositions(p);
        } else {
          attn::validate(p);
          checkedSlots[s] = p.nSlot;
        }
      } catch (const std::exception& e) {
        throw Error(ErrorCode::InvalidArgument, "attention problem of context " + std::to_string(s) + " rejected: " + e.what());
      }
    }
  }

  // 5. Compute.
  m.opFailed.store(false);
  m.keyTurn.failed.store(false);
  m.keyTurn.positions = m.positions.data();
  const ggml_status status = ggml_backend_graph_compute(m.backend, g.gf);
  if (status != GGML_STATUS_SUCCESS)
    throw Error(ErrorCode::Native, std::string("ggml graph compute failed: ") + ggml_status_to_string(status));
  if (m.keyTurn.failed.load()) throw Error(ErrorCode::Native, m.keyTurn.error);
  if (m.opFailed.load()) {
    std::lock_guard<std::mutex> lock(m.opErrorMutex);
    throw Error(ErrorCode::Native, m.opError.empty() ? "batched attention failed" : m.opError);
  }

  // 6. Logits: each context's rows of the [nVocab, total] result.
  if (mode != LogitsMode::All) return;
  const size_t row = sizeof(float) * static_cast<size_t>(hp.nVocab);
  const auto* all = static_cast<const uint8_t*>(g.logits->data);
  for (size_t s = 0; s < m.seqs.size(); s++) {
    const Context::Impl& c = *m.seqs[s];
    if (logits[s] == nullptr || c.mode == LogitsMode::None) continue;
    if (c.mode == LogitsMode::All)
      std::memcpy(logits[s], all + row * static_cast<size_t>(m.start[s]), row * static_cast<size_t>(c.n));
    else
      std::memcpy(logits[s], all + row * static_cast<size_t>(m.start[s] + c.n - 1), row);
  }
}

}  // namespace lmi::engine
