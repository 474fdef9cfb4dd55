// Properties DESIGN.md §1 pins, checked on the optimized kernel (both paths):
// vanilla equality inside the window, shift invariance up to 2^40, zeros when nothing is
// kept, long decodes (key splits), RoPE table regimes, scratch reuse and concurrent calls, and
// the reuse of a sorted key order across calls.
#include <functional>
#include <thread>

#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

// A stream of n tokens at base.., ring-buffer slots, nQ queries at the end.
Case streamCase(Rng& rng, int nHead, int nHeadKV, int D, int64_t base, int64_t n, int nQ, KVType kv = KVType::F32) {
  Case c;
  c.nHead = nHead;
  c.nHeadKV = nHeadKV;
  c.headDim = D;
  c.kvType = kv;
  c.scale = 1.0f / std::sqrt(static_cast<float>(D));
  c.mask.origin = base;
  for (int64_t t = 0; t < n; t++) c.slotPos.push_back(base + t);
  if (n > 10) std::rotate(c.slotPos.begin() + 10, c.slotPos.begin() + 10 + (n - 10) / 3, c.slotPos.end());
  for (int q = 0; q < nQ; q++) c.qPos.push_back(base + n - nQ + q);
  c.nQ = nQ;
  c.fill(rng);
  return c;
}

std::vector<float> runCase(Case& c, const KernelPath& path, int threads = 1) {
  RunOptions o = path.options;
  o.threads = threads;
  std::fill(c.out.begin(), c.out.end(), NAN);
  run(c.problem(), o);
  return c.out;
}

std::vector<KernelPath> paths() { return kernelPaths(); }

double relDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size(); i++) {
    const double d = std::fabs(double(a[i]) - double(b[i])) / std::max(1.0, std::fabs(double(a[i])));
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

void encodings(Case& c, int which) {
  c.pe = PositionEncoding();
  if (which == 0) {
    c.pe.kind = Encoding::Rope;
    c.pe.pairing = RopePairing::Normal;
  } else if (which == 1) {
    c.pe.kind = Encoding::Rope;
    c.pe.pairing = RopePairing::NeoX;
    c.pe.rotaryDim = (c.headDim / 2) & ~1;  // partial rotary
    c.pe.thetaBase = 1e6;
  } else if (which == 2) {
    c.pe.kind = Encoding::Alibi;
    c.slopes.resize(c.nHead);
    for (int h = 0; h < c.nHead; h++) c.slopes[h] = std::pow(2.0f, -8.0f * (h + 1) / c.nHead);
  } else {
    c.pe.kind = Encoding::None;
  }
}

void vanillaInsideWindow() {
  Rng rng(1);
  for (int enc = 0; enc < 4; enc++) {
    for (int nQ : {1, 37}) {
      Case c = streamCase(rng, 8, 2, 64, 1000 * enc, 300, nQ, enc % 2 ? KVType::F16 : KVType::F32);
      encodings(c, enc);
      c.mask.nLocal = 300;  // every key is within the window of every query
      c.mask.limitDistance = 300;
      c.mask.nGlobal = 10;
      c.topK.k = enc == 1 ? 3 : 0;  // no middle keys exist, so top-k changes nothing
      c.topK.insertAt = 150;
      const ref::Result want = ref::run(c.problem());
      for (const KernelPath& path : paths()) {
        const std::vector<float> lam = runCase(c, path);
        c.mask.lambda = false;
        const std::vector<float> van = runCase(c, path);
        c.mask.lambda = true;
        LMI_CHECK(maxDiff(lam, van, c.headDim) <= 1e-5, "enc=%d nQ=%d path=%s: Λ inside the window != vanilla (%g)",
                  enc, nQ, path.name, maxDiff(lam, van, c.headDim));
        LMI_CHECK(maxDiff(van, want.out, c.headDim) <= 2e-4, "enc=%d nQ=%d path=%s: vanilla vs reference %g", enc,
                  nQ, path.name, maxDiff(van, want.out, c.headDim));
      }
    }
  }
}

void shiftInvariance() {
  Rng rng(2);
  const int64_t shifts[] = {int64_t(1) << 40, (int64_t(1) << 40) + 12345, int64_t(1) << 52};
  for (int enc = 0; enc < 4; enc++) {
    for (int topk = 0; topk < 2; topk++) {
      for (int nQ : {1, 70}) {
        Case c = streamCase(rng, 8, 4, 80, 0, 1200, nQ, topk ? KVType::F16 : KVType::F32);
        encodings(c, enc);
        c.mask.nGlobal = 10;
        c.mask.nLocal = 256;
        c.mask.limitDistance = enc == 0 ? 200 : 256;
        c.topK.k = topk ? 5 : 0;
        c.topK.insertAt = 128;
        // a few empty slots and a shuffled slot order
        c.slotPos[17] = -1;
        c.slotPos[500] = -1;
        for (const KernelPath& path : paths()) {
          const std::vector<float> base = runCase(c, path);
          for (int64_t delta : shifts) {
            Case s = c;
            for (auto& p : s.slotPos)
              if (p >= 0) p += delta;
            for (auto& p : s.qPos) p += delta;
            s.mask.origin += delta;
            const std::vector<float> shifted = runCase(s, path, 2);
            LMI_CHECK(relDiff(base, shifted) <= 1e-5, "enc=%d topk=%d nQ=%d path=%s delta=%lld: shift changed by %g",
                      enc, topk, nQ, path.name, (long long)delta, relDiff(base, shifted));
          }
        }
        // and the reference agrees at the shifted positions too
        if (nQ == 1) {
          Case s = c;
          const int64_t delta = int64_t(1) << 40;
          for (auto& p : s.slotPos)
            if (p >= 0) p += delta;
          for (auto& p : s.qPos) p += delta;
          s.mask.origin += delta;
          const ref::Result want = ref::run(s.problem());
          const std::vector<float> got = runCase(s, paths()[0]);
          LMI_CHECK(maxDiff(got, want.out, s.headDim, want.ambiguous) <= 5e-4, "enc=%d topk=%d: shifted vs reference %g",
                    enc, topk, maxDiff(got, want.out, s.headDim, want.ambiguous));
        }
      }
    }
  }
}

void zerosWhenNothingKept() {
  Rng rng(3);
  for (const KernelPath& path : paths()) {
    // no slots at all
    Case c = streamCase(rng, 4, 2, 64, 0, 0, 1);
    c.qPos = {5};
    c.nQ = 1;
    c.fill(rng);
    std::vector<float> got = runCase(c, path);
    LMI_CHECK(std::all_of(got.begin(), got.end(), [](float x) { return x == 0.0f; }), "nSlot = 0 must give zeros");
    // only future keys and empty slots
    Case f = streamCase(rng, 4, 2, 64, 100, 50, 1);
    f.qPos = {99};
    f.slotPos[3] = -1;
    got = runCase(f, path);
    LMI_CHECK(std::all_of(got.begin(), got.end(), [](float x) { return x == 0.0f; }), "future keys must give zeros");
    // Λ without global keys or top-k: keys far behind are masked
    Case m = streamCase(rng, 4, 2, 64, 0, 100, 1);
    m.mask.nGlobal = 0;
    m.mask.nLocal = 16;
    m.qPos = {1000};
    got = runCase(m, path);
    LMI_CHECK(std::all_of(got.begin(), got.end(), [](float x) { return x == 0.0f; }), "middle keys must be masked");
  }
}

void longDecode() {
  Rng rng(4);
  for (int variant = 0; variant < 4; variant++) {
    Case c = streamCase(rng, 8, 1, 64, 77, 5000, 1, variant % 2 ? KVType::F16 : KVType::F32);
    c.mask.lambda = variant != 0;
    c.mask.nLocal = 1024;
    c.mask.limitDistance = 1024;
    c.topK.k = variant >= 2 ? 5 : 0;
    c.topK.insertAt = 512;
    const ref::Result want = ref::run(c.problem());
    for (const KernelPath& path : paths()) {
      const std::vector<float> one = runCase(c, path, 1);
      const std::vector<float> four = runCase(c, path, 4);
      LMI_CHECK(maxDiff(one, want.out, c.headDim, want.ambiguous) <= 5e-4, "long decode %d path=%s: %g", variant,
                path.name, maxDiff(one, want.out, c.headDim, want.ambiguous));
      LMI_CHECK(bitEqual(one, four), "long decode %d path=%s: threads change the result", variant, path.name);
    }
  }
}

void prefillBlocks() {
  Rng rng(5);
  for (int variant = 0; variant < 3; variant++) {
    Case c = streamCase(rng, 4, 4, 64, 3, 1500, 400, KVType::F16);
    c.mask.nLocal = 128;
    c.mask.limitDistance = 100;
    c.mask.nGlobal = 10;
    c.topK.k = variant == 2 ? 4 : 0;
    c.topK.insertAt = 64;
    if (variant == 1) encodings(c, 1);
    const ref::Result want = ref::run(c.problem());
    for (const KernelPath& path : paths()) {
      const std::vector<float> got = runCase(c, path, 2);
      LMI_CHECK(maxDiff(got, want.out, c.headDim, want.ambiguous) <= 5e-4, "prefill %d path=%s: %g", variant,
                path.name, maxDiff(got, want.out, c.headDim, want.ambiguous));
    }
  }
}

// Distances beyond the low RoPE table (combined rows) and beyond both tables (direct).
void ropeRegimes() {
  Rng rng(6);
  for (int pairing = 0; pairing < 2; pairing++) {
    Case c;
    c.nHead = 2;
    c.nHeadKV = 1;
    c.headDim = 128;
    c.scale = 0.3f;
    c.pe.pairing = pairing ? RopePairing::NeoX : RopePairing::Normal;
    c.mask.lambda = false;
    for (int64_t t = 0; t < 40; t++) {
      c.slotPos.push_back(t);
      c.slotPos.push_back(5000 + 97 * t);
      c.slotPos.push_back(3'000'000 + 1013 * t);
      c.slotPos.push_back(9'000'000'000 + 7 * t);
    }
    c.qPos = {9'000'000'300, 3'000'100, 5100};
    c.nQ = 3;
    c.fill(rng);
    const ref::Result want = ref::run(c.problem());
    for (const KernelPath& path : paths()) {
      const std::vector<float> got = runCase(c, path);
      LMI_CHECK(maxDiff(got, want.out, c.headDim) <= 2e-4, "rope regimes pairing=%d path=%s: %g", pairing, path.name,
                maxDiff(got, want.out, c.headDim));
    }
  }
}

void scratchReuseAndConcurrency() {
  Rng rng(7);
  Case big = streamCase(rng, 16, 4, 128, 0, 2000, 64);
  big.mask.nLocal = 256;
  big.topK.k = 2;
  big.topK.insertAt = 10;
  Case small = streamCase(rng, 2, 2, 20, 50, 30, 3, KVType::F16);
  encodings(small, 2);
  const std::vector<float> b1 = runCase(big, paths()[0], 2);
  const std::vector<float> s1 = runCase(small, paths()[0]);
  const std::vector<float> b2 = runCase(big, paths()[0], 2);
  LMI_CHECK(bitEqual(b1, b2), "a call in between changed the result");
  std::vector<float> bt, st;
  Case bc = big, sc = small;
  std::thread t1([&] {
    for (int i = 0; i < 3; i++) bt = runCase(bc, paths()[0], 2);
  });
  std::thread t2([&] {
    for (int i = 0; i < 20; i++) st = runCase(sc, paths()[0], 1);
  });
  t1.join();
  t2.join();
  LMI_CHECK(bitEqual(bt, b1), "concurrent calls changed the big result");
  LMI_CHECK(bitEqual(st, s1), "concurrent calls changed the small result");
}

// The kernel keeps the key order it last sorted and reuses it while the next call's slot
// positions are the same (a model's layers, one after the other): each change made in place,
// under the same pointer and count, must reach the result.
void keyOrderReuse() {
  Rng rng(7);
  Case c = streamCase(rng, 8, 2, 64, 0, 700, 1, KVType::F16);
  encodings(c, 0);
  c.mask.nGlobal = 10;
  c.mask.nLocal = 256;
  c.mask.limitDistance = 256;
  const std::vector<std::pair<const char*, std::function<void(Case&)>>> edits = {
      {"none", [](Case&) {}},
      {"two slots swap positions", [](Case& k) { std::swap(k.slotPos[300], k.slotPos[650]); }},
      {"a slot emptied", [](Case& k) { k.slotPos[640] = -1; }},
      {"the emptied slot refilled", [](Case& k) { k.slotPos[640] = k.qPos[0] - 1; }},
      {"a new key at the query", [](Case& k) { k.slotPos[120] = k.qPos[0]; }},
  };
  for (const auto& [what, edit] : edits) {
    edit(c);
    const ref::Result want = ref::run(c.problem());
    for (const KernelPath& path : paths()) {
      for (int parts : {0, 1, 2}) {
        const std::vector<float> got = runKernel(c, c.problem(), path.options, parts);
        const double d = maxDiff(got, want.out, c.headDim, want.ambiguous);
        LMI_CHECK(d <= 5e-4, "key order reuse, after %s [%s, partitions %d]: max|diff| %g against the reference",
                  what, path.name, parts, d);
      }
    }
  }
}

}  // namespace

int main() {
  vanillaInsideWindow();
  shiftInvariance();
  zerosWhenNothingKept();
  longDecode();
  prefillBlocks();
  ropeRegimes();
  scratchReuseAndConcurrency();
  keyOrderReuse();
  return finish("test_attention_properties");
}
