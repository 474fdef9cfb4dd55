// attn::validate and the checks it shares with the CUDA entry point (check.h).
#include <cmath>
#include <string>

#include "check.h"
#include "lmi/attention.h"

namespace lmi::attn {
namespace detail {

// The CPU kernel's limit on headDim (its per-row scratch is sized from it).
constexpr int kMaxHeadDim = 1 << 16;

void validateShape(const Problem& p, int maxHeadDim) {
  if (p.nQ <= 0) fail("nQ must be > 0 (got " + str(int64_t(p.nQ)) + ")");
  if (p.nHead <= 0) fail("nHead must be > 0 (got " + str(int64_t(p.nHead)) + ")");
  if (p.nHeadKV <= 0) fail("nHeadKV must be > 0 (got " + str(int64_t(p.nHeadKV)) + ")");
  if (p.headDim <= 0) fail("headDim must be > 0 (got " + str(int64_t(p.headDim)) + ")");
  if (p.headDim > maxHeadDim)
    fail("headDim must be <= " + str(int64_t(maxHeadDim)) + " (got " + str(int64_t(p.headDim)) + ")");
  if (p.nSlot < 0) fail("nSlot must be >= 0 (got " + str(p.nSlot) + ")");
  if (p.nHead % p.nHeadKV != 0)
    fail("nHead (" + str(int64_t(p.nHead)) + ") must be a multiple of nHeadKV (" + str(int64_t(p.nHeadKV)) + ")");

  // Sizes: every element count and byte count must fit comfortably in int64 / size_t.
  constexpr int64_t kMaxElems = int64_t(1) << 58;
  int64_t qElems = 0;
  if (mulOverflows(p.nQ, p.nHead, &qElems) || mulOverflows(qElems, p.headDim, &qElems) ||
      qElems > kMaxElems)
    fail("nQ * nHead * headDim is too large");
  const int64_t kvRow = int64_t(p.nHeadKV) * p.headDim;
  if (p.kvType != KVType::F32 && p.kvType != KVType::F16 && p.kvType != KVType::Q8_0)
    fail("kvType must be F32, F16 or Q8_0");
  if (p.kvType == KVType::Q8_0) {
    // Rows must start at block boundaries: every row offset is a sum of multiples of these.
    if (p.headDim % kQ8Block != 0)
      fail("kvType Q8_0 needs headDim to be a multiple of 32 (got " + str(int64_t(p.headDim)) + ")");
    const int64_t strides[6] = {p.kSlotStride, p.vSlotStride, p.kHeadStride, p.vHeadStride, p.kNewStride, p.vNewStride};
    const char* names[6] = {"kSlotStride", "vSlotStride", "kHeadStride", "vHeadStride", "kNewStride", "vNewStride"};
    for (int i = 0; i < 6; i++)
      if (strides[i] % kQ8Block != 0)
        fail(std::string("kvType Q8_0 needs ") + names[i] + " to be a multiple of 32 (got " + str(strides[i]) + ")");
  }
  auto checkStride = [&](int64_t stride, const char* name, int64_t rows) {
    if (stride < 0) fail(std::string(name) + " must be >= 0 (got " + str(stride) + ")");
    if (stride != 0 && stride < kvRow)
      fail(std::string(name) + " (" + str(stride) + ") must be 0 or >= nHeadKV * headDim (" + str(kvRow) + ")");
    int64_t total = 0;
    if (mulOverflows(rows, stride ? stride : kvRow, &total) || total > kMaxElems)
      fail(std::string("rows * ") + name + " is too large");
  };
  // Slot rows: either layout of DESIGN.md's cache, rows never overlapping, the extent in range.
  auto checkRows = [&](int64_t slotStride, int64_t headStride, const char* slotName, const char* headName) {
    if (slotStride < 0) fail(std::string(slotName) + " must be >= 0 (got " + str(slotStride) + ")");
    if (headStride < 0) fail(std::string(headName) + " must be >= 0 (got " + str(headStride) + ")");
    const int64_t D = p.headDim, nKV = p.nHeadKV, nSlot = p.nSlot;
    const int64_t h = headStride ? headStride : D;
    const int64_t s = slotStride ? slotStride : kvRow;
    int64_t slotSpan = 0, headSpan = 0;
    if (mulOverflows(nSlot > 0 ? nSlot - 1 : 0, s, &slotSpan) || mulOverflows(nKV - 1, h, &headSpan) ||
        slotSpan > kMaxElems || headSpan > kMaxElems || slotSpan + headSpan + D > kMaxElems)
      fail(std::string("rows * ") + slotName + " is too large");
    const bool slotMajor = h >= D && s >= headSpan + D;
    const bool headMajor = s >= D && h >= slotSpan + D;
    if (!slotMajor && !headMajor)
      fail(std::string(slotName) + " (" + str(s) + ") and " + headName + " (" + str(h) +
           ") make rows overlap: need slotStride >= (nHeadKV - 1) * headStride + headDim (slot-major) or "
           "headStride >= (nSlot - 1) * slotStride + headDim (head-major)");
  };
  checkRows(p.kSlotStride, p.kHeadStride, "kSlotStride", "kHeadStride");
  checkRows(p.vSlotStride, p.vHeadStride, "vSlotStride", "vHeadStride");
  checkStride(p.kNewStride, "kNewStride", p.nQ);
  checkStride(p.vNewStride, "vNewStride", p.nQ);
  if ((p.kNew == nullptr) != (p.vNew == nullptr)) fail("kNew and vNew must both be set or both be null");

  if (!p.q) fail("q is null");
  if (!p.qPos) fail("qPos is null");
  if (!p.out) fail("out is null");
  if (p.nSlot > 0) {
    if (!p.k) fail("k is null (nSlot > 0)");
    if (!p.v) fail("v is null (nSlot > 0)");
    if (!p.slotPos) fail("slotPos is null (nSlot > 0)");
  }

  if (!std::isfinite(p.scale) || !(p.scale > 0.0f)) fail("scale must be finite and > 0 (got " + str(double(p.scale)) + ")");

  const PositionEncoding& pe = p.pe;
  switch (pe.kind) {
    case Encoding::None:
      break;
    case Encoding::Rope: {
      if (pe.pairing != RopePairing::Normal && pe.pairing != RopePairing::NeoX)
        fail("pe.pairing must be Normal or NeoX");
      if (pe.rotaryDim < 0) fail("pe.rotaryDim must be >= 0 (got " + str(int64_t(pe.rotaryDim)) + ")");
      if (pe.rotaryDim > p.headDim)
        fail("pe.rotaryDim (" + str(int64_t(pe.rotaryDim)) + ") must be <= headDim (" + str(int64_t(p.headDim)) + ")");
      const int rd = pe.rotaryDim ? pe.rotaryDim : p.headDim;
      if (rd % 2 != 0)
        fail("pe.rotaryDim must be even (got " + str(int64_t(rd)) + (pe.rotaryDim ? "" : ", from headDim") + ")");
      if (!std::isfinite(pe.thetaBase) || !(pe.thetaBase > 0.0))
        fail("pe.thetaBase must be finite and > 0 (got " + str(pe.thetaBase) + ")");
      if (!std::isfinite(pe.freqScale) || !(pe.freqScale > 0.0))
        fail("pe.freqScale must be finite and > 0 (got " + str(pe.freqScale) + ")");
      break;
    }
    case Encoding::Alibi:
      if (!pe.alibiSlopes) fail("pe.alibiSlopes is null (ALiBi needs nHead slopes)");
      break;
    default:
      fail("pe.kind must be None, Rope or Alibi");
  }

  if (p.keyTurnPeriod < 0) fail("keyTurnPeriod must be >= 0 (got " + str(p.keyTurnPeriod) + ")");
  if (p.keyTurnPeriod > kMaxPos) fail("keyTurnPeriod is too large (max 2^61)");
  if (p.keyTurnPeriod > 0 && pe.kind != Encoding::Rope) fail("keyTurnPeriod needs RoPE (pe.kind Rope): only RoPE turns keys");

  const LambdaMask& m = p.mask;
  if (m.nLocal <= 0) fail("mask.nLocal must be > 0 (got " + str(m.nLocal) + ")");
  if (m.nLocal > kMaxPos) fail("mask.nLocal is too large (max 2^61)");
  if (m.nGlobal < 0) fail("mask.nGlobal must be >= 0 (got " + str(m.nGlobal) + ")");
  if (m.nGlobal > kMaxPos) fail("mask.nGlobal is too large (max 2^61)");
  if (m.limitDistance < 0) fail("mask.limitDistance must be >= 0 (got " + str(m.limitDistance) + ")");
  if (m.limitDistance > kMaxPos) fail("mask.limitDistance is too large (max 2^61)");
  if (m.origin < -kMaxPos || m.origin > kMaxPos) fail("mask.origin is out of range (|origin| <= 2^61)");
  if (p.topK.k < 0) fail("topK.k must be >= 0 (got " + str(int64_t(p.topK.k)) + ")");
  if (p.topK.insertAt < 0) fail("topK.insertAt must be >= 0 (got " + str(p.topK.insertAt) + ")");
  if (p.topK.insertAt > kMaxPos) fail("topK.insertAt is too large (max 2^61)");
}

}  // namespace detail

void validateExceptPositions(const Problem& p) {
  using namespace detail;
  validateShape(p, kMaxHeadDim);
  if (p.pe.kind == Encoding::Alibi)
    for (int h = 0; h < p.nHead; h++)
      if (!std::isfinite(p.pe.alibiSlopes[h])) fail("pe.alibiSlopes[" + str(int64_t(h)) + "] is not finite");
}

void validate(const Problem& p) {
  using namespace detail;
  validateExceptPositions(p);
  for (int i = 0; i < p.nQ; i++) {
    const int64_t pos = p.qPos[i];
    if (pos < 0) fail("qPos[" + str(int64_t(i)) + "] must be >= 0 (got " + str(pos) + ")");
    if (pos > kMaxPos) fail("qPos[" + str(int64_t(i)) + "] is too large (max 2^61)");
  }
  for (int64_t s = 0; s < p.nSlot; s++) {
    const int64_t pos = p.slotPos[s];
    if (pos < -1) fail("slotPos[" + str(s) + "] must be >= 0, or -1 for an empty slot (got " + str(pos) + ")");
    if (pos > kMaxPos) fail("slotPos[" + str(s) + "] is too large (max 2^61)");
  }
}


}  // namespace lmi::attn
