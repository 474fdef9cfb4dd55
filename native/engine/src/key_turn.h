// Keys written into a CPU K/V cache already turned by R(position mod period)
// (attn::Problem::keyTurnPeriod): a ggml op on the graph's new K rows, before the kernel attends
// them and before they are written, so that the cache, the kernel's kNew and the staging rows of
// batched evaluation all hold the same turned rows.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "ggml.h"
#include "lmi/attention.h"

namespace lmi::engine {

struct Model;

// The period a context's cache uses: 64 on the CPU for RoPE models (a decode tile of 64 keys at
// consecutive positions then shares one turn), 0 (un-turned keys) for other encodings and on a GPU,
// whose kernel reads un-turned keys.
int64_t keyTurnPeriod(const Model& model, bool gpu);

// What the op reads when the graph runs: the batch's token positions (set before each compute).
struct KeyTurn {
  int64_t period = 0;  // 0: no op in the graph
  attn::PositionEncoding pe;
  int nHeadKV = 0, headDim = 0;
  const int64_t* positions = nullptr;  // [n]: position of the batch's token t
  std::atomic<bool> failed{false};     // the op cannot throw through ggml: it says so here
  std::string error;                   // written by the one thread that set failed
};

// rows [nHeadKV * headDim, n] (f32) -> the same rows turned; token t by R(positions[t] mod period).
ggml_tensor* turnKeys(ggml_context* ctx, ggml_tensor* rows, KeyTurn* turn);

}  // namespace lmi::engine
