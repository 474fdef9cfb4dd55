// A layer's K or V cache tensor, in either layout (ContextOptions::headMajorKV):
//   slot-major [Hkv, rows]                 a slot's K row is one piece of Hkv elements;
//   head-major [headDim, rows, nHeadKV]    a slot's K row is nHeadKV pieces of headDim elements,
//                                          and each KV head's rows are one sequential stream.
// Either way piece g of consecutive slots [s, s + len) is len * nb[1] contiguous bytes at
// g * nb[2] + s * nb[1]; everything that copies slot rows goes through these helpers.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ggml.h"
#include "lmi/attention.h"

namespace lmi::engine {

// Pieces per slot: nHeadKV for head-major caches, 1 for slot-major ones.
inline int64_t kvPieces(const ggml_tensor* cache) { return cache->ne[2]; }

// Byte offset of piece g of slot s.
inline size_t kvPieceOffset(const ggml_tensor* cache, int64_t g, int64_t slot) {
  return static_cast<size_t>(g) * cache->nb[2] + static_cast<size_t>(slot) * cache->nb[1];
}

// Bytes of one slot's piece (a slot's whole row is kvPieces() of them).
inline size_t kvPieceBytes(const ggml_tensor* cache) { return cache->nb[1]; }

// Bytes of all of one slot's rows.
inline size_t kvSlotBytes(const ggml_tensor* cache) { return cache->nb[1] * static_cast<size_t>(cache->ne[2]); }

// The kernel's view of a layer's caches: slot and head strides in elements.
inline void setCacheStrides(attn::Problem& p, const ggml_tensor* k, const ggml_tensor* v) {
  const ggml_tensor* t[2] = {k, v};
  int64_t* slot[2] = {&p.kSlotStride, &p.vSlotStride};
  int64_t* head[2] = {&p.kHeadStride, &p.vHeadStride};
  for (int i = 0; i < 2; i++) {
    // Bytes to elements; a quantized type's bytes come in blocks of ggml_blck_size elements.
    const size_t unit = ggml_type_size(t[i]->type);
    const int64_t per = ggml_blck_size(t[i]->type);
    *slot[i] = static_cast<int64_t>(t[i]->nb[1] / unit) * per;
    *head[i] = t[i]->ne[2] > 1 ? static_cast<int64_t>(t[i]->nb[2] / unit) * per : 0;
  }
}

}  // namespace lmi::engine
