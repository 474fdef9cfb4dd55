// Portable reference implementation of the tile primitives (plain loops).
#include <cmath>
#include <cstring>
#include <limits>

#include "half.h"
#include "kernels.h"

namespace lmi::attn::detail {
namespace {

void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
          bool accumulate) {
  for (int r = 0; r < M; r++) {
    float* c = C + static_cast<int64_t>(r) * ldc;
    if (!accumulate)
      for (int n = 0; n < N; n++) c[n] = 0.0f;
    const float* a = A + static_cast<int64_t>(r) * lda;
    for (int k = 0; k < K; k++) {
      const float av = a[k];
      const float* b = B + static_cast<int64_t>(k) * ldb;
      for (int n = 0; n < N; n++) c[n] += av * b[n];
    }
  }
}

void gemmNT(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  for (int r = 0; r < M; r++) {
    const float* a = A + static_cast<int64_t>(r) * lda;
    for (int n = 0; n < N; n++) {
      const float* b = B + static_cast<int64_t>(n) * ldb;
      float acc = 0.0f;
      for (int k = 0; k < K; k++) acc += a[k] * b[k];
      C[static_cast<int64_t>(r) * ldc + n] = acc;
    }
  }
}

void loadRows(const void* base, KVType type, int64_t slotStride, int64_t headOff, const int64_t* slots, int n,
              int D, int Dp, float* dst) {
  for (int r = 0; r < n; r++) {
    float* d = dst + static_cast<int64_t>(r) * Dp;
    const int64_t off = slots[r] * slotStride + headOff;
    if (type == KVType::F32) {
      std::memcpy(d, static_cast<const float*>(base) + off, sizeof(float) * D);
    } else if (type == KVType::Q8_0) {
      const auto* s = static_cast<const uint8_t*>(base) + kvBytes(type, off);
      for (int b = 0; b < D; b += kQ8Block, s += kQ8BlockBytes) {
        uint16_t bits;
        std::memcpy(&bits, s, 2);
        const float scale = halfToFloat(bits);
        for (int i = 0; i < kQ8Block; i++) d[b + i] = scale * static_cast<float>(static_cast<int8_t>(s[2 + i]));
      }
    } else {
      const uint16_t* s = static_cast<const uint16_t*>(base) + off;
      for (int i = 0; i < D; i++) d[i] = halfToFloat(s[i]);
    }
    for (int i = D; i < Dp; i++) d[i] = 0.0f;
  }
}

void rotate(const float* x, float* y, int rd, int Dp, RopePairing pairing, const float* C, const float* S,
            float sign) {
  const int half = rd / 2;
  for (int k = 0; k < half; k++) {
    const int a = pairing == RopePairing::NeoX ? k : 2 * k;
    const int b = pairing == RopePairing::NeoX ? k + half : 2 * k + 1;
    const float c = C[k], s = sign * S[k];
    const float xa = x[a], xb = x[b];
    y[a] = xa * c - xb * s;
    y[b] = xb * c + xa * s;
  }
  for (int i = rd; i < Dp; i++) y[i] = x[i];
}

void transpose(const float* src, int lds, int rows, int cols, float* dst, int ldd) {
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) dst[static_cast<int64_t>(c) * ldd + r] = src[static_cast<int64_t>(r) * lds + c];
}

void softmaxTile(float* S, int ldS, int R, int N, float* m, float* l, float* O, int ldO, int Dp) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int r = 0; r < R; r++) {
    float* s = S + static_cast<int64_t>(r) * ldS;
    float tmax = ninf;
    for (int c = 0; c < N; c++) tmax = s[c] > tmax ? s[c] : tmax;
    if (tmax == ninf) {
      for (int c = 0; c < N; c++) s[c] = 0.0f;
      continue;
    }
    if (tmax > m[r]) {
      const float alpha = m[r] == ninf ? 0.0f : std::exp(m[r] - tmax);
      float* o = O + static_cast<int64_t>(r) * ldO;
      for (int d = 0; d < Dp; d++) o[d] *= alpha;
      l[r] *= alpha;
      m[r] = tmax;
    }
    const float mr = m[r];
    float sum = 0.0f;
    for (int c = 0; c < N; c++) {
      const float e = s[c] == ninf ? 0.0f : std::exp(s[c] - mr);
      s[c] = e;
      sum += e;
    }
    l[r] += sum;
  }
}

const KernelOps kPortable = {gemm, gemmNT, loadRows, rotate, transpose, softmaxTile, nullptr, nullptr, nullptr, false};

}  // namespace

const KernelOps& portableOps() { return kPortable; }

}  // namespace lmi::attn::detail
