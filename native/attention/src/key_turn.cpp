// turnKeys: key rows turned by R(position mod period) for Problem::keyTurnPeriod, with the
// kernel's RoPE coefficients (RopeTable: angles in double from the int64 distance, cos/sin rounded
// to float), so that a cache written with it and the kernel reading it agree on every angle.
#include <cmath>
#include <vector>

#include "check.h"
#include "lmi/attention.h"
#include "rope_table.h"

namespace lmi::attn {

void turnKeys(float* rows, int64_t n, int64_t rowStride, int nHeadKV, int headDim, const int64_t* pos, int64_t period,
              const PositionEncoding& pe) {
  using namespace detail;
  if (period <= 0) fail("turnKeys: period must be > 0 (got " + str(period) + ")");
  if (pe.kind != Encoding::Rope) fail("turnKeys: the encoding must be RoPE (only RoPE turns keys)");
  if (n < 0) fail("turnKeys: n must be >= 0 (got " + str(n) + ")");
  if (nHeadKV <= 0 || headDim <= 0)
    fail("turnKeys: nHeadKV and headDim must be > 0 (got " + str(int64_t(nHeadKV)) + ", " + str(int64_t(headDim)) + ")");
  const int rd = pe.rotaryDim ? pe.rotaryDim : headDim;
  if (pe.rotaryDim < 0 || rd > headDim || rd % 2 != 0)
    fail("turnKeys: rotaryDim must be even and in [0, headDim] (got " + str(int64_t(pe.rotaryDim)) + ")");
  if (pe.pairing != RopePairing::Normal && pe.pairing != RopePairing::NeoX)
    fail("turnKeys: pe.pairing must be Normal or NeoX");
  if (!(pe.thetaBase > 0.0) || !(pe.freqScale > 0.0) || !std::isfinite(pe.thetaBase) || !std::isfinite(pe.freqScale))
    fail("turnKeys: thetaBase and freqScale must be finite and > 0");
  if (rowStride < static_cast<int64_t>(nHeadKV) * headDim)
    fail("turnKeys: rowStride (" + str(rowStride) + ") must be >= nHeadKV * headDim");
  if (n == 0) return;
  if (rows == nullptr || pos == nullptr) fail("turnKeys: rows and pos must not be null");
  for (int64_t i = 0; i < n; i++)
    if (pos[i] < 0) fail("turnKeys: pos[" + str(i) + "] must be >= 0 (got " + str(pos[i]) + ")");

  const std::shared_ptr<const RopeTable> table = ropeTable(pe.thetaBase, pe.freqScale, rd);
  const int half = rd / 2;
  // coeffs() writes here only for distances past its table; kept per thread, as this runs per
  // layer and token.
  thread_local std::vector<float> tmp;
  if (tmp.size() < static_cast<size_t>(rd)) tmp.resize(static_cast<size_t>(rd));
  for (int64_t i = 0; i < n; i++) {
    const int64_t p = pos[i] % period;
    if (p == 0) continue;
    const float* C;
    const float* S;
    table->coeffs(p, &C, &S, tmp.data());
    for (int g = 0; g < nHeadKV; g++) {
      float* x = rows + i * rowStride + static_cast<int64_t>(g) * headDim;
      for (int k = 0; k < half; k++) {
        const int a = pe.pairing == RopePairing::NeoX ? k : 2 * k;
        const int b = pe.pairing == RopePairing::NeoX ? k + half : 2 * k + 1;
        const float xa = x[a], xb = x[b];
        x[a] = xa * C[k] - xb * S[k];
        x[b] = xa * S[k] + xb * C[k];
      }
    }
  }
}

}  // namespace lmi::attn
