// lmi::attn::cuda::validateShape: the checks of attn::validate that need no pointer
// dereference (the pointers are device pointers; check.h), plus the CUDA kernels' own limits.
// Compiled into every build, with or without CUDA.
#include <string>

#include "check.h"
#include "lmi/attention_cuda.h"

namespace lmi::attn::cuda {

namespace {
constexpr int kMaxHeadDimCuda = 256;
constexpr int kMaxTopKCuda = 256;
constexpr int64_t kMaxSlotsCuda = int64_t(1) << 40;
}  // namespace

void validateShape(const Problem& p) {
  using detail::fail;
  using detail::str;
  if (p.headDim > kMaxHeadDimCuda)
    fail("headDim must be <= " + str(int64_t(kMaxHeadDimCuda)) + " for the CUDA kernels (got " +
         str(int64_t(p.headDim)) + "); use the CPU kernel");
  if (p.nSlot >= kMaxSlotsCuda) fail("nSlot is too large for the CUDA kernels (got " + str(p.nSlot) + ")");
  if (p.topK.k > kMaxTopKCuda)
    fail("topK.k must be <= " + str(int64_t(kMaxTopKCuda)) + " for the CUDA kernels (got " + str(int64_t(p.topK.k)) +
         ")");
  if (p.kvType == KVType::Q8_0) fail("the CUDA kernels read f32 or f16 K/V only (kvType Q8_0 is CPU-only)");
  if ((p.kHeadStride != 0 && p.kHeadStride != p.headDim) || (p.vHeadStride != 0 && p.vHeadStride != p.headDim))
    fail("the CUDA kernels read slot-major K/V only (kHeadStride and vHeadStride must be 0 or headDim)");
  if (p.keyTurnPeriod != 0) fail("the CUDA kernels read un-turned keys only (keyTurnPeriod must be 0; it is CPU-only)");
  detail::validateShape(p, kMaxHeadDimCuda);
}

}  // namespace lmi::attn::cuda
