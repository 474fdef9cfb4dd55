// 8-bit K/V (KVType::Q8_0): the randomized cases of test_attention_random at head dims 64 and 128,
// their K/V quantized by the reference's own Q8_0 rounding, on each path this CPU has, against
// - the dense reference reading the blocks itself, and
// - the same kernel path on the f32 values the blocks stand for: widening d * q to f32 is exact,
//   so the two must agree bit for bit (the 8-bit rows take exactly the f32 arithmetic);
// and the validation Q8_0 adds (head dim and strides in whole blocks).
#include <chrono>

#include "random_case.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

// f (kf or vf) replaced by the values its Q8_0 blocks b hold.
void dequantizeInto(std::vector<float>& f, const std::vector<uint8_t>& b) {
  for (size_t blk = 0; blk < f.size() / 32; blk++) {
    const uint8_t* p = b.data() + blk * 34;
    const float d = ref::halfToFloat(static_cast<uint16_t>(p[0] | (p[1] << 8)));
    for (int i = 0; i < 32; i++) f[blk * 32 + i] = d * static_cast<float>(static_cast<int8_t>(p[2 + i]));
  }
}

// A random case turned into a Q8_0 one: strides moved to whole blocks, data refilled and quantized.
Case q8Case(Rng& rng, int idx) {
  for (int j = idx;; j += 4) {  // j + 4: the next head dim, the same GQA ratio
    Case c = randomCase(rng, j);
    if (c.headDim % 32 != 0) continue;  // 20 and 80: not whole blocks (validate() rejects them, below)
    c.kvType = KVType::Q8_0;
    if (c.kStride != 0) c.kStride = c.row() + 32 * rng.range(1, 3);
    if (c.vStride != 0) c.vStride = c.row() + 32 * rng.range(1, 3);
    c.fill(rng);
    c.what = "q8_0 (kv and strides below are the f32 draw's; now kStride=" + std::to_string(c.kStride) +
             " vStride=" + std::to_string(c.vStride) + ") " + c.what;
    return c;
  }
}

void expectInvalid(Case& c, const char* what) {
  try {
    validate(c.problem());
    LMI_CHECK(false, "%s: validate() accepted it", what);
  } catch (const InvalidArgument&) {
  }
}

void validation(Rng& rng) {
  Case c = q8Case(rng, 0);
  validate(c.problem());  // the well-formed case passes
  Case d = c;
  d.kStride = c.row() + 8;
  expectInvalid(d, "kSlotStride not a multiple of 32");
  Case h = c;
  h.vHeadStride = h.headDim + 16;
  expectInvalid(h, "vHeadStride not a multiple of 32");
  Case odd;
  odd.headDim = 80;
  odd.kvType = KVType::Q8_0;
  odd.slotPos = {0};
  odd.qPos = {0};
  odd.mask.nLocal = 4;
  odd.fill(rng);
  expectInvalid(odd, "headDim 80");
}

}  // namespace

int main(int argc, char** argv) {
  const int nCases = argc > 1 ? std::atoi(argv[1]) : 160;
  const auto t0 = std::chrono::steady_clock::now();
  Rng rng(20231108);
  validation(rng);
  const std::vector<KernelPath> paths = kernelPaths();
  double worst = 0;
  int skippedRows = 0;
  for (int idx = 0; idx < nCases; idx++) {
    Case c = q8Case(rng, idx);
    if (idx % 4 == 1) {  // an engine's head-major cache, padding in whole blocks
      c.toHeadMajor(rng.pick(std::vector<int64_t>{0, 0, 32}), rng.pick(std::vector<int64_t>{0, 64}));
      c.what += " head-major";
    }
    const ref::Result want = ref::run(c.problem());
    for (uint8_t a : want.ambiguous) skippedRows += a;

    Case f = c;  // the same problem on f32 rows holding the blocks' values
    f.kvType = KVType::F32;
    dequantizeInto(f.kf, c.kq);
    dequantizeInto(f.vf, c.vq);

    for (const KernelPath& kp : paths) {
      RunOptions o = kp.options;
      o.threads = 1 + idx % 3;
      const std::vector<float> got = runKernel(c, c.problem(), o, 0);
      const double diff = maxDiff(got, want.out, c.headDim, want.ambiguous);
      worst = std::max(worst, diff);
      LMI_CHECK(diff <= 2e-4, "%s [%s] max|diff| = %g", c.what.c_str(), kp.name, diff);
      const std::vector<float> asF32 = runKernel(f, f.problem(), o, 0);
      LMI_CHECK(bitEqual(got, asF32), "%s [%s] differs from the f32 rows of the same values", c.what.c_str(), kp.name);
      if (idx % 2 == 0) {
        const std::vector<float> parts = runKernel(c, c.problem(), o, 3);
        const std::vector<float> partsF32 = runKernel(f, f.problem(), o, 3);
        LMI_CHECK(bitEqual(parts, partsF32), "%s [%s] runPartition(3) differs from f32", c.what.c_str(), kp.name);
      }
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d q8_0 cases in %.1f s; worst max|diff| %.3g; %d near-tie top-k rows skipped\n", nCases, secs, worst,
              skippedRows);
  return finish("test_attention_q8");
}
