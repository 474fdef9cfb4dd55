// Internal entry points of the CUDA kernels, for their tests and benchmark: choose the
// kernel path and the key split by hand. Plain C++ (no CUDA headers needed).
#pragma once
#include "lmi/attention.h"

namespace lmi::attn::cuda::detail {

enum class Path : int { Auto = 0, Scalar = 1, Mma = 2 };

struct RunOptions {
  Path path = Path::Auto;  // Mma falls back to Scalar where it cannot run (f32 K/V, headDim > 128)
  int splits = 0;          // key splits per row group; 0 = automatic
  int tileRange = -1;      // the per-tile position pre-pass: -1 automatic, 0 off, 1 on
};

// What a run with these options would do (for logs and tests).
struct RunPlan {
  Path path = Path::Scalar;
  int QB = 1, HB = 1, nHeadChunks = 1, nSplit = 1, nParts = 1;
  long long blocks = 0;
  bool tileRange = false;
  size_t smemBytes = 0;
};

// Whether the tensor-core path can take p (f16 K/V, headDim <= 128).
bool mmaSupported(const Problem& p);

RunPlan plan(const Problem& p, const RunOptions& o = {});

void runWith(const Problem& p, void* stream, const RunOptions& o);

}  // namespace lmi::attn::cuda::detail
