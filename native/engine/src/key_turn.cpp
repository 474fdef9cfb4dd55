#include "key_turn.h"

#include <cstring>
#include <exception>

#include "model.h"

namespace lmi::engine {

namespace {

constexpr int64_t kTurnPeriod = 64;  // the Λ kernel's decode tile: its keys then share one turn

// ggml calls it on each of its nth threads: thread ith turns its share of the tokens.
void turnKeysOp(ggml_tensor* dst, const ggml_tensor* src, int ith, int nth, void* userdata) {
  auto* turn = static_cast<KeyTurn*>(userdata);
  const int64_t rowLen = static_cast<int64_t>(turn->nHeadKV) * turn->headDim;
  const int64_t n = src->ne[1];
  const int64_t t0 = n * ith / nth, t1 = n * (ith + 1) / nth;
  if (t1 <= t0) return;
  try {
    for (int64_t t = t0; t < t1; t++)
      std::memcpy(static_cast<char*>(dst->data) + t * dst->nb[1], static_cast<const char*>(src->data) + t * src->nb[1],
                  sizeof(float) * static_cast<size_t>(rowLen));
    auto* first = reinterpret_cast<float*>(static_cast<char*>(dst->data) + t0 * dst->nb[1]);
    attn::turnKeys(first, t1 - t0, static_cast<int64_t>(dst->nb[1] / sizeof(float)), turn->nHeadKV, turn->headDim,
                   turn->positions + t0, turn->period, turn->pe);
  } catch (const std::exception& e) {
    if (!turn->failed.exchange(true)) turn->error = std::string("turning the new keys failed: ") + e.what();
  } catch (...) {
    if (!turn->failed.exchange(true)) turn->error = "turning the new keys failed";
  }
}

}  // namespace

int64_t keyTurnPeriod(const Model& model, bool gpu) {
  return !gpu && model.pe.kind == attn::Encoding::Rope ? kTurnPeriod : 0;
}

ggml_tensor* turnKeys(ggml_context* ctx, ggml_tensor* rows, KeyTurn* turn) {
  const int64_t rowLen = static_cast<int64_t>(turn->nHeadKV) * turn->headDim;
  if (rows->ne[0] != rowLen || rows->nb[0] != sizeof(float) || ggml_n_dims(rows) > 2)
    rows = ggml_reshape_2d(ctx, ggml_cont(ctx, rows), rowLen, ggml_nelements(rows) / rowLen);
  return ggml_map_custom1(ctx, rows, turnKeysOp, GGML_N_TASKS_MAX, turn);
}

}  // namespace lmi::engine
