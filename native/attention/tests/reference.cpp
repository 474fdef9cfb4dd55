#include "reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <utility>

namespace lmi::attn::ref {

float halfToFloat(uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exp = (h >> 10) & 31;
  const int mant = h & 1023;
  double v;
  if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -24);
  } else if (exp == 31) {
    v = mant ? std::nan("") : INFINITY;
  } else {
    v = std::ldexp(1024.0 + mant, exp - 25);
  }
  return static_cast<float>(sign ? -v : v);
}

uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00 : 0x7c00);
  if (ax >= 0x477ff000u) return sign | 0x7c00;  // >= 65520 rounds to infinity
  if (ax < 0x38800000u) {                       // below 2^-14: subnormal half
    float a;
    std::memcpy(&a, &ax, 4);
    return sign | static_cast<uint16_t>(std::nearbyint(static_cast<double>(a) * 16777216.0));
  }
  const uint32_t mant = ax & 0x7fffffu;
  uint32_t h = (((ax >> 23) - 112u) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return sign | static_cast<uint16_t>(h);
}

void quantizeQ8_0(const float* x, int64_t n, uint8_t* out) {
  for (int64_t b = 0; b < n / 32; b++) {
    const float* v = x + b * 32;
    uint8_t* block = out + b * 34;
    double amax = 0.0;
    for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(static_cast<double>(v[i])));
    const float d = static_cast<float>(amax / 127.0);
    const uint16_t bits = floatToHalf(d);
    block[0] = static_cast<uint8_t>(bits & 0xff);
    block[1] = static_cast<uint8_t>(bits >> 8);
    for (int i = 0; i < 32; i++) {
      const double q = d == 0.0f ? 0.0 : std::round(static_cast<double>(v[i]) / d);
      block[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::max(-127.0, std::min(127.0, q))));
    }
  }
}

namespace {

double kvElement(const Problem& p, const void* base, int64_t stride, int64_t headStride, int64_t slot, int kvh,
                 int d) {
  const int64_t at = slot * stride + static_cast<int64_t>(kvh) * headStride + d;
  if (p.kvType == KVType::F32) return static_cast<const float*>(base)[at];
  if (p.kvType == KVType::F16) return halfToFloat(static_cast<const uint16_t*>(base)[at]);
  // Q8_0: block at / 32 is 34 bytes, a little-endian half scale and then 32 signed bytes.
  const auto* block = static_cast<const uint8_t*>(base) + (at / 32) * 34;
  const uint16_t scaleBits = static_cast<uint16_t>(block[0] | (block[1] << 8));
  const int q = static_cast<int8_t>(block[2 + at % 32]);
  return static_cast<double>(halfToFloat(scaleBits)) * q;
}

// cos and sin of every pair's angle for relative distance dist, in double.
const std::vector<double>& angles(std::map<int64_t, std::vector<double>>& memo, const Problem& p, int rd,
                                  int64_t dist) {
  auto it = memo.find(dist);
  if (it != memo.end()) return it->second;
  std::vector<double> cs(rd);
  for (int k = 0; k < rd / 2; k++) {
    const double theta = p.pe.freqScale * std::pow(p.pe.thetaBase, -2.0 * k / rd);
    const double a = static_cast<double>(dist) * theta;
    cs[2 * k] = std::cos(a);
    cs[2 * k + 1] = std::sin(a);
  }
  return memo.emplace(dist, std::move(cs)).first->second;
}

}  // namespace

Result run(const Problem& p, double tieTolerance) {
  const int D = p.headDim;
  const int groups = p.nHead / p.nHeadKV;
  const int64_t dense = static_cast<int64_t>(p.nHeadKV) * D;
  const int64_t ks = p.kSlotStride ? p.kSlotStride : dense;
  const int64_t vs = p.vSlotStride ? p.vSlotStride : dense;
  const int64_t kh = p.kHeadStride ? p.kHeadStride : D;
  const int64_t vh = p.vHeadStride ? p.vHeadStride : D;
  const bool rope = p.pe.kind == Encoding::Rope;
  const bool alibi = p.pe.kind == Encoding::Alibi;
  const int rd = rope ? (p.pe.rotaryDim ? p.pe.rotaryDim : D) : 0;
  std::map<int64_t, std::vector<double>> memo;

  Result res;
  res.out.assign(static_cast<size_t>(p.nQ) * p.nHead * D, 0.0f);
  res.ambiguous.assign(static_cast<size_t>(p.nQ) * p.nHead, 0);
  std::vector<double> qv(D), rq(D);

  for (int qi = 0; qi < p.nQ; qi++) {
    const int64_t i = p.qPos[qi];
    for (int h = 0; h < p.nHead; h++) {
      const int kvh = h / groups;
      for (int d = 0; d < D; d++) qv[d] = p.q[(static_cast<int64_t>(qi) * p.nHead + h) * D + d];

      // logit of this query against slot s attended at relative distance dist. A key stored turned
      // by R(j mod M) (keyTurnPeriod M) is R(-(j mod M)) of its row: <R(dist) q, R(-t) row> =
      // <R(dist + t) q, row>.
      auto logit = [&](int64_t s, int64_t dist) {
        rq = qv;
        if (rope) {
          const int64_t t = p.keyTurnPeriod > 0 ? p.slotPos[s] % p.keyTurnPeriod : 0;
          const std::vector<double>& cs = angles(memo, p, rd, dist + t);
          for (int k = 0; k < rd / 2; k++) {
            const int a = p.pe.pairing == RopePairing::NeoX ? k : 2 * k;
            const int b = p.pe.pairing == RopePairing::NeoX ? k + rd / 2 : 2 * k + 1;
            const double c = cs[2 * k], sn = cs[2 * k + 1];
            rq[a] = qv[a] * c - qv[b] * sn;
            rq[b] = qv[a] * sn + qv[b] * c;
          }
        }
        double dot = 0.0;
        for (int d = 0; d < D; d++) dot += rq[d] * kvElement(p, p.k, ks, kh, s, kvh, d);
        double x = dot * static_cast<double>(p.scale);
        if (alibi) x -= static_cast<double>(p.pe.alibiSlopes[h]) * static_cast<double>(dist);
        return x;
      };

      std::vector<std::pair<double, int64_t>> kept, middle;
      for (int64_t s = 0; s < p.nSlot; s++) {
        const int64_t j = p.slotPos[s];
        if (j == -1) continue;
        switch (classify(i, j, p.mask)) {
          case Branch::Local:
            kept.emplace_back(logit(s, i - j), s);
            break;
          case Branch::Global:
            kept.emplace_back(logit(s, globalDistance(i, p.mask)), s);
            break;
          case Branch::Middle:
            if (p.topK.k > 0) middle.emplace_back(logit(s, p.topK.insertAt), s);
            break;
          case Branch::Masked:
            break;
        }
      }
      std::sort(middle.begin(), middle.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      const size_t k = static_cast<size_t>(p.topK.k);
      if (middle.size() > k && k > 0) {
        const double gap = middle[k - 1].first - middle[k].first;
        if (gap <= tieTolerance * (1.0 + std::fabs(middle[k - 1].first)))
          res.ambiguous[static_cast<size_t>(qi) * p.nHead + h] = 1;
      }
      for (size_t e = 0; e < std::min(k, middle.size()); e++) kept.push_back(middle[e]);
      if (kept.empty()) continue;  // zeros

      double mx = -INFINITY;
      for (const auto& e : kept) mx = std::max(mx, e.first);
      double sum = 0.0;
      std::vector<double> acc(D, 0.0);
      for (const auto& e : kept) {
        const double w = std::exp(e.first - mx);
        sum += w;
        for (int d = 0; d < D; d++) acc[d] += w * kvElement(p, p.v, vs, vh, e.second, kvh, d);
      }
      float* out = &res.out[(static_cast<size_t>(qi) * p.nHead + h) * D];
      for (int d = 0; d < D; d++) out[d] = static_cast<float>(acc[d] / sum);
    }
  }
  return res;
}

}  // namespace lmi::attn::ref
