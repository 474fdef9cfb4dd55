// Randomized cases (fixed seed): the optimized kernel, on each path this CPU has (AVX-512
// decode tiles, AVX2, portable), with several thread counts and partitions, against the dense
// reference.
#include <chrono>

#include "random_case.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

std::vector<float> runWith(Case& c, RunOptions o) {
  std::fill(c.out.begin(), c.out.end(), NAN);
  run(c.problem(), o);
  return c.out;
}

std::vector<float> runParts(Case& c, int nth, const RunOptions& o) {
  std::fill(c.out.begin(), c.out.end(), NAN);
  const Problem p = c.problem();
  validate(p);
  for (int ith = nth - 1; ith >= 0; ith--) runPartition(p, ith, nth, o);
  return c.out;
}

}  // namespace

int main(int argc, char** argv) {
  const int nCases = argc > 1 ? std::atoi(argv[1]) : 240;
  const auto t0 = std::chrono::steady_clock::now();
  Rng rng(20230816);
  const std::vector<KernelPath> paths = kernelPaths();
  for (const KernelPath& kp : paths) std::printf("path: %s\n", kp.name);
  int skippedRows = 0;
  double worst32 = 0, worst16 = 0;
  for (int idx = 0; idx < nCases; idx++) {
    Case c = randomCase(rng, idx);
    if (idx % 4 == 1) {  // an engine's head-major cache
      c.toHeadMajor(rng.pick(std::vector<int64_t>{0, 0, 3}), rng.pick(std::vector<int64_t>{0, 5}));
      c.what += " head-major";
    }
    const ref::Result want = ref::run(c.problem());
    for (uint8_t a : want.ambiguous) skippedRows += a;
    const double tol = c.kvType == KVType::F16 ? 5e-4 : 2e-4;

    for (const KernelPath& kp : paths) {
      const bool portable = kp.options.forcePortable;
      const char* pname = kp.name;
      RunOptions o = kp.options;
      o.threads = 1;
      const std::vector<float> got = runWith(c, o);
      const double diff = maxDiff(got, want.out, c.headDim, want.ambiguous);
      (c.kvType == KVType::F16 ? worst16 : worst32) = std::max(c.kvType == KVType::F16 ? worst16 : worst32, diff);
      LMI_CHECK(diff <= tol, "%s [%s] max|diff| = %g", c.what.c_str(), pname, diff);

      // Thread counts: identical results (the split into items does not depend on threads).
      const int threads = (idx % 3) + 2;
      o.threads = threads;
      const std::vector<float> gotT = runWith(c, o);
      LMI_CHECK(bitEqual(gotT, got), "%s [%s] threads=%d differs from threads=1", c.what.c_str(), pname, threads);

      // runPartition: every nth gives the same bits, close to run().
      if (idx % 2 == 0 || portable) {
        const std::vector<float> p1 = runParts(c, 1, o);
        LMI_CHECK(maxDiff(p1, want.out, c.headDim, want.ambiguous) <= tol, "%s [%s] runPartition nth=1 vs reference",
                  c.what.c_str(), pname);
        for (int nth = 2; nth <= 5; nth++) {
          const std::vector<float> pn = runParts(c, nth, o);
          LMI_CHECK(bitEqual(pn, p1), "%s [%s] runPartition nth=%d differs from nth=1", c.what.c_str(), pname, nth);
        }
      }
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d cases in %.1f s; worst max|diff| f32 %.3g, f16 %.3g; %d near-tie top-k rows skipped\n", nCases, secs,
              worst32, worst16, skippedRows);
  return finish("test_attention_random");
}
