// Decode-sized problems (a few query rows per KV head), the shapes the fused decode tiles take
// (AVX2 and AVX-512; head dims that are an odd multiple of 8, and rotary widths that are an odd
// multiple of 8 (Normal pairs) or 16 (NeoX pairs), on the AVX2 code) and some they leave to the
// general tile path (other rotary widths): head dims 8-256, full and partial rotary in both
// pairings, ALiBi, no encoding, f16 and f32 K/V, strided slots and head-major caches, GQA
// 1/2/4/5/7/8/16 over 1-12 KV heads, Λ and vanilla, windows from one key to several tiles with a
// short last tile, positions near 0 and past 2^40, with and without holes between them. Each path
// against the dense reference; where the CPU has AVX-512, its tiles against the AVX2 ones (the
// same arithmetic but for the order in which each dot product is summed); and runPartition bit-equal
// for every nth.
#include <chrono>

#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

Case decodeCase(Rng& rng, int idx) {
  Case c;
  // GQA groups up to 16 query heads: more than four rows take the fused primitives in several calls.
  const int G = std::vector<int>{1, 2, 4, 5, 8, 7, 16}[idx % 7];
  // Up to 4 KV heads, sometimes more than runPartition walks in one lockstep group (8).
  c.nHeadKV = static_cast<int>(rng.coin(0.1) ? rng.range(9, 12) : rng.range(1, 4));
  c.nHead = G * c.nHeadKV;
  c.headDim = rng.pick(std::vector<int64_t>{8, 24, 40, 64, 64, 80, 96, 128, 128, 256});
  c.kvType = rng.coin() ? KVType::F16 : KVType::F32;
  const double enc = rng.uniform();
  c.pe.kind = enc < 0.75 ? Encoding::Rope : enc < 0.9 ? Encoding::Alibi : Encoding::None;
  // Mostly Normal pairs at head dim 8 (stories260K's), which take the dense and fused tiles.
  c.pe.pairing = rng.coin(c.headDim == 8 ? 0.85 : 0.5) ? RopePairing::Normal : RopePairing::NeoX;
  // Full rotary, or a partial width: a multiple of 32, an odd multiple of 16 or of 8 (the decode
  // tiles' partial cases), or any even width. A width the head dim cannot hold falls back to full.
  const int64_t hd = c.headDim;
  const double rdp = rng.uniform();
  int64_t rd = 0;
  if (rdp < 0.45) rd = 0;
  else if (rdp < 0.6) rd = hd >= 32 ? 32 * rng.range(1, hd / 32) : 0;
  else if (rdp < 0.72) rd = hd >= 16 ? 16 * (2 * rng.range(0, (hd / 16 - 1) / 2) + 1) : 0;
  else if (rdp < 0.85) rd = 8 * (2 * rng.range(0, (hd / 8 - 1) / 2) + 1);
  else rd = 2 * rng.range(1, hd / 2);
  c.pe.rotaryDim = static_cast<int>(rd);
  c.pe.thetaBase = rng.pick(std::vector<double>{10000.0, 500000.0});
  c.pe.freqScale = rng.pick(std::vector<double>{1.0, 0.25});
  if (rng.coin(0.25)) c.kStride = c.row() + 16 * rng.range(1, 3);
  if (rng.coin(0.25)) c.vStride = c.row() + rng.range(1, 9);
  c.scale = 1.0f / std::sqrt(static_cast<float>(c.headDim));

  const int64_t base = rng.coin() ? rng.range(0, 100) : (int64_t(1) << 40) + rng.range(0, 999);
  const int64_t n = rng.pick(std::vector<int64_t>{1, 2, 3, 5, 63, 64, 65, 67, 130, 300, 700});
  c.mask.lambda = rng.coin(0.7);
  c.mask.origin = base;
  c.mask.nGlobal = rng.pick(std::vector<int64_t>{0, 4, 10});
  c.mask.nLocal = rng.pick(std::vector<int64_t>{16, 64, 200, 5000});
  c.mask.limitDistance = c.mask.nLocal;

  // Token t sits at position base + step t: step > 1 leaves holes, so that a tile of local keys
  // spans distances beyond the rotation coefficients the decode tiles keep precomputed.
  const int64_t step = rng.coin(0.15) ? rng.range(2, 3) : 1;
  // A ring: the pinned first tokens, then the last W positions starting anywhere in the ring.
  const int64_t pinned = std::min<int64_t>(n, c.mask.nGlobal);
  const int64_t W = std::max<int64_t>(1, std::min<int64_t>(n - pinned, c.mask.nLocal));
  for (int64_t t = 0; t < pinned; t++) c.slotPos.push_back(base + step * t);
  std::vector<int64_t> ring(W, -1);
  for (int64_t t = std::max(pinned, n - W); t < n; t++) ring[(t - pinned) % W] = base + step * t;
  c.slotPos.insert(c.slotPos.end(), ring.begin(), ring.end());

  // One query, or 16 / G consecutive ones (still a decode-sized block).
  const int nQ = rng.coin(0.7) ? 1 : static_cast<int>(std::min<int64_t>(16 / G, n));
  for (int i = 0; i < nQ; i++) c.qPos.push_back(base + step * (n - nQ + i));
  c.nQ = nQ;

  char buf[320];
  std::snprintf(buf, sizeof buf,
                "decode case %d: nQ=%d nHead=%d nHeadKV=%d D=%d kv=%s strides=%lld/%lld enc=%d pair=%d rd=%d "
                "lambda=%d nGlobal=%lld nLocal=%lld base=%lld step=%lld n=%lld",
                idx, c.nQ, c.nHead, c.nHeadKV, c.headDim, c.kvType == KVType::F16 ? "f16" : "f32",
                (long long)c.kStride, (long long)c.vStride, static_cast<int>(c.pe.kind),
                static_cast<int>(c.pe.pairing), c.pe.rotaryDim, c.mask.lambda, (long long)c.mask.nGlobal,
                (long long)c.mask.nLocal, (long long)base, (long long)step, (long long)n);
  c.what = buf;
  c.fill(rng);
  if (c.headDim == 8 && rng.coin(0.6)) {  // the engine's head-major cache, unpadded: dense tiles
    c.toHeadMajor(0, rng.coin() ? 0 : 7);
    c.what += " head-major";
  } else if (rng.coin(0.4)) {  // the engine's head-major cache
    c.toHeadMajor(rng.coin() ? 0 : 16, rng.coin() ? 0 : 7);
    c.what += " head-major";
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  const int nCases = argc > 1 ? std::atoi(argv[1]) : 400;
  const auto t0 = std::chrono::steady_clock::now();
  Rng rng(20261129);
  const std::vector<KernelPath> paths = kernelPaths();
  for (const KernelPath& kp : paths) std::printf("path: %s\n", kp.name);
  double worstPaths = 0.0;
  for (int idx = 0; idx < nCases; idx++) {
    Case c = decodeCase(rng, idx);
    const ref::Result want = ref::run(c.problem());
    const double tol = c.kvType == KVType::F16 ? 5e-4 : 2e-4;
    std::vector<std::vector<float>> byPath;
    for (const KernelPath& kp : paths) {
      const std::vector<float> got = runKernel(c, c.problem(), kp.options, 0);
      const double diff = maxDiff(got, want.out, c.headDim, want.ambiguous);
      LMI_CHECK(diff <= tol, "%s [%s] max|diff| = %g against the reference", c.what.c_str(), kp.name, diff);
      const std::vector<float> p1 = runKernel(c, c.problem(), kp.options, 1);
      for (int nth : {2, 3, 5}) {
        const std::vector<float> pn = runKernel(c, c.problem(), kp.options, nth);
        LMI_CHECK(bitEqual(pn, p1), "%s [%s] runPartition nth=%d differs from nth=1", c.what.c_str(), kp.name, nth);
      }
      byPath.push_back(got);
    }
    if (paths.size() == 3) {
      const double d = maxDiff(byPath[0], byPath[1], c.headDim);
      worstPaths = std::max(worstPaths, d);
      LMI_CHECK(d <= 1e-5, "%s: AVX-512 decode tiles and AVX2 differ by %g", c.what.c_str(), d);
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d cases in %.1f s; AVX-512 against AVX2: max|diff| %.3g\n", nCases, secs, worstPaths);
  return finish("test_attention_decode");
}
