// classify() and globalDistance() against the DESIGN.md §1 table, spelled out by hand.
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

int main() {
  LambdaMask m;
  m.origin = 100;
  m.nGlobal = 3;
  m.nLocal = 5;
  m.limitDistance = 4;
  // i = 120: local keys 116..120, global 100..102, middle 103..115, future masked
  for (int64_t j = 90; j <= 125; j++) {
    const Branch b = classify(120, j, m);
    Branch want = j > 120 ? Branch::Masked : j >= 116 ? Branch::Local : j - 100 < 3 ? Branch::Global : Branch::Middle;
    LMI_CHECK(b == want, "classify(120, %lld) = %d, want %d", (long long)j, int(b), int(want));
  }
  // a global key inside the local window is local
  LMI_CHECK(classify(103, 101, m) == Branch::Local, "near global key must be local");
  LMI_CHECK(classify(106, 101, m) == Branch::Global, "far global key must be global");
  LMI_CHECK(globalDistance(120, m) == 4, "L capped at limitDistance");
  LMI_CHECK(globalDistance(102, m) == 2, "L = i - origin below the cap");
  // vanilla: everything causal is local
  m.lambda = false;
  LMI_CHECK(classify(1000, 0, m) == Branch::Local, "vanilla far key");
  LMI_CHECK(classify(1000, 1001, m) == Branch::Masked, "vanilla future key");
  // shift invariance of the rule itself
  LambdaMask s = m;
  s.lambda = true;
  m.lambda = true;
  const int64_t delta = int64_t(1) << 40;
  s.origin += delta;
  for (int64_t i = 100; i < 130; i++)
    for (int64_t j = 95; j < 135; j++)
      LMI_CHECK(classify(i, j, m) == classify(i + delta, j + delta, s), "shifted classify differs at %lld,%lld",
                (long long)i, (long long)j);
  return finish("test_lambda_rule");
}
