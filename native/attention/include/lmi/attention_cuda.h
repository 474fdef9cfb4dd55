// Λ-masked, distance-limited attention (LM-Infinite) on CUDA devices: the same
// Problem, the same rule (DESIGN.md §1) and the same results as lmi::attn::run, to
// float tolerance. Every pointer in the Problem is a device pointer.
#pragma once
#include "lmi/attention.h"

namespace lmi::attn::cuda {

// Whether this build contains the CUDA kernels (built with LMI_CUDA=ON).
bool compiled();

// Usable CUDA devices (0 when none, or when not compiled).
int deviceCount();

// Shape/option checks of p that never dereference its pointers (they are device pointers);
// throws InvalidArgument like attn::validate. Also enforces the CUDA kernels' limits:
// headDim <= 256 and topK.k <= 256.
void validateShape(const Problem& p);

// Runs p on the current CUDA device. Every pointer in p (q, k, v, kNew, vNew, slotPos, qPos, out,
// pe.alibiSlopes) is a DEVICE pointer. Enqueued on `stream` (a cudaStream_t; nullptr = the
// default stream); returns without synchronizing. Throws InvalidArgument for a malformed
// problem, std::runtime_error on CUDA errors. Scratch memory is owned by the library (cached
// per device, grown on demand, thread-safe).
//
// Values that only the device holds (qPos, slotPos, alibiSlopes) are not checked: positions
// must be >= 0 (slots: or -1 for empty) and <= 2^61, slopes finite, as attn::validate
// requires on the CPU.
void run(const Problem& p, void* stream = nullptr);

}  // namespace lmi::attn::cuda
