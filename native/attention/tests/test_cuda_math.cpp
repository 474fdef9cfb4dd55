// The CUDA kernels' per-element math (src/cuda/device_math.h), compiled with the host
// compiler and checked against the CPU kernel's own pieces: RoPE coefficients (bit-equal to
// RopeTable), pair rotation (bit-equal to the portable rotate), Λ classification, tile
// skipping (never skips a kept pair), the split online softmax and its merge (against a
// double softmax), and the top-k order and insertion (against a sort). Runs without a GPU.
#include <algorithm>
#include <limits>
#include <vector>

#include "cuda/device_math.h"
#include "kernels.h"
#include "rope_table.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;
namespace cd = lmi::attn::cuda::detail;

namespace {

const float kInf = std::numeric_limits<float>::infinity();

bool same(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Host copy of the device table, built as attention_cuda.cu builds it.
struct HostRope {
  std::vector<float> lo, hi;
  std::vector<double> inv;
  cd::RopeView view;
  HostRope(const detail::RopeTable& t, double theta, double freq, int rd) {
    const int half = rd / 2;
    lo.resize(static_cast<size_t>(cd::kRopeLo) * rd);
    hi.resize(static_cast<size_t>(cd::kRopeHi) * rd);
    for (int64_t p = 0; p < cd::kRopeLo; p++) t.direct(p, &lo[p * rd], &lo[p * rd + half]);
    for (int64_t p = 0; p < cd::kRopeHi; p++) t.direct(p * cd::kRopeLo, &hi[p * rd], &hi[p * rd + half]);
    inv.resize(half);
    for (int k = 0; k < half; k++) inv[k] = freq * std::pow(theta, -2.0 * k / rd);
    view.lo = lo.data();
    view.hi = hi.data();
    view.invFreq = inv.data();
    view.rd = rd;
    view.half = half;
  }
};

void testRope(Rng& rng) {
  struct P {
    double theta, freq;
    int rd;
  };
  for (const P& c : {P{10000.0, 1.0, 128}, P{500000.0, 1.0, 64}, P{100.0, 0.25, 2}, P{1e6, 2.0, 80}}) {
    const auto t = detail::ropeTable(c.theta, c.freq, c.rd);
    HostRope h(*t, c.theta, c.freq, c.rd);
    std::vector<float> tmp(c.rd);
    std::vector<int64_t> ps;
    for (int64_t p = 0; p < 4096; p += 7) ps.push_back(p);
    for (int n = 0; n < 300; n++) ps.push_back(rng.range(4096, 4096 * 1024 - 1));
    for (int64_t p : {int64_t(4095), int64_t(4096), int64_t(4096 * 1024 - 1), int64_t(4096 * 1024),
                      (int64_t(1) << 40) + 3, int64_t(123456789)})
      ps.push_back(p);
    int bad = 0;
    for (int64_t p : ps) {
      const float* C;
      const float* S;
      t->coeffs(p, &C, &S, tmp.data());
      for (int k = 0; k < c.rd / 2; k++) {
        float cc, ss;
        cd::ropeCoeff(h.view, p, k, &cc, &ss);
        if (!same(cc, C[k]) || !same(ss, S[k])) bad++;
      }
    }
    LMI_CHECK(bad == 0, "ropeCoeff differs from RopeTable::coeffs in %d values (rd %d, theta %g)", bad, c.rd, c.theta);
  }
}

void testRotate(Rng& rng) {
  const detail::KernelOps& ops = detail::portableOps();
  for (int it = 0; it < 200; it++) {
    const int D = static_cast<int>(rng.pick(std::vector<int64_t>{8, 20, 64, 80, 128, 256}));
    const int rd = rng.coin() ? D : static_cast<int>(2 * rng.range(1, D / 2));
    const bool neox = rng.coin();
    const float sign = rng.coin() ? 1.0f : -1.0f;
    const int Dp = (D + 7) & ~7;
    std::vector<float> x(Dp, 0.0f), y(Dp), C(rd / 2), S(rd / 2);
    for (int d = 0; d < D; d++) x[d] = rng.sym() * 4.0f;
    for (int k = 0; k < rd / 2; k++) {
      const double a = rng.uniform() * 100.0;
      C[k] = static_cast<float>(std::cos(a));
      S[k] = static_cast<float>(std::sin(a));
    }
    ops.rotate(x.data(), y.data(), rd, Dp, neox ? RopePairing::NeoX : RopePairing::Normal, C.data(), S.data(), sign);
    int bad = 0;
    for (int d = 0; d < D; d++) {
      float got = x[d];
      if (d < rd) {
        int k, a, b;
        cd::pairOf(d, rd / 2, neox, &k, &a, &b);
        LMI_CHECK(d == a || d == b, "pairOf(%d) = (%d, %d)", d, a, b);
        got = cd::rotatedElem(d, a, x[a], x[b], C[k], S[k], sign);
      }
      if (!same(got, y[d])) bad++;
    }
    LMI_CHECK(bad == 0, "rotatedElem differs from the portable rotate (D %d rd %d neox %d): %d elements", D, rd,
              int(neox), bad);
  }
}

void testClassify(Rng& rng) {
  for (int it = 0; it < 2000; it++) {
    LambdaMask m;
    m.lambda = rng.coin(0.8);
    m.origin = rng.range(-5, 50);
    m.nGlobal = rng.range(0, 20);
    m.nLocal = rng.range(1, 40);
    m.limitDistance = rng.range(0, 40);
    const int64_t i = rng.range(0, 200), j = rng.range(-1, 200);
    const int got = cd::branchOf(i, j, m);
    const int want = j < 0 ? cd::kMasked : static_cast<int>(classify(i, j, m));
    LMI_CHECK(got == want, "branchOf(%lld, %lld) = %d, want %d", (long long)i, (long long)j, got, want);
  }
  // classifySlot: a slot against a padded query tile, column-strided, with its flags.
  for (int it = 0; it < 2000; it++) {
    LambdaMask m;
    m.lambda = rng.coin(0.8);
    m.origin = rng.range(0, 20);
    m.nGlobal = rng.range(0, 10);
    m.nLocal = rng.range(1, 30);
    m.limitDistance = rng.range(0, 30);
    const int nq = static_cast<int>(rng.range(1, 8)), stride = 5;
    int64_t qpos[8];
    for (int q = 0; q < nq; q++) qpos[q] = rng.coin(0.15) ? -1 : rng.range(0, 120);
    const int64_t j = rng.range(-1, 120);
    uint8_t cls[8 * stride];
    const int flags = cd::classifySlot(qpos, nq, j, m, cls + 2, stride);
    int wantFlags = 0;
    for (int q = 0; q < nq; q++) {
      int want = qpos[q] < 0 || j < 0 ? cd::kMasked : static_cast<int>(classify(qpos[q], j, m));
      if (want == cd::kMiddle) want = cd::kMasked;
      wantFlags |= want == cd::kLocal ? 1 : want == cd::kGlobal ? 2 : 0;
      LMI_CHECK(cls[2 + q * stride] == want, "classifySlot(q %lld, j %lld) = %d, want %d", (long long)qpos[q],
                (long long)j, int(cls[2 + q * stride]), want);
    }
    LMI_CHECK(flags == wantFlags, "classifySlot flags %d, want %d", flags, wantFlags);
  }
  // tileMasked: sound on random tiles, and true where it should obviously be.
  int skipped = 0;
  for (int it = 0; it < 20000; it++) {
    LambdaMask m;
    m.lambda = rng.coin(0.85);
    m.origin = rng.range(-5, 20);
    m.nGlobal = rng.range(0, 12);
    m.nLocal = rng.range(1, 64);
    const int64_t qmin = rng.range(0, 300), qmax = qmin + rng.range(0, 40);
    std::vector<int64_t> js;
    const int64_t base = rng.range(0, 400);
    for (int c = 0; c < 32; c++)
      js.push_back(rng.coin(0.1) ? -1 : base + rng.range(0, rng.coin() ? 31 : 200));
    int64_t jmin = INT64_MAX, jmax = -1;
    for (int64_t j : js)
      if (j >= 0) jmin = std::min(jmin, j), jmax = std::max(jmax, j);
    if (!cd::tileMasked(qmin, qmax, jmin, jmax, m)) continue;
    skipped++;
    for (int64_t i = qmin; i <= qmax; i++)
      for (int64_t j : js) {
        const int b = cd::branchOf(i, j, m);
        LMI_CHECK(b == cd::kMasked || b == cd::kMiddle, "tileMasked skipped a kept pair (%lld, %lld)", (long long)i,
                  (long long)j);
      }
  }
  LMI_CHECK(skipped > 1000, "tileMasked skipped only %d random tiles", skipped);
  LambdaMask m;
  m.origin = 0;
  m.nGlobal = 4;
  m.nLocal = 100;
  LMI_CHECK(cd::tileMasked(1000, 1063, 1064, 1100, m), "future tile not skipped");
  LMI_CHECK(cd::tileMasked(1000, 1063, 10, 41, m), "far middle tile not skipped");
  LMI_CHECK(!cd::tileMasked(1000, 1063, 3, 41, m), "a tile holding a global key was skipped");
  LMI_CHECK(!cd::tileMasked(1000, 1063, 10, 901, m), "a tile reaching the window was skipped");
  LMI_CHECK(cd::tileMasked(0, 5, INT64_MAX, -1, m), "an empty tile was not skipped");
  m.lambda = false;
  LMI_CHECK(!cd::tileMasked(1000, 1063, 10, 41, m), "vanilla: a past tile was skipped");
}

// The split online softmax exactly as the kernels run it, against double precision.
void testSoftmaxMerge(Rng& rng) {
  double worst = 0.0;
  for (int it = 0; it < 300; it++) {
    const int n = static_cast<int>(rng.range(0, 300));
    const int D = 4;
    std::vector<float> s(n), v(static_cast<size_t>(n) * D);
    const double masked = rng.pick(std::vector<double>{0.0, 0.3, 0.9, 1.0});
    for (int c = 0; c < n; c++) s[c] = rng.coin(masked) ? -kInf : rng.sym() * 30.0f;
    for (auto& x : v) x = rng.sym();
    const int splits = static_cast<int>(rng.range(1, 6));
    const int parts = splits + 1;  // + a top-k-like part holding the last few keys
    const int nTop = std::min(n, static_cast<int>(rng.range(0, 5)));
    std::vector<float> pm(parts), pl(parts), pacc(static_cast<size_t>(parts) * D);
    for (int sp = 0; sp < parts; sp++) {
      int c0, c1;
      if (sp < splits) {
        c0 = (n - nTop) * sp / splits;
        c1 = (n - nTop) * (sp + 1) / splits;
      } else {
        c0 = n - nTop;
        c1 = n;
      }
      float m = -kInf, l = 0.0f, acc[D] = {0, 0, 0, 0};
      for (int t0 = c0; t0 < c1; t0 += 32) {  // tiles of 32, as in the kernels
        const int t1 = std::min(c1, t0 + 32);
        float tmax = -kInf;
        for (int c = t0; c < t1; c++) tmax = std::max(tmax, s[c]);
        const float mNew = std::max(m, tmax);
        const float alpha = cd::rescale(m, mNew);
        float sum = 0.0f;
        for (int d = 0; d < D; d++) acc[d] *= alpha;
        for (int c = t0; c < t1; c++) {
          const float p = cd::weight(s[c], mNew);
          sum += p;
          for (int d = 0; d < D; d++) acc[d] += p * v[static_cast<size_t>(c) * D + d];
        }
        l = l * alpha + sum;
        m = mNew;
      }
      pm[sp] = m;
      pl[sp] = l;
      for (int d = 0; d < D; d++) pacc[static_cast<size_t>(sp) * D + d] = acc[d];
    }
    float M = -kInf;
    for (float x : pm) M = std::max(M, x);
    float L = 0.0f;
    for (int sp = 0; sp < parts; sp++) L += cd::rescale(pm[sp], M) * pl[sp];
    double mx = -INFINITY;
    for (float x : s) mx = std::max(mx, static_cast<double>(x));
    for (int d = 0; d < D; d++) {
      float a = 0.0f;
      for (int sp = 0; sp < parts; sp++) {
        const float w = cd::rescale(pm[sp], M);
        if (w != 0.0f) a += w * pacc[static_cast<size_t>(sp) * D + d];
      }
      const float got = cd::finishValue(a, M, L);
      double want = 0.0;
      if (mx != -INFINITY) {
        double num = 0.0, den = 0.0;
        for (int c = 0; c < n; c++) {
          if (s[c] == -kInf) continue;
          const double w = std::exp(static_cast<double>(s[c]) - mx);
          num += w * v[static_cast<size_t>(c) * D + d];
          den += w;
        }
        want = num / den;
      }
      LMI_CHECK(!std::isnan(got), "merged softmax is NaN (n %d, masked %g)", n, masked);
      if (mx == -INFINITY) LMI_CHECK(same(got, 0.0f), "an empty row must give exactly 0 (got %g)", got);
      worst = std::max(worst, std::fabs(got - want));
    }
  }
  LMI_CHECK(worst < 1e-5, "split softmax vs double: max |diff| %g", worst);
}

void testTopK(Rng& rng) {
  for (int it = 0; it < 500; it++) {
    const int k = static_cast<int>(rng.range(1, 20));
    const int n = static_cast<int>(rng.range(0, 200));
    std::vector<cd::TopCand> all;
    for (int c = 0; c < n; c++) {
      cd::TopCand e;
      e.v = rng.coin(0.05) ? NAN : rng.coin(0.5) ? static_cast<float>(rng.range(-3, 3)) : rng.sym();
      if (rng.coin(0.03)) e.v = -kInf;
      e.pos = rng.range(0, 50);  // repeated positions: the slot breaks the tie
      e.slot = c;
      all.push_back(e);
    }
    rng.shuffle(all);
    // Eight "warps" take every eighth candidate, then the lists are merged as in topKKernel.
    std::vector<std::vector<cd::TopCand>> lists(8, std::vector<cd::TopCand>(k));
    int cnt[8] = {0};
    for (size_t c = 0; c < all.size(); c++) cnt[c % 8] = cd::topInsert(lists[c % 8].data(), cnt[c % 8], k, all[c]);
    std::vector<cd::TopCand> fin;
    int at[8] = {0};
    while (static_cast<int>(fin.size()) < k) {
      int best = -1;
      for (int w = 0; w < 8; w++) {
        if (at[w] >= cnt[w]) continue;
        if (best < 0 || cd::betterTop(lists[w][at[w]], lists[best][at[best]])) best = w;
      }
      if (best < 0) break;
      fin.push_back(lists[best][at[best]++]);
    }
    std::vector<cd::TopCand> want;
    for (const auto& e : all)
      if (e.v == e.v) want.push_back(e);
    std::sort(want.begin(), want.end(), [](const cd::TopCand& a, const cd::TopCand& b) { return cd::betterTop(a, b); });
    if (static_cast<int>(want.size()) > k) want.resize(k);
    bool ok = fin.size() == want.size();
    for (size_t e = 0; ok && e < fin.size(); e++) ok = fin[e].slot == want[e].slot;
    LMI_CHECK(ok, "top-k selection differs from the sorted order (k %d, n %d)", k, n);
  }
}

void testAlibi() {
  LMI_CHECK(same(cd::alibiBias(0.5f, 7), -3.5f), "alibiBias");
  const float s = std::pow(2.0f, -8.0f / 3.0f);
  const int64_t d = (int64_t(1) << 40) + 12345;
  LMI_CHECK(same(cd::alibiBias(s, d), static_cast<float>(-static_cast<double>(s) * static_cast<double>(d))),
            "alibiBias at a large distance");
}

}  // namespace

int main() {
  Rng rng(7);
  testRope(rng);
  testRotate(rng);
  testClassify(rng);
  testSoftmaxMerge(rng);
  testTopK(rng);
  testAlibi();
  return finish("test_cuda_math");
}
