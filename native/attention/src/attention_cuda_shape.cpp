// lmi::attn::cuda::validateShape: the checks of attn::validate that need no pointer
// dereference (the pointers are device pointers), plus the CUDA kernels' own limits.
// Compiled into every build, with or without CUDA.
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "lmi/attention_cuda.h"

namespace lmi::attn::cuda {
namespace {

constexpr int64_t kMaxPos = int64_t(1) << 61;
constexpr int kMaxHeadDimCuda = 256;
constexpr int kMaxTopKCuda = 256;

[[noreturn]] void fail(const std::string& msg) { throw InvalidArgument("lmi attention (cuda): " + msg); }

std::string str(int64_t v) { return std::to_string(v); }

std::string str(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

bool mulOverflows(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0 || (a != 0 && b > std::numeric_limits<int64_t>::max() / a)) return true;
  *out = a * b;
  return false;
}

}  // namespace

void validateShape(const Problem& p) {
  if (p.nQ <= 0) fail("nQ must be > 0 (got " + str(int64_t(p.nQ)) + ")");
  if (p.nHead <= 0) fail("nHead must be > 0 (got " + str(int64_t(p.nHead)) + ")");
  if (p.nHeadKV <= 0) fail("nHeadKV must be > 0 (got " + str(int64_t(p.nHeadKV)) + ")");
  if (p.headDim <= 0) fail("headDim must be > 0 (got " + str(int64_t(p.headDim)) + ")");
  if (p.headDim > kMaxHeadDimCuda)
    fail("headDim must be <= " + str(int64_t(kMaxHeadDimCuda)) + " for the CUDA kernels (got " +
         str(int64_t(p.headDim)) + "); use the CPU kernel");
  if (p.nSlot < 0) fail("nSlot must be >= 0 (got " + str(p.nSlot) + ")");
  if (p.nSlot >= (int64_t(1) << 40)) fail("nSlot is too large (got " + str(p.nSlot) + ")");
  if (p.nHead % p.nHeadKV != 0)
    fail("nHead (" + str(int64_t(p.nHead)) + ") must be a multiple of nHeadKV (" + str(int64_t(p.nHeadKV)) + ")");

  constexpr int64_t kMaxElems = int64_t(1) << 58;
  int64_t qElems = 0;
  if (mulOverflows(p.nQ, p.nHead, &qElems) || mulOverflows(qElems, p.headDim, &qElems) || qElems > kMaxElems)
    fail("nQ * nHead * headDim is too large");
  const int64_t kvRow = int64_t(p.nHeadKV) * p.headDim;
  if (p.kvType != KVType::F32 && p.kvType != KVType::F16) fail("kvType must be F32 or F16");
  auto checkStride = [&](int64_t stride, const char* name) {
    if (stride < 0) fail(std::string(name) + " must be >= 0 (got " + str(stride) + ")");
    if (stride != 0 && stride < kvRow)
      fail(std::string(name) + " (" + str(stride) + ") must be 0 or >= nHeadKV * headDim (" + str(kvRow) + ")");
    int64_t total = 0;
    if (mulOverflows(p.nSlot, stride ? stride : kvRow, &total) || total > kMaxElems)
      fail(std::string("nSlot * ") + name + " is too large");
  };
  checkStride(p.kSlotStride, "kSlotStride");
  checkStride(p.vSlotStride, "vSlotStride");

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

  const LambdaMask& m = p.mask;
  if (m.nLocal <= 0) fail("mask.nLocal must be > 0 (got " + str(m.nLocal) + ")");
  if (m.nLocal > kMaxPos) fail("mask.nLocal is too large (max 2^61)");
  if (m.nGlobal < 0) fail("mask.nGlobal must be >= 0 (got " + str(m.nGlobal) + ")");
  if (m.nGlobal > kMaxPos) fail("mask.nGlobal is too large (max 2^61)");
  if (m.limitDistance < 0) fail("mask.limitDistance must be >= 0 (got " + str(m.limitDistance) + ")");
  if (m.limitDistance > kMaxPos) fail("mask.limitDistance is too large (max 2^61)");
  if (m.origin < -kMaxPos || m.origin > kMaxPos) fail("mask.origin is out of range (|origin| <= 2^61)");
  if (p.topK.k < 0) fail("topK.k must be >= 0 (got " + str(int64_t(p.topK.k)) + ")");
  if (p.topK.k > kMaxTopKCuda)
    fail("topK.k must be <= " + str(int64_t(kMaxTopKCuda)) + " for the CUDA kernels (got " + str(int64_t(p.topK.k)) +
         ")");
  if (p.topK.insertAt < 0) fail("topK.insertAt must be >= 0 (got " + str(p.topK.insertAt) + ")");
  if (p.topK.insertAt > kMaxPos) fail("topK.insertAt is too large (max 2^61)");
}

}  // namespace lmi::attn::cuda
