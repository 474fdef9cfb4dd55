// The fused decode primitives' `ahead` rows (KernelOps::localLogits, accumulateValues) are a
// request to the memory system and nothing more: a call given the rows of other keys as `ahead`
// must produce the same bits as the same call given none. The `ahead` rows here hold different
// random values, so a primitive that read one in place of its own key or value row would differ.
// Random tiles on every fused path this CPU runs (AVX2; AVX-512 where present): head dims 8 to 256
// (multiples of 8, including the odd multiples of 8 that the AVX-512 path hands to AVX2), f32, f16
// and Q8_0 rows, 1-4 query rows, 1-64 keys, without RoPE and with Normal or NeoX pairs.
#include <cstring>
#include <vector>

#include "kernels.h"
#include "rope_table.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

// n rows of D elements in the given type, one buffer; row(c) is row c's address.
struct Rows {
  KVType type;
  int64_t rowBytes;
  std::vector<unsigned char> bytes;
  const void* row(int c) const { return bytes.data() + static_cast<size_t>(c) * rowBytes; }
};

Rows randomRows(Rng& rng, KVType type, int n, int D) {
  Rows r{type, kvBytes(type, D), {}};
  r.bytes.resize(static_cast<size_t>(n) * r.rowBytes);
  for (int c = 0; c < n; c++) {
    unsigned char* p = r.bytes.data() + static_cast<size_t>(c) * r.rowBytes;
    if (type == KVType::Q8_0) {
      for (int b = 0; b < D / kQ8Block; b++, p += kQ8BlockBytes) {
        const uint16_t d = ref::floatToHalf(static_cast<float>(0.001 + rng.uniform() / 64.0));
        std::memcpy(p, &d, 2);
        for (int i = 0; i < kQ8Block; i++) p[2 + i] = static_cast<unsigned char>(rng.range(0, 255));
      }
    } else if (type == KVType::F16) {
      for (int i = 0; i < D; i++) {
        const uint16_t h = ref::floatToHalf(rng.sym());
        std::memcpy(p + 2 * i, &h, 2);
      }
    } else {
      for (int i = 0; i < D; i++) {
        const float x = rng.sym();
        std::memcpy(p + 4 * i, &x, 4);
      }
    }
  }
  return r;
}

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
}

void checkCase(Rng& rng, const detail::KernelOps& ops, const char* path, int idx) {
  const KVType type = rng.pick(std::vector<KVType>{KVType::F32, KVType::F16, KVType::Q8_0});
  const int D = type == KVType::Q8_0 ? static_cast<int>(32 * rng.range(1, 8)) : static_cast<int>(8 * rng.range(1, 32));
  const int R = static_cast<int>(rng.range(1, 4));
  const int n = static_cast<int>(rng.coin(0.3) ? 64 : rng.range(1, 64));
  const Rows K = randomRows(rng, type, n, D), V = randomRows(rng, type, n, D);
  const Rows KA = randomRows(rng, type, n, D), VA = randomRows(rng, type, n, D);
  std::vector<const void*> kp(n), vp(n), ka(n), va(n);
  for (int c = 0; c < n; c++) {
    kp[c] = K.row(c), vp[c] = V.row(c);
    // Scattered, as rows of a ring's keys may be.
    ka[c] = KA.row(static_cast<int>(rng.range(0, n - 1)));
    va[c] = VA.row(static_cast<int>(rng.range(0, n - 1)));
  }

  // RoPE as the fused tiles take it (kernels.h): Normal pairs from lane coefficients, rd % 8 == 0;
  // NeoX pairs from pair coefficients, rd % 16 == 0; D 8 takes Normal pairs over all 8 dims.
  const int mode = static_cast<int>(rng.range(0, 2));  // 0: none, 1: Normal, 2: NeoX
  RopePairing pairing = RopePairing::Normal;
  int rd = 0;
  std::vector<const float*> C(n), S(n);
  std::vector<float> coeffs;
  std::shared_ptr<const detail::RopeTable> table;
  if (mode == 1 || (mode == 2 && D == 8)) {
    rd = D == 8 ? 8 : static_cast<int>(8 * rng.range(1, D / 8));
    table = detail::ropeTable(10000.0, 1.0, rd);
    coeffs.resize(static_cast<size_t>(n) * 2 * rd);
    for (int c = 0; c < n; c++) {
      float* t = coeffs.data() + static_cast<size_t>(c) * 2 * rd;
      table->laneCoeffs(rng.range(0, 100000), t);
      C[c] = t, S[c] = t + rd;
    }
  } else if (mode == 2) {
    pairing = RopePairing::NeoX;
    rd = static_cast<int>(16 * rng.range(1, D / 16));
    table = detail::ropeTable(10000.0, 1.0, rd);
    coeffs.resize(static_cast<size_t>(n) * 2 * rd);
    for (int c = 0; c < n; c++) table->coeffs(rng.range(0, 100000), &C[c], &S[c], coeffs.data() + static_cast<size_t>(c) * 2 * rd);
  }
  const bool rope = rd > 0;

  const int ld = D;
  std::vector<float> Q(static_cast<size_t>(R) * ld);
  for (auto& x : Q) x = rng.sym();
  std::vector<float> logits(static_cast<size_t>(R) * 64, 0.0f), logitsAhead(logits);
  ops.localLogits(R, n, kp.data(), nullptr, type, D, rd, pairing, rope ? C.data() : nullptr,
                  rope ? S.data() : nullptr, Q.data(), ld, logits.data(), 64);
  ops.localLogits(R, n, kp.data(), ka.data(), type, D, rd, pairing, rope ? C.data() : nullptr,
                  rope ? S.data() : nullptr, Q.data(), ld, logitsAhead.data(), 64);
  LMI_CHECK(sameBits(logits, logitsAhead), "%s case %d (%s, D %d, R %d, n %d, rope mode %d): logits changed by ahead",
            path, idx, type == KVType::Q8_0 ? "q8_0" : type == KVType::F16 ? "f16" : "f32", D, R, n, mode);

  std::vector<float> P(static_cast<size_t>(R) * 64);
  for (auto& x : P) x = static_cast<float>(rng.uniform());
  std::vector<float> O(static_cast<size_t>(R) * ld);
  for (auto& x : O) x = rng.sym();
  std::vector<float> OAhead(O);
  ops.accumulateValues(R, n, vp.data(), nullptr, type, D, P.data(), 64, O.data(), ld);
  ops.accumulateValues(R, n, vp.data(), va.data(), type, D, P.data(), 64, OAhead.data(), ld);
  LMI_CHECK(sameBits(O, OAhead), "%s case %d (%s, D %d, R %d, n %d): values changed by ahead", path, idx,
            type == KVType::Q8_0 ? "q8_0" : type == KVType::F16 ? "f16" : "f32", D, R, n);
}

}  // namespace

int main(int argc, char** argv) {
  const int nCases = argc > 1 ? std::atoi(argv[1]) : 1500;
  Rng rng(20261129);
  int paths = 0;
  if (const detail::KernelOps* avx2 = detail::avx2Ops()) {
    for (int i = 0; i < nCases; i++) checkCase(rng, *avx2, "AVX2", i);
    paths++;
  }
  if (const detail::KernelOps* avx512 = detail::avx512Ops(); avx512 != nullptr && cpuHasAvx512()) {
    for (int i = 0; i < nCases; i++) checkCase(rng, *avx512, "AVX-512", i);
    paths++;
  }
  if (paths == 0) std::printf("test_kernel_ahead: no fused decode path on this CPU or build, nothing to check\n");
  return finish("test_kernel_ahead");
}
