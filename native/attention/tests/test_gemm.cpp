// KernelOps::gemm, the prefill tiles' products (S = Q K^T with the keys transposed, O += P V).
// The AVX-512 kernel must give the AVX2 kernel's bits element for element (both sum each element
// over k in order, one FMA per term, from 0 or from C), so that a prefill tile's result does not
// depend on the vector width; both must match a double-precision product within the roundings of
// K terms. Shapes: M 1-70 rows (every row-block remainder), N 8-200 columns (every column-block
// remainder, including a last 8 that the AVX-512 kernel leaves to AVX2), K 1-130, padded leading
// dimensions, with and without accumulation into C. Nothing to check without AVX-512.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

bool same(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void checkCase(Rng& rng, const detail::KernelOps& avx512, const detail::KernelOps& avx2, int t) {
  const int M = static_cast<int>(rng.range(1, 70));
  const int N = 8 * static_cast<int>(rng.range(1, 25));
  const int K = static_cast<int>(rng.range(1, 130));
  const int lda = K + static_cast<int>(rng.range(0, 9));
  const int ldb = N + 8 * static_cast<int>(rng.range(0, 2));
  const int ldc = N + static_cast<int>(rng.range(0, 9));
  const bool accumulate = rng.coin();
  std::vector<float> A(static_cast<size_t>(M) * lda), B(static_cast<size_t>(K) * ldb), C0(static_cast<size_t>(M) * ldc);
  for (float& x : A) x = rng.sym();
  for (float& x : B) x = rng.sym();
  for (float& x : C0) x = 4.0f * rng.sym();
  std::vector<float> C1 = C0, C2 = C0;
  avx512.gemm(M, N, K, A.data(), lda, B.data(), ldb, C1.data(), ldc, accumulate);
  avx2.gemm(M, N, K, A.data(), lda, B.data(), ldb, C2.data(), ldc, accumulate);
  // One report per case and kind of failure: the first element that fails, and how many do.
  int padBad = 0, bitsBad = 0, refBad = 0;
  size_t firstBits = 0, firstRef = 0;
  double refAt = 0.0;
  for (int r = 0; r < M; r++)
    for (int c = 0; c < ldc; c++) {
      const size_t i = static_cast<size_t>(r) * ldc + c;
      if (c >= N) {  // padding between rows is left alone
        padBad += !same(C1[i], C0[i]);
        continue;
      }
      double ref = accumulate ? C0[i] : 0.0, mag = std::fabs(ref);
      for (int k = 0; k < K; k++) {
        const double term = static_cast<double>(A[static_cast<size_t>(r) * lda + k]) * B[static_cast<size_t>(k) * ldb + c];
        ref += term;
        mag += std::fabs(term);
      }
      if (!same(C1[i], C2[i]) && bitsBad++ == 0) firstBits = i;
      if (!(std::fabs(C1[i] - ref) <= 1e-6 * (K + 1) * mag) && refBad++ == 0) firstRef = i, refAt = ref;
    }
  const char* what = accumulate ? "accumulating" : "from zero";
  LMI_CHECK(padBad == 0, "case %d (M %d N %d K %d, %s): %d padding elements of C written", t, M, N, K, what, padBad);
  LMI_CHECK(bitsBad == 0, "case %d (M %d N %d K %d, %s): %d elements differ from AVX2, first C[%zu][%zu] %.9g vs %.9g",
            t, M, N, K, what, bitsBad, firstBits / ldc, firstBits % ldc, C1[firstBits], C2[firstBits]);
  LMI_CHECK(refBad == 0, "case %d (M %d N %d K %d, %s): %d elements off the double product, first C[%zu][%zu] %.9g vs %.9g",
            t, M, N, K, what, refBad, firstRef / ldc, firstRef % ldc, C1[firstRef], refAt);
}

}  // namespace

int main(int argc, char** argv) {
  const detail::KernelOps* avx512 = detail::avx512Ops();
  const detail::KernelOps* avx2 = detail::avx2Ops();
  if (avx512 == nullptr || avx2 == nullptr || !cpuHasAvx512()) {
    std::printf("test_gemm: no AVX-512 on this CPU or build, nothing to check\n");
    return 0;
  }
  LMI_CHECK(avx512->gemm != avx2->gemm, "the AVX-512 path has its own gemm");
  const int nCases = argc > 1 ? std::atoi(argv[1]) : 1500;
  Rng rng(20261129);
  for (int i = 0; i < nCases; i++) checkCase(rng, *avx512, *avx2, i);
  return finish("test_gemm");
}
