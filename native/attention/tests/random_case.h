// The randomized attention cases (fixed seed) shared by the CPU test
// (test_attention_random.cpp) and the CUDA test (test_attention_cuda.cpp): GQA 1/2/4/8,
// head dims 64/80/128 (and 20), partial rotary, both pairings, ALiBi, no encoding,
// nGlobal 0-100, nLocal below/above the stream, top-k, decode/chunk/scattered queries,
// ring-buffer and shuffled slots, empty slots, f16/f32 K/V, strided slots.
#pragma once
#include <string>
#include <vector>

#include "test_util.h"

namespace lmi::attn::test {

inline Case randomCase(Rng& rng, int idx) {
  Case c;
  const int G = std::vector<int>{1, 2, 4, 8}[idx % 4];
  c.nHeadKV = G == 8 ? static_cast<int>(rng.range(1, 2)) : static_cast<int>(rng.range(1, 3));
  c.nHead = G * c.nHeadKV;
  c.headDim = std::vector<int>{64, 80, 128}[(idx / 4) % 3];
  if (rng.coin(0.08)) c.headDim = 20;  // not a multiple of 8
  c.kvType = (idx / 12) % 2 ? KVType::F16 : KVType::F32;

  const double enc = rng.uniform();
  c.pe.kind = enc < 0.7 ? Encoding::Rope : enc < 0.85 ? Encoding::Alibi : Encoding::None;
  c.pe.pairing = rng.coin() ? RopePairing::Normal : RopePairing::NeoX;
  const double rdp = rng.uniform();
  c.pe.rotaryDim = rdp < 0.45 ? 0 : rdp < 0.55 ? c.headDim : static_cast<int>(2 * rng.range(1, c.headDim / 2 - 1));
  c.pe.thetaBase = rng.pick(std::vector<double>{10000.0, 500000.0, 1e6, 100.0});
  c.pe.freqScale = rng.pick(std::vector<double>{1.0, 1.0, 0.25, 2.0});
  if (rng.coin(0.2)) c.kStride = c.row() + rng.range(1, 9);
  if (rng.coin(0.2)) c.vStride = c.row() + rng.range(1, 9);
  c.scale = rng.pick(std::vector<float>{1.0f / std::sqrt(static_cast<float>(c.headDim)), 0.5f, 1.0f});

  // The stream: positions base .. base + n - 1.
  const double bp = rng.uniform();
  const int64_t base = bp < 0.3 ? 0 : bp < 0.6 ? rng.range(1, 1000) : bp < 0.85 ? (int64_t(1) << 40) + rng.range(0, 999)
                                                                                 : (int64_t(1) << 50) + rng.range(0, 999);
  const bool longDecode = rng.coin(0.15);
  const int64_t n = longDecode ? rng.range(600, 3000) : rng.range(1, 600);
  c.mask.lambda = rng.coin(0.85);
  c.mask.origin = rng.coin(0.8) ? base : base + rng.range(-5, 5);
  c.mask.nGlobal = rng.pick(std::vector<int64_t>{0, 1, 4, 10, 10, 37, 100});
  c.mask.nLocal = rng.pick(std::vector<int64_t>{1, 3, 16, 64, 100, 257, 600, 5000});
  const double lp = rng.uniform();
  c.mask.limitDistance = lp < 0.4 ? c.mask.nLocal : lp < 0.8 ? rng.range(0, c.mask.nLocal) : c.mask.nLocal + rng.range(1, 500);
  if (rng.coin(0.35)) {
    c.topK.k = static_cast<int>(rng.pick(std::vector<int64_t>{1, 2, 5, 17}));
    c.topK.insertAt = rng.pick(std::vector<int64_t>{0, c.mask.nLocal / 2, rng.range(0, 3000)});
  }

  // Slots: every position, a ring buffer (pinned first tokens + the last W), or a subset.
  std::vector<int64_t> pos;
  const double sp = rng.uniform();
  std::string layout;
  if (sp < 0.35) {
    layout = "all";
    for (int64_t t = 0; t < n; t++) pos.push_back(base + t);
    if (rng.coin()) rng.shuffle(pos);
  } else if (sp < 0.8) {
    layout = "ring";
    const int64_t pinned = std::min<int64_t>(n, c.mask.nGlobal);
    const int64_t W = rng.range(1, std::max<int64_t>(1, n - pinned));
    for (int64_t t = 0; t < pinned; t++) pos.push_back(base + t);
    std::vector<int64_t> ring(W, -1);
    for (int64_t t = std::max(pinned, n - W); t < n; t++) ring[(t - pinned) % W] = base + t;
    pos.insert(pos.end(), ring.begin(), ring.end());
  } else {
    layout = "subset";
    for (int64_t t = 0; t < n; t++)
      if (rng.coin(0.6)) pos.push_back(base + t);
    rng.shuffle(pos);
  }
  if (rng.coin(0.3)) {
    const int64_t empties = rng.range(1, 20);
    for (int64_t e = 0; e < empties; e++) pos.insert(pos.begin() + rng.range(0, static_cast<int64_t>(pos.size())), -1);
  }
  c.slotPos = pos;

  // Queries: one decode step, a prefill chunk at the end, or scattered positions.
  const double qp = rng.uniform();
  std::string qs;
  if (qp < 0.35 || longDecode) {
    qs = "decode";
    c.qPos = {base + n - 1 + (rng.coin(0.2) ? 1 : 0)};
  } else if (qp < 0.7) {
    qs = "chunk";
    const int64_t m = std::min<int64_t>(n, rng.range(2, 70));
    for (int64_t t = n - m; t < n; t++) c.qPos.push_back(base + t);
  } else {
    qs = "scattered";
    const int64_t m = rng.range(1, 40);
    for (int64_t t = 0; t < m; t++) c.qPos.push_back(base + rng.range(0, n + 4));
  }
  c.nQ = static_cast<int>(c.qPos.size());

  char buf[512];
  std::snprintf(buf, sizeof buf,
                "case %d: nQ=%d nHead=%d nHeadKV=%d D=%d kv=%s strides=%lld/%lld enc=%d pair=%d rd=%d theta=%g fs=%g "
                "lambda=%d origin-base=%lld nGlobal=%lld nLocal=%lld limit=%lld topk=%d@%lld base=%lld n=%lld "
                "slots=%s(%zu) queries=%s",
                idx, c.nQ, c.nHead, c.nHeadKV, c.headDim, c.kvType == KVType::F16 ? "f16" : "f32",
                (long long)c.kStride, (long long)c.vStride, static_cast<int>(c.pe.kind), static_cast<int>(c.pe.pairing),
                c.pe.rotaryDim, c.pe.thetaBase, c.pe.freqScale, c.mask.lambda, (long long)(c.mask.origin - base),
                (long long)c.mask.nGlobal, (long long)c.mask.nLocal, (long long)c.mask.limitDistance, c.topK.k,
                (long long)c.topK.insertAt, (long long)base, (long long)n, layout.c_str(), pos.size(), qs.c_str());
  c.what = buf;
  c.fill(rng);
  return c;
}

}  // namespace lmi::attn::test
