// Every validate() rule raises InvalidArgument naming the argument (validateExceptPositions()
// every rule but the position arrays' contents); garbage in the fields validate() can judge never
// crashes run().
#include <functional>
#include <limits>

#include "lmi/attention_cuda.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

Case baseCase() {
  Rng rng(11);
  Case c;
  c.nQ = 2;
  c.nHead = 4;
  c.nHeadKV = 2;
  c.headDim = 16;
  c.scale = 0.25f;
  c.slotPos = {0, 1, 2, 3, -1, 5};
  c.qPos = {4, 5};
  c.mask.nLocal = 3;
  c.mask.nGlobal = 1;
  c.mask.limitDistance = 3;
  c.fill(rng);
  return c;
}

// Expects validate() and run() to throw InvalidArgument whose message contains `name`, and
// validateExceptPositions() too unless the fault is in the contents of qPos or slotPos
// (`inPositions`), which it does not read.
void expectInvalid(const char* label, const char* name, const std::function<void(Case&, Problem&)>& mutate,
                   bool inPositions = false) {
  Case c = baseCase();
  Problem p = c.problem();
  mutate(c, p);
  if (inPositions) {
    try {
      validateExceptPositions(p);
    } catch (const std::exception& e) {
      LMI_CHECK(false, "%s: validateExceptPositions read the positions: %s", label, e.what());
    }
  }
  const char* entries[] = {"validate", "run", "validateExceptPositions"};
  for (int entry = 0; entry < (inPositions ? 2 : 3); entry++) {
    try {
      if (entry == 0)
        validate(p);
      else if (entry == 1)
        run(p);
      else
        validateExceptPositions(p);
      LMI_CHECK(false, "%s: no InvalidArgument from %s", label, entries[entry]);
    } catch (const InvalidArgument& e) {
      LMI_CHECK(std::string(e.what()).find(name) != std::string::npos, "%s: message '%s' does not name %s", label,
                e.what(), name);
    } catch (const std::exception& e) {
      LMI_CHECK(false, "%s: wrong exception type: %s", label, e.what());
    }
  }
}

}  // namespace

int main() {
  {
    Case c = baseCase();
    Problem p = c.problem();
    try {
      validate(p);
      run(p);
    } catch (const std::exception& e) {
      LMI_CHECK(false, "valid base case rejected: %s", e.what());
    }
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  using C = Case;
  using P = Problem;
  expectInvalid("nQ 0", "nQ", [](C&, P& p) { p.nQ = 0; });
  expectInvalid("nQ < 0", "nQ", [](C&, P& p) { p.nQ = -3; });
  expectInvalid("nHead 0", "nHead", [](C&, P& p) { p.nHead = 0; });
  expectInvalid("nHeadKV 0", "nHeadKV", [](C&, P& p) { p.nHeadKV = 0; });
  expectInvalid("headDim 0", "headDim", [](C&, P& p) { p.headDim = 0; });
  expectInvalid("headDim < 0", "headDim", [](C&, P& p) { p.headDim = -16; });
  expectInvalid("nSlot < 0", "nSlot", [](C&, P& p) { p.nSlot = -1; });
  expectInvalid("GQA ratio", "nHeadKV", [](C&, P& p) { p.nHeadKV = 3; });
  expectInvalid("q null", "q", [](C&, P& p) { p.q = nullptr; });
  expectInvalid("k null", "k", [](C&, P& p) { p.k = nullptr; });
  expectInvalid("v null", "v", [](C&, P& p) { p.v = nullptr; });
  expectInvalid("slotPos null", "slotPos", [](C&, P& p) { p.slotPos = nullptr; });
  expectInvalid("qPos null", "qPos", [](C&, P& p) { p.qPos = nullptr; });
  expectInvalid("out null", "out", [](C&, P& p) { p.out = nullptr; });
  expectInvalid("kvType", "kvType", [](C&, P& p) { p.kvType = static_cast<KVType>(7); });
  expectInvalid("kSlotStride small", "kSlotStride", [](C&, P& p) { p.kSlotStride = 31; });
  expectInvalid("vSlotStride small", "vSlotStride", [](C&, P& p) { p.vSlotStride = 1; });
  expectInvalid("kSlotStride < 0", "kSlotStride", [](C&, P& p) { p.kSlotStride = -32; });
  expectInvalid("kNew without vNew", "kNew and vNew", [](C& c, P& p) { p.kNew = c.kf.data(); });
  expectInvalid("vNew without kNew", "kNew and vNew", [](C& c, P& p) { p.vNew = c.vf.data(); });
  expectInvalid("kNewStride small", "kNewStride", [](C& c, P& p) {
    p.kNew = c.kf.data();
    p.vNew = c.vf.data();
    p.kNewStride = 31;
  });
  expectInvalid("vNewStride < 0", "vNewStride", [](C& c, P& p) {
    p.kNew = c.kf.data();
    p.vNew = c.vf.data();
    p.vNewStride = -1;
  });
  expectInvalid("rotaryDim odd", "rotaryDim", [](C&, P& p) { p.pe.rotaryDim = 7; });
  expectInvalid("rotaryDim > headDim", "rotaryDim", [](C&, P& p) { p.pe.rotaryDim = 18; });
  expectInvalid("rotaryDim < 0", "rotaryDim", [](C&, P& p) { p.pe.rotaryDim = -2; });
  expectInvalid("rotaryDim from odd headDim", "rotaryDim", [](C&, P& p) {
    p.headDim = 15;
    p.pe.rotaryDim = 0;
  });
  expectInvalid("pairing", "pairing", [](C&, P& p) { p.pe.pairing = static_cast<RopePairing>(1); });
  expectInvalid("encoding kind", "kind", [](C&, P& p) { p.pe.kind = static_cast<Encoding>(9); });
  for (double bad : {nan, inf, -inf, 0.0, -1.0}) {
    expectInvalid("scale", "scale", [&](C&, P& p) { p.scale = static_cast<float>(bad); });
    expectInvalid("thetaBase", "thetaBase", [&](C&, P& p) { p.pe.thetaBase = bad; });
    expectInvalid("freqScale", "freqScale", [&](C&, P& p) { p.pe.freqScale = bad; });
  }
  expectInvalid("ALiBi without slopes", "alibiSlopes", [](C&, P& p) {
    p.pe.kind = Encoding::Alibi;
    p.pe.alibiSlopes = nullptr;
  });
  expectInvalid("ALiBi NaN slope", "alibiSlopes", [](C& c, P& p) {
    c.slopes = {0.5f, 0.25f, NAN, 0.1f};
    p.pe.kind = Encoding::Alibi;
    p.pe.alibiSlopes = c.slopes.data();
  });
  expectInvalid("ALiBi inf slope", "alibiSlopes", [](C& c, P& p) {
    c.slopes = {0.5f, 0.25f, 0.1f, INFINITY};
    p.pe.kind = Encoding::Alibi;
    p.pe.alibiSlopes = c.slopes.data();
  });
  expectInvalid("nLocal 0", "nLocal", [](C&, P& p) { p.mask.nLocal = 0; });
  expectInvalid("nLocal < 0", "nLocal", [](C&, P& p) { p.mask.nLocal = -5; });
  expectInvalid("nGlobal < 0", "nGlobal", [](C&, P& p) { p.mask.nGlobal = -1; });
  expectInvalid("limitDistance < 0", "limitDistance", [](C&, P& p) { p.mask.limitDistance = -1; });
  expectInvalid("origin huge", "origin", [](C&, P& p) { p.mask.origin = std::numeric_limits<int64_t>::min(); });
  expectInvalid("topK.k < 0", "topK.k", [](C&, P& p) { p.topK.k = -1; });
  expectInvalid("insertAt < 0", "insertAt", [](C&, P& p) { p.topK.insertAt = -2; });
  expectInvalid("query position < 0", "qPos[1]", [](C& c, P&) { c.qPos[1] = -1; }, true);
  expectInvalid("query position huge", "qPos[0]", [](C& c, P&) { c.qPos[0] = std::numeric_limits<int64_t>::max(); },
                true);
  expectInvalid("slot position < -1", "slotPos[2]", [](C& c, P&) { c.slotPos[2] = -2; }, true);
  expectInvalid("slot position huge", "slotPos[3]", [](C& c, P&) { c.slotPos[3] = int64_t(1) << 62; }, true);
  expectInvalid("overflowing sizes", "too large", [](C&, P& p) {
    p.nQ = 1 << 30;
    p.nHead = 1 << 30;
  });
  expectInvalid("overflowing slot bytes", "too large", [](C&, P& p) { p.nSlot = int64_t(1) << 62; });
  expectInvalid("overflowing stride", "too large", [](C&, P& p) { p.kSlotStride = int64_t(1) << 60; });
  // Head strides: rows of (slot, KV head) must not overlap in either layout (D = 16, 2 KV heads, 6 slots).
  expectInvalid("kHeadStride < 0", "kHeadStride", [](C&, P& p) { p.kHeadStride = -16; });
  expectInvalid("vHeadStride overlapping heads", "vHeadStride", [](C&, P& p) { p.vHeadStride = 8; });
  expectInvalid("head-major, slots overlapping", "kSlotStride", [](C&, P& p) {
    p.kSlotStride = 15;
    p.kHeadStride = 6 * 16;
  });
  expectInvalid("head-major, heads overlapping", "kHeadStride", [](C&, P& p) {
    p.kSlotStride = 16;
    p.kHeadStride = 5 * 16;  // head 1's slot 0 is head 0's slot 5
  });
  expectInvalid("overflowing head stride", "too large", [](C&, P& p) { p.vHeadStride = int64_t(1) << 60; });
  {
    // A head-major layout is accepted, and the CUDA entry point refuses it by name.
    Case c = baseCase();
    c.toHeadMajor(0, 0);
    Problem p = c.problem();
    try {
      validate(p);
    } catch (const std::exception& e) {
      LMI_CHECK(false, "head-major layout rejected: %s", e.what());
    }
    try {
      cuda::validateShape(p);
      LMI_CHECK(false, "cuda::validateShape accepted a head-major layout");
    } catch (const InvalidArgument& e) {
      LMI_CHECK(std::string(e.what()).find("slot-major") != std::string::npos, "message: %s", e.what());
    }
  }

  {
    // Q8_0 K/V: the CPU kernel takes it, the CUDA entry point refuses it by name.
    Case c = baseCase();
    c.headDim = 32;
    c.kvType = KVType::Q8_0;
    Rng rng(7);
    c.fill(rng);
    Problem p = c.problem();
    try {
      validate(p);
    } catch (const std::exception& e) {
      LMI_CHECK(false, "Q8_0 K/V rejected: %s", e.what());
    }
    try {
      cuda::validateShape(p);
      LMI_CHECK(false, "cuda::validateShape accepted Q8_0 K/V");
    } catch (const InvalidArgument& e) {
      LMI_CHECK(std::string(e.what()).find("Q8_0") != std::string::npos, "message: %s", e.what());
    }
  }

  // runPartition checks its own ith / nth.
  for (auto [ith, nth] : {std::pair{0, 0}, std::pair{-1, 2}, std::pair{2, 2}}) {
    Case c = baseCase();
    try {
      runPartition(c.problem(), ith, nth);
      LMI_CHECK(false, "runPartition(%d, %d) accepted", ith, nth);
    } catch (const InvalidArgument& e) {
      LMI_CHECK(std::string(e.what()).find("runPartition") != std::string::npos, "message: %s", e.what());
    }
  }

  // Fuzz the judgeable fields with extreme values: InvalidArgument or a finite result.
  Rng rng(12);
  const std::vector<int64_t> extremes = {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                                         -(int64_t(1) << 61) - 1, -(int64_t(1) << 61), -2, -1, 0, 1, 2, 3,
                                         (int64_t(1) << 40), (int64_t(1) << 61), (int64_t(1) << 61) + 1};
  const std::vector<double> reals = {nan, inf, -inf, 0.0, -1.0, 1e-300, 1e300, 1.0, 10000.0};
  int threw = 0, ran = 0;
  for (int it = 0; it < 3000; it++) {
    Case c = baseCase();
    Problem p = c.problem();
    const int nMut = static_cast<int>(rng.range(1, 3));
    for (int m = 0; m < nMut; m++) {
      const int64_t x = rng.coin(0.7) ? rng.pick(extremes) : rng.range(-10, 10);
      const double r = rng.pick(reals);
      switch (rng.range(0, 16)) {
        case 0: c.qPos[rng.range(0, 1)] = x; break;
        case 1: c.slotPos[rng.range(0, 5)] = x; break;
        case 2: p.mask.origin = x; break;
        case 3: p.mask.nGlobal = x; break;
        case 4: p.mask.nLocal = x; break;
        case 5: p.mask.limitDistance = x; break;
        case 6: p.topK.k = static_cast<int>(rng.range(-3, 10)); break;
        case 7: p.topK.insertAt = x; break;
        case 8: p.scale = static_cast<float>(r); break;
        case 9: p.pe.thetaBase = r; break;
        case 10: p.pe.freqScale = r; break;
        case 11: p.pe.rotaryDim = static_cast<int>(rng.range(-4, 20)); break;
        case 12: p.pe.kind = static_cast<Encoding>(rng.range(0, 3)); break;
        case 13: p.pe.pairing = static_cast<RopePairing>(rng.range(0, 3)); break;
        case 14: p.mask.lambda = rng.coin(); break;
        case 15: p.kvType = static_cast<KVType>(rng.pick(std::vector<int64_t>{0, 1, 2, 8})); break;  // 8: Q8_0
        case 16: p.nHeadKV = static_cast<int>(rng.range(-1, 3)); break;  // buffers hold 2 KV heads
      }
    }
    if (p.pe.kind == Encoding::Alibi && rng.coin(0.7)) {
      c.slopes = {0.5f, 0.25f, 0.125f, 0.0625f};
      p.pe.alibiSlopes = c.slopes.data();
    }
    // kvType F16 reinterprets the f32 buffer as halves: still in bounds.
    try {
      run(p, RunOptions{static_cast<int>(rng.range(1, 3)), rng.coin()});
      ran++;
      // (halves read from the f32 buffer can be inf/nan themselves: only f32 must stay finite)
      if (p.kvType == KVType::F32) {
        const bool finite = std::all_of(c.out.begin(), c.out.end(), [](float v) { return std::isfinite(v); });
        LMI_CHECK(finite,
                  "fuzz iteration %d: non-finite output (kind %d rd %d theta %g fs %g scale %g lambda %d origin %lld "
                  "nGlobal %lld nLocal %lld limit %lld k %d insertAt %lld qPos %lld %lld)",
                  it, int(p.pe.kind), p.pe.rotaryDim, p.pe.thetaBase, p.pe.freqScale, double(p.scale), p.mask.lambda,
                  (long long)p.mask.origin, (long long)p.mask.nGlobal, (long long)p.mask.nLocal,
                  (long long)p.mask.limitDistance, p.topK.k, (long long)p.topK.insertAt, (long long)c.qPos[0],
                  (long long)c.qPos[1]);
      }
    } catch (const InvalidArgument&) {
      threw++;
    } catch (const std::exception& e) {
      LMI_CHECK(false, "fuzz iteration %d: unexpected exception %s", it, e.what());
    }
  }
  std::printf("fuzz: %d rejected, %d ran\n", threw, ran);
  return finish("test_attention_validate");
}
