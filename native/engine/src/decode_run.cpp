// Decode runs: several tokens, each sampled from the previous one's logits, in one call. A run
// spares the caller one round trip per token (for a small model on the JS side of N-API that
// round trip cost as much as the forward pass), and keeps what each step overwrote so that the
// caller can take back the tokens it did not use.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "context_impl.h"
#include "lmi/sampling.h"

namespace lmi::engine {

namespace {

constexpr int64_t kMaxRunSteps = 1024;
constexpr int64_t kMaxPosition = int64_t(1) << 53;

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

}  // namespace

void Context::checkDecode(const DecodeRun& r) const {
  const Impl& c = *impl_;
  const ContextOptions& o = c.opt;
  const int64_t nVocab = c.model->hp.nVocab;
  if (o.nArchive > 0) invalid("decode runs need a context without a top-k archive");
  if (r.maxSteps < 1 || r.maxSteps > std::min(kMaxRunSteps, o.nSlot))
    invalid("a decode run takes 1 to min(" + std::to_string(kMaxRunSteps) + ", nSlot = " + std::to_string(o.nSlot) +
            ") steps, got " + std::to_string(r.maxSteps));
  if (r.positions == nullptr || r.slots == nullptr || r.slotPositions == nullptr || r.endAfter == nullptr ||
      (r.nRecent > 0 && r.recent == nullptr))
    invalid("decode run arrays missing");
  if (r.token < 0 || r.token >= nVocab)
    invalid("token " + std::to_string(r.token) + " is outside [0, nVocab = " + std::to_string(nVocab) + ")");
  if (r.nSlotPositions != o.nSlot)
    invalid("slotPositions has " + std::to_string(r.nSlotPositions) + " entries, expected nSlot = " +
            std::to_string(o.nSlot));
  if (r.nRecent < 0) invalid("recent has a negative length");
  if (!(r.budgetSeconds >= 0)) invalid("budgetSeconds must be >= 0");
  std::vector<uint8_t> seen(static_cast<size_t>(o.nSlot), 0);
  for (int64_t i = 0; i < r.maxSteps; i++) {
    const int64_t pos = r.positions[i];
    if (pos < 0 || pos > kMaxPosition || (i > 0 && pos <= r.positions[i - 1]))
      invalid("positions[" + std::to_string(i) + "] = " + std::to_string(pos) + " is outside [0, 2^53] or does not increase");
    const int32_t slot = r.slots[i];
    if (slot < 0 || slot >= o.nSlot)
      invalid("slots[" + std::to_string(i) + "] = " + std::to_string(slot) + " is outside [0, nSlot)");
    if (seen[slot]++) invalid("slot " + std::to_string(slot) + " appears twice in one decode run");
  }
  for (int64_t s = 0; s < r.nSlotPositions; s++) {
    const int64_t p = r.slotPositions[s];
    if (p < -1 || p >= r.positions[0])
      invalid("slotPositions[" + std::to_string(s) + "] = " + std::to_string(p) +
              ": must be -1 or a position older than the run's first, " + std::to_string(r.positions[0]));
  }
  const attn::LambdaMask& m = r.mask;
  if (m.nLocal < 1 || m.nLocal > kMaxPosition || m.nGlobal < 0 || m.nGlobal > kMaxPosition || m.limitDistance < 0 ||
      m.limitDistance > kMaxPosition || m.origin < 0 || m.origin > kMaxPosition)
    invalid("mask fields out of range");
}

void Context::Impl::journalRows(int64_t from, int64_t to, bool save) {
  // Steps with consecutive slots (a ring's, a vanilla stream's) move as one block per tensor: on a
  // GPU that is one copy per layer and K/V instead of one per step.
  // The journal holds, per layer and K/V, journalCapacity slots of each cache piece (kv_cache.h).
  const int64_t nLayer = model->hp.nLayer;
  const ggml_tensor* first = target.kCache[0];
  const int64_t pieces = kvPieces(first);
  const size_t piece = kvPieceBytes(first);
  const size_t section = kvSlotBytes(first) * static_cast<size_t>(journalCapacity);
  for (int64_t a = from; a < to;) {
    int64_t b = a + 1;
    while (b < to && journalSlots[b] == journalSlots[b - 1] + 1) b++;
    const size_t bytes = static_cast<size_t>(b - a) * piece;
    for (int64_t il = 0; il < nLayer; il++) {
      ggml_tensor* kv[2] = {target.kCache[il], target.vCache[il]};
      for (int w = 0; w < 2; w++) {
        for (int64_t g = 0; g < pieces; g++) {
          uint8_t* j = journal.data() + static_cast<size_t>(2 * il + w) * section +
                       (static_cast<size_t>(g) * static_cast<size_t>(journalCapacity) + static_cast<size_t>(a)) * piece;
          const size_t offset = kvPieceOffset(kv[w], g, journalSlots[a]);
          if (save) ggml_backend_tensor_get(kv[w], j, offset, bytes);  // a memcpy for host buffers
          else ggml_backend_tensor_set(kv[w], j, offset, bytes);
        }
      }
    }
    a = b;
  }
}

DecodeOutcome Context::decode(const DecodeRun& r, TokenSampler& sampler, Sfc32& rng, int32_t* sampledOut,
                              float* lastLogits) {
  checkDecode(r);
  Impl& c = *impl_;
  const auto start = std::chrono::steady_clock::now();
  // Every row the run may overwrite is kept before it starts (a run that ends early kept a few
  // rows too many, which costs less than a copy per step).
  const size_t row = kvSlotBytes(c.target.kCache[0]);
  const size_t bytes = static_cast<size_t>(2 * c.model->hp.nLayer) * row * static_cast<size_t>(r.maxSteps);
  if (c.journal.size() < bytes) c.journal.resize(bytes);
  c.journalSlots.assign(r.slots, r.slots + r.maxSteps);
  c.journalCapacity = r.maxSteps;
  c.journalSteps = 0;
  c.journalRows(0, r.maxSteps, true);

  // The staged batch is one token; the table is the context's own copy, updated after each step.
  std::memcpy(c.slotPos.data(), r.slotPositions, sizeof(int64_t) * r.nSlotPositions);
  c.n = 1;
  c.nCopies = 0;
  c.mask = r.mask;
  c.topK = attn::TopKMiddle{};
  c.mode = LogitsMode::Last;
  std::vector<int32_t> history(r.recent, r.recent + r.nRecent);
  history.reserve(static_cast<size_t>(r.nRecent + r.maxSteps));

  DecodeOutcome out;
  int32_t token = r.token;
  for (int64_t i = 0; i < r.maxSteps; i++) {
    c.tokens[0] = token;
    c.qPos[0] = r.positions[i];
    c.slotIndex[0] = r.slots[i];
    c.journalSteps = i + 1;
    const auto t0 = std::chrono::steady_clock::now();
    run(lastLogits);
    out.computeSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    c.slotPos[r.slots[i]] = r.positions[i];
    out.steps = i + 1;

    const int32_t next = sampler.sample(lastLogits, history.data(), static_cast<int64_t>(history.size()), rng);
    if (next < 0) break;  // the caller's sampler takes this row
    sampledOut[out.sampled++] = next;
    history.push_back(next);
    if (r.endAfter[next] != 0) break;
    if (r.budgetSeconds > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >= r.budgetSeconds)
      break;
    token = next;
  }
  return out;
}

void Context::rollback(int64_t steps) {
  Impl& c = *impl_;
  if (steps < 0 || steps > c.journalSteps)
    invalid("rollback of " + std::to_string(steps) + " steps; the latest decode run can take back " +
            std::to_string(c.journalSteps));
  // The steps' slots are distinct, so the order of the copies back does not matter.
  c.journalRows(c.journalSteps - steps, c.journalSteps, false);
  c.journalSteps -= steps;
}

}  // namespace lmi::engine
