// RopeTable, the CPU kernel's rotation coefficients: coeffs() against cos/sin computed here in
// double for distances in each of its ranges (low table, angle addition, direct), and the lane
// form the fused decode tiles turn Normal pairs with (laneRow / laneCoeffs): the same values
// spread over lanes, and a vector turned with it equal to R(-p) computed in double.
#include <cstring>
#include <vector>

#include "rope_table.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

bool same(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void checkTable(double theta, double freq, int rd) {
  const auto table = detail::ropeTable(theta, freq, rd);
  const int half = rd / 2;
  const int64_t lo = detail::RopeTable::kLo, hi = detail::RopeTable::kHi, lanes = detail::RopeTable::kLaneRows;
  const std::vector<int64_t> distances = {0,      1,      2,           lanes - 1,   lanes,      lanes + 1,
                                          1000,   lo - 1, lo,          lo + 1,      123457,     lo * hi - 1,
                                          lo * hi, lo * hi + 1, 5000003, int64_t(1) << 31};
  Rng rng(static_cast<uint64_t>(rd) * 7919 + static_cast<uint64_t>(theta));
  std::vector<float> tmp(rd), lane(2 * rd), x(rd);
  for (int64_t p : distances) {
    const float* C;
    const float* S;
    table->coeffs(p, &C, &S, tmp.data());
    double worst = 0.0;
    for (int k = 0; k < half; k++) {
      const double a = static_cast<double>(p) * freq * std::pow(theta, -2.0 * k / rd);
      worst = std::max({worst, std::fabs(C[k] - std::cos(a)), std::fabs(S[k] - std::sin(a))});
    }
    // Angle addition in float (distances from kLo to kLo * kHi) costs a few float roundings.
    LMI_CHECK(worst <= 1e-6, "rd %d theta %g freq %g p %lld: coeffs off by %g", rd, theta, freq, (long long)p,
              worst);

    table->laneCoeffs(p, lane.data());
    const float* lc = lane.data();
    const float* ls = lane.data() + rd;
    int bad = 0;
    for (int k = 0; k < half; k++)
      bad += !same(lc[2 * k], C[k]) + !same(lc[2 * k + 1], C[k]) + !same(ls[2 * k], S[k]) +
             !same(ls[2 * k + 1], -S[k]);
    LMI_CHECK(bad == 0, "rd %d p %lld: %d lane coefficients differ from coeffs()", rd, (long long)p, bad);
    if (p < lanes) {
      const float* row = table->laneRow(p);
      int differ = 0;
      for (int i = 0; i < 2 * rd; i++) differ += !same(row[i], lane[i]);
      LMI_CHECK(differ == 0, "rd %d p %lld: laneRow differs from laneCoeffs in %d values", rd, (long long)p, differ);
    }

    // x C + (x, pairs swapped) S is R(-p) x: (a, b) -> (a cos + b sin, b cos - a sin).
    for (auto& v : x) v = static_cast<float>(rng.uniform() * 2.0 - 1.0);
    double off = 0.0;
    for (int k = 0; k < half; k++) {
      const double a = static_cast<double>(p) * freq * std::pow(theta, -2.0 * k / rd);
      const double xa = x[2 * k], xb = x[2 * k + 1];
      const float ya = x[2 * k] * lc[2 * k] + x[2 * k + 1] * ls[2 * k];
      const float yb = x[2 * k + 1] * lc[2 * k + 1] + x[2 * k] * ls[2 * k + 1];
      off = std::max({off, std::fabs(ya - (xa * std::cos(a) + xb * std::sin(a))),
                      std::fabs(yb - (xb * std::cos(a) - xa * std::sin(a)))});
    }
    LMI_CHECK(off <= 4e-6, "rd %d p %lld: lane turn differs from R(-p) by %g", rd, (long long)p, off);
  }
}

}  // namespace

int main() {
  for (int rd : {16, 64, 80, 128})
    for (double theta : {10000.0, 500000.0})
      for (double freq : {1.0, 0.25}) checkTable(theta, freq, rd);
  return finish("test_rope_table");
}
