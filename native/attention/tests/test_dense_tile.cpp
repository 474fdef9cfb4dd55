// KernelOps::denseTileDim8, the dense head-dim-8 decode tile, against the AVX-512 primitives it
// fuses, run one after the other on the same keys as the fused decode tiles run them: rotate (the
// query rows), localLogits (D 8, keys turned by the lane coefficients of distance n - 1 - c),
// softmaxTile and accumulateValues. The two must agree bit for bit (running max, softmax sum and
// outputs), so that a tile gives the same result whichever path takes it; and the outputs must
// agree with AVX2's accumulateValues (one chain in key order) within the value sums' roundings.
// Tiles of 1-64 keys, 1-4 rows, f16 and f32 rows, with and without RoPE, query turns in and beyond
// the table, several tiles in a row on one running state (so that the running max rises, stays,
// and starts at -inf), and rows far apart in scale. Also the softmax step's exponentials, AVX-512
// against AVX2, bit for bit. Nothing to check where the CPU has no AVX-512.
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.h"
#include "rope_table.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

bool same(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

struct Rows {
  std::vector<float> f;
  std::vector<uint16_t> h;
  const void* row(KVType t, int c) const {
    return t == KVType::F16 ? static_cast<const void*>(h.data() + 8 * c) : static_cast<const void*>(f.data() + 8 * c);
  }
};

Rows randomRows(Rng& rng, int n, KVType type) {
  Rows r;
  r.f.resize(static_cast<size_t>(n) * 8);
  for (auto& x : r.f) x = rng.sym();
  if (type == KVType::F16) {
    r.h.resize(r.f.size());
    for (size_t i = 0; i < r.f.size(); i++) {
      r.h[i] = ref::floatToHalf(r.f[i]);
    }
  }
  return r;
}

void checkCase(Rng& rng, const detail::KernelOps& parts, const detail::KernelOps& avx2, int idx) {
  const int R = static_cast<int>(rng.range(1, 4));
  const KVType type = rng.coin() ? KVType::F16 : KVType::F32;
  const bool rope = rng.coin(0.75);
  const auto table = detail::ropeTable(rng.pick(std::vector<double>{10000.0, 500000.0}), 1.0, 8);
  const int tiles = static_cast<int>(rng.range(1, 3));
  const double qScale = rng.pick(std::vector<double>{0.3, 3.0, 30.0});
  const int ld = 8;

  std::vector<float> mA(R), lA(R), oA(static_cast<size_t>(R) * ld), mB, lB, oB;
  for (int r = 0; r < R; r++) {
    const bool fresh = rng.coin(0.5);
    mA[r] = fresh ? -std::numeric_limits<float>::infinity() : static_cast<float>(rng.sym() * 4.0);
    lA[r] = fresh ? 0.0f : static_cast<float>(1.0 + rng.uniform() * 5.0);
    for (int d = 0; d < ld; d++) oA[static_cast<size_t>(r) * ld + d] = fresh ? 0.0f : rng.sym();
  }
  mB = mA, lB = lA, oB = oA;

  for (int t = 0; t < tiles; t++) {
    const int n = static_cast<int>(rng.coin(0.3) ? 64 : rng.range(1, 64));
    const Rows K = randomRows(rng, n, type), V = randomRows(rng, n, type);
    std::vector<float> Q(static_cast<size_t>(R) * ld);
    for (auto& x : Q) x = static_cast<float>(rng.sym() * qScale);

    // The query rows' own turn (the tile's last key against the block's last query): none, or
    // a distance in the table or beyond it.
    const int64_t qd = !rope || rng.coin(0.3) ? 0 : rng.coin() ? rng.range(1, 4000) : rng.range(5000, 1 << 30);
    std::vector<float> qTmp(8);
    const float* qC = nullptr;
    const float* qS = nullptr;
    if (qd != 0) table->coeffs(qd, &qC, &qS, qTmp.data());
    parts.denseTileDim8(R, n, K.row(type, 0), V.row(type, 0), type, rope ? table->runCoeffs() : nullptr, qC, qS,
                         Q.data(), ld, mA.data(), lA.data(), oA.data(), ld);
    std::vector<float> Qt(Q);
    if (qC != nullptr)
      for (int r = 0; r < R; r++) parts.rotate(&Q[r * ld], &Qt[r * ld], 8, 8, RopePairing::Normal, qC, qS, 1.0f);

    std::vector<const void*> kp(n), vp(n);
    std::vector<const float*> C(n), S(n);
    for (int c = 0; c < n; c++) {
      kp[c] = K.row(type, c);
      vp[c] = V.row(type, c);
      C[c] = table->laneRow(n - 1 - c);
      S[c] = C[c] + 8;
    }
    const int Np = (n + 7) & ~7;
    std::vector<float> logits(static_cast<size_t>(R) * 64, -std::numeric_limits<float>::infinity());
    parts.localLogits(R, n, kp.data(), nullptr, type, 8, 8, RopePairing::Normal, rope ? C.data() : nullptr,
                      rope ? S.data() : nullptr, Qt.data(), ld, logits.data(), 64);
    parts.softmaxTile(logits.data(), 64, R, Np, mB.data(), lB.data(), oB.data(), ld, ld);
    // What the value sums may lose to their order: (n + 1) roundings of the largest partial sum.
    std::vector<double> mag(static_cast<size_t>(R) * 8);
    for (int r = 0; r < R; r++)
      for (int d = 0; d < 8; d++) {
        double a = std::fabs(oB[static_cast<size_t>(r) * ld + d]);
        for (int c = 0; c < n; c++) a += logits[static_cast<size_t>(r) * 64 + c] * std::fabs(V.f[8 * c + d]);
        mag[static_cast<size_t>(r) * 8 + d] = a;
      }
    std::vector<float> oOneChain(oB);
    parts.accumulateValues(R, n, vp.data(), nullptr, type, 8, logits.data(), 64, oB.data(), ld);
    avx2.accumulateValues(R, n, vp.data(), nullptr, type, 8, logits.data(), 64, oOneChain.data(), ld);

    for (int r = 0; r < R; r++) {
      LMI_CHECK(same(mA[r], mB[r]), "case %d tile %d row %d (n %d): running max %.9g, parts %.9g", idx, t, r, n,
                mA[r], mB[r]);
      LMI_CHECK(same(lA[r], lB[r]), "case %d tile %d row %d (n %d): softmax sum %.9g, parts %.9g", idx, t, r, n,
                lA[r], lB[r]);
      for (int d = 0; d < 8; d++) {
        const size_t i = static_cast<size_t>(r) * ld + d;
        LMI_CHECK(same(oA[i], oB[i]), "case %d tile %d row %d (n %d, %s, rope %d) O[%d] = %.9g, parts %.9g", idx,
                  t, r, n, type == KVType::F16 ? "f16" : "f32", rope, d, oA[i], oB[i]);
        const double tol = 2.0 * (n + 1) * 0x1p-24 * mag[static_cast<size_t>(r) * 8 + d];
        LMI_CHECK(std::fabs(oA[i] - oOneChain[i]) <= tol,
                  "case %d tile %d row %d (n %d, %s, rope %d) O[%d] = %.9g, one chain %.9g", idx, t, r, n,
                  type == KVType::F16 ? "f16" : "f32", rope, d, oA[i], oOneChain[i]);
      }
    }
    oA = oB;  // each tile is held to its own sums' bound (equal bits unless a check failed)
  }
}

// The softmax step's exponentials, which the dense tile shares with softmaxTile: the AVX-512 and
// AVX2 code must give the same bits per element (exp_poly.h), over logits that reach the
// underflow cutoff and the smallest scale factors.
void softmaxSameBits(Rng& rng, const detail::KernelOps& avx512, const detail::KernelOps& avx2) {
  for (int t = 0; t < 200; t++) {
    const int R = 2, N = 64;
    std::vector<float> S(static_cast<size_t>(R) * N);
    for (auto& x : S) x = static_cast<float>(-rng.uniform() * (t % 2 ? 100.0 : 10.0));
    S[t % N] = 0.0f;  // each row's max at 0, so that exp sees the logits as they are
    S[N + t % N] = 0.0f;
    std::vector<float> S2(S), m(R, -std::numeric_limits<float>::infinity()), m2(m), l(R, 0.0f), l2(l);
    std::vector<float> O(static_cast<size_t>(R) * 8, 0.0f), O2(O);
    avx512.softmaxTile(S.data(), N, R, N, m.data(), l.data(), O.data(), 8, 8);
    avx2.softmaxTile(S2.data(), N, R, N, m2.data(), l2.data(), O2.data(), 8, 8);
    for (size_t i = 0; i < S.size(); i++)
      LMI_CHECK(same(S[i], S2[i]), "softmax step %d element %zu: AVX-512 %.9g, AVX2 %.9g", t, i, S[i], S2[i]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const detail::KernelOps* avx512 = detail::avx512Ops();
  const detail::KernelOps* avx2 = detail::avx2Ops();
  if (avx512 == nullptr || avx2 == nullptr || !cpuHasAvx512()) {
    std::printf("test_dense_tile: no AVX-512 on this CPU or build, nothing to check\n");
    return 0;
  }
  LMI_CHECK(avx2->denseTileDim8 == nullptr && detail::portableOps().denseTileDim8 == nullptr,
            "only the AVX-512 path has the dense tile");
  const int nCases = argc > 1 ? std::atoi(argv[1]) : 2000;
  Rng rng(20261130);
  for (int i = 0; i < nCases; i++) checkCase(rng, *avx512, *avx2, i);
  softmaxSameBits(rng, *avx512, *avx2);
  return finish("test_dense_tile");
}
