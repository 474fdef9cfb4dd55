// Keys stored turned (Problem::keyTurnPeriod) against the dense reference and against the same
// keys un-turned:
// - randomized cases (random_case.h, RoPE ones) with the rows taken as stored turned, periods
//   1 to 4096: every kernel path, run() and runPartition, against the reference, which turns
//   each key back in double;
// - engine-shaped decode steps (a ring of cache slots after pinned first tokens, head-major,
//   f32/f16/q8_0, head dims 8/64/128, both pairings, partial rotary): rows turned by turnKeys()
//   against the un-turned rows' reference, which checks turnKeys and the kernel agree on the turn;
// - turnKeys against rotations computed in double, and its argument checks.
#include <cmath>

#include "random_case.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

std::vector<float> runWith(Case& c, const RunOptions& o) { return runKernel(c, c.problem(), o, 0); }

std::vector<float> runParts(Case& c, int nth, const RunOptions& o) { return runKernel(c, c.problem(), o, nth); }

// The stored rows from kf again (kh for f16, kq for q8_0), after kf changed.
void restore(Case& c) {
  if (c.kvType == KVType::F16)
    for (size_t i = 0; i < c.kf.size(); i++) c.kh[i] = ref::floatToHalf(c.kf[i]);
  c.quantize();
}

void randomCases(const std::vector<KernelPath>& paths, int nCases) {
  Rng rng(20261129);
  int ran = 0;
  for (int idx = 0; ran < nCases; idx++) {
    Case c = randomCase(rng, idx);
    if (c.pe.kind != Encoding::Rope) continue;
    ran++;
    c.keyTurnPeriod = rng.pick(std::vector<int64_t>{64, 64, 64, 1, 7, 100, 4096});
    c.what += " keyTurnPeriod=" + std::to_string(c.keyTurnPeriod);
    if (idx % 2 == 1) {
      c.toHeadMajor(rng.pick(std::vector<int64_t>{0, 0, 3}), rng.pick(std::vector<int64_t>{0, 5}));
      c.what += " head-major";
    }
    const ref::Result want = ref::run(c.problem());
    const double tol = c.kvType == KVType::F16 ? 5e-4 : 2e-4;
    for (const KernelPath& kp : paths) {
      RunOptions o = kp.options;
      o.threads = 1;
      const std::vector<float> got = runWith(c, o);
      LMI_CHECK(maxDiff(got, want.out, c.headDim, want.ambiguous) <= tol, "%s [%s] run() vs reference: %g",
                c.what.c_str(), kp.name, maxDiff(got, want.out, c.headDim, want.ambiguous));
      o.threads = 3;
      LMI_CHECK(bitEqual(runWith(c, o), got), "%s [%s] threads=3 differs from threads=1", c.what.c_str(), kp.name);
      const std::vector<float> p1 = runParts(c, 1, o);
      LMI_CHECK(maxDiff(p1, want.out, c.headDim, want.ambiguous) <= tol, "%s [%s] runPartition vs reference: %g",
                c.what.c_str(), kp.name, maxDiff(p1, want.out, c.headDim, want.ambiguous));
      LMI_CHECK(bitEqual(runParts(c, 3, o), p1), "%s [%s] runPartition nth=3 differs from nth=1", c.what.c_str(),
                kp.name);
    }
  }
}

// One decode step as the engine makes it: nGlobal pinned first tokens, then a ring of nLocal
// slots holding the last nLocal positions before the query (written in ring order, so the sorted
// keys start mid-ring), the query at position qp.
Case decodeStep(Rng& rng, KVType type, int D, RopePairing pairing, int rotaryDim, int64_t nLocal, int64_t qp) {
  Case c;
  c.nHeadKV = D == 8 ? 1 : 2;
  c.nHead = 4 * c.nHeadKV;
  c.headDim = D;
  c.kvType = type;
  c.pe.kind = Encoding::Rope;
  c.pe.pairing = pairing;
  c.pe.rotaryDim = rotaryDim;
  c.pe.thetaBase = 10000.0;
  c.scale = 1.0f / std::sqrt(static_cast<float>(D));
  c.mask.lambda = true;
  c.mask.origin = 0;
  c.mask.nGlobal = 10;
  c.mask.nLocal = nLocal;
  c.mask.limitDistance = nLocal;
  for (int64_t t = 0; t < c.mask.nGlobal; t++) c.slotPos.push_back(t);
  std::vector<int64_t> ring(static_cast<size_t>(nLocal), -1);
  for (int64_t t = qp - nLocal; t < qp; t++) ring[static_cast<size_t>(t % nLocal)] = t;
  c.slotPos.insert(c.slotPos.end(), ring.begin(), ring.end());
  c.qPos = {qp};
  c.nQ = 1;
  c.fill(rng);
  return c;
}

void decodeSteps(const std::vector<KernelPath>& paths) {
  Rng rng(7);
  struct Shape {
    KVType type;
    int D;
    RopePairing pairing;
    int rotaryDim;
  };
  const std::vector<Shape> shapes = {
      {KVType::F32, 64, RopePairing::Normal, 0},  {KVType::F16, 64, RopePairing::Normal, 0},
      {KVType::Q8_0, 64, RopePairing::Normal, 0}, {KVType::F16, 128, RopePairing::NeoX, 0},
      {KVType::F16, 64, RopePairing::NeoX, 32},   {KVType::F32, 8, RopePairing::Normal, 0},
      {KVType::F16, 8, RopePairing::Normal, 0},   {KVType::F32, 128, RopePairing::Normal, 48},
  };
  for (const Shape& sh : shapes)
    for (int64_t nLocal : {300, 2048})
      for (int64_t qp : {int64_t{1000003}, int64_t{2060}, (int64_t{1} << 40) + 64 * 999}) {
        Case plain = decodeStep(rng, sh.type, sh.D, sh.pairing, sh.rotaryDim, nLocal, qp);
        Case turned = plain;
        // turnKeys takes positions >= 0: empty slots (none here) would pass 0.
        turnKeys(turned.kf.data(), turned.nSlot(), turned.row(), turned.nHeadKV, turned.headDim,
                 turned.slotPos.data(), 64, turned.pe);
        restore(turned);
        turned.keyTurnPeriod = 64;
        plain.toHeadMajor(0, 0);
        turned.toHeadMajor(0, 0);
        const ref::Result want = ref::run(plain.problem());
        // Rounding the turned rows to f16 or q8_0 is not rounding the plain ones: those compare looser.
        const double tol = sh.type == KVType::F32 ? 2e-4 : sh.type == KVType::F16 ? 2e-3 : 2e-2;
        const ref::Result wantTurned = ref::run(turned.problem());
        const double tolStored = sh.type == KVType::F32 ? 2e-4 : sh.type == KVType::F16 ? 5e-4 : 2e-3;
        char what[160];
        std::snprintf(what, sizeof what, "decode D=%d type=%d pairing=%d rd=%d nLocal=%lld qp=%lld", sh.D,
                      static_cast<int>(sh.type), static_cast<int>(sh.pairing), sh.rotaryDim,
                      static_cast<long long>(nLocal), static_cast<long long>(qp));
        LMI_CHECK(maxDiff(wantTurned.out, want.out, sh.D) <= tol, "%s: the reference on turned rows vs plain: %g",
                  what, maxDiff(wantTurned.out, want.out, sh.D));
        for (const KernelPath& kp : paths) {
          RunOptions o = kp.options;
          o.threads = 1;
          const std::vector<float> got = runParts(turned, 1, o);
          LMI_CHECK(maxDiff(got, want.out, sh.D) <= tol, "%s [%s] turned rows vs plain reference: %g", what, kp.name,
                    maxDiff(got, want.out, sh.D));
          LMI_CHECK(maxDiff(got, wantTurned.out, sh.D) <= tolStored, "%s [%s] vs reference on the turned rows: %g", what,
                    kp.name, maxDiff(got, wantTurned.out, sh.D));
          // run() splits the keys of so few items: other sums, the same tolerance.
          const std::vector<float> split = runWith(turned, o);
          LMI_CHECK(maxDiff(split, wantTurned.out, sh.D) <= tolStored, "%s [%s] run() vs reference on the turned rows: %g",
                    what, kp.name, maxDiff(split, wantTurned.out, sh.D));
        }
      }
}

template <class F>
bool throwsInvalid(F f) {
  try {
    f();
  } catch (const InvalidArgument&) {
    return true;
  }
  return false;
}

void turnKeysItself() {
  Rng rng(11);
  for (RopePairing pairing : {RopePairing::Normal, RopePairing::NeoX})
    for (int rotaryDim : {0, 16}) {
      const int nHeadKV = 3, D = 32, n = 200;
      const int64_t stride = nHeadKV * D + 5, period = 64;
      PositionEncoding pe;
      pe.pairing = pairing;
      pe.rotaryDim = rotaryDim;
      pe.thetaBase = 500000.0;
      pe.freqScale = 0.5;
      std::vector<float> rows(static_cast<size_t>(n * stride)), before;
      for (auto& x : rows) x = rng.sym();
      before = rows;
      std::vector<int64_t> pos(n);
      for (int i = 0; i < n; i++) pos[i] = rng.range(0, int64_t{1} << 45);
      turnKeys(rows.data(), n, stride, nHeadKV, D, pos.data(), period, pe);
      const int rd = rotaryDim ? rotaryDim : D;
      double worst = 0.0;
      for (int i = 0; i < n; i++) {
        const double p = static_cast<double>(pos[i] % period);
        for (int g = 0; g < nHeadKV; g++) {
          const float* x = &before[static_cast<size_t>(i * stride + g * D)];
          const float* y = &rows[static_cast<size_t>(i * stride + g * D)];
          for (int k = 0; k < rd / 2; k++) {
            const int a = pairing == RopePairing::NeoX ? k : 2 * k;
            const int b = pairing == RopePairing::NeoX ? k + rd / 2 : 2 * k + 1;
            const double angle = p * pe.freqScale * std::pow(pe.thetaBase, -2.0 * k / rd);
            const double ya = x[a] * std::cos(angle) - x[b] * std::sin(angle);
            const double yb = x[a] * std::sin(angle) + x[b] * std::cos(angle);
            worst = std::max({worst, std::fabs(ya - y[a]), std::fabs(yb - y[b])});
          }
          for (int d = rd; d < D; d++) LMI_CHECK(x[d] == y[d], "turnKeys changed dim %d past rotaryDim %d", d, rd);
        }
        for (int64_t e = nHeadKV * D; e < stride; e++)
          LMI_CHECK(rows[static_cast<size_t>(i * stride + e)] == before[static_cast<size_t>(i * stride + e)],
                    "turnKeys wrote the padding between rows");
      }
      LMI_CHECK(worst <= 1e-6, "turnKeys vs double rotation (pairing %d, rd %d): %g", static_cast<int>(pairing),
                rotaryDim, worst);
    }

  PositionEncoding rope;
  PositionEncoding alibi;
  alibi.kind = Encoding::Alibi;
  float row[8] = {};
  const int64_t good = 5, bad = -1;
  LMI_CHECK(throwsInvalid([&] { turnKeys(row, 1, 8, 1, 8, &good, 0, rope); }), "period 0 is refused");
  LMI_CHECK(throwsInvalid([&] { turnKeys(row, 1, 8, 1, 8, &good, 64, alibi); }), "ALiBi is refused");
  LMI_CHECK(throwsInvalid([&] { turnKeys(row, 1, 8, 1, 8, &bad, 64, rope); }), "a negative position is refused");
  LMI_CHECK(throwsInvalid([&] { turnKeys(row, 1, 4, 1, 8, &good, 64, rope); }), "rowStride < row is refused");

  Rng r2(3);
  Case c = decodeStep(r2, KVType::F32, 64, RopePairing::Normal, 0, 100, 500);
  c.keyTurnPeriod = -1;
  LMI_CHECK(throwsInvalid([&] { validate(c.problem()); }), "validate refuses keyTurnPeriod < 0");
  c.keyTurnPeriod = 64;
  c.pe.kind = Encoding::None;
  LMI_CHECK(throwsInvalid([&] { validate(c.problem()); }), "validate refuses keyTurnPeriod without RoPE");
  c.pe.kind = Encoding::Rope;
  validate(c.problem());
}

}  // namespace

int main(int argc, char** argv) {
  const int nCases = argc > 1 ? std::atoi(argv[1]) : 120;
  const std::vector<KernelPath> paths = kernelPaths();
  for (const KernelPath& kp : paths) std::printf("path: %s\n", kp.name);
  randomCases(paths, nCases);
  decodeSteps(paths);
  turnKeysItself();
  return finish("test_key_turn");
}
