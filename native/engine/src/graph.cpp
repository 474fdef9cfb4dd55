#include "graph.h"

namespace lmi::engine {

GraphBuilder::GraphBuilder(const Model& m, const GraphTarget& target, ggml_context* c, ggml_cgraph* g, int64_t nTok,
                           LogitsMode logitsMode)
    : model(m),
      hp(m.hp),
      ctx(c),
      gf(g),
      n(nTok),
      mode(logitsMode),
      attnNodes(static_cast<size_t>(m.hp.nLayer), nullptr),
      target_(target),
      rmsNorm_(m.arch == Arch::Llama || m.arch == Arch::Qwen2) {
  if (target.boundary != nullptr) {
    inpSlots = named(ggml_view_1d(ctx, target.boundary->slots, n, 0), "inp_slots", -1);
    return;
  }
  inpTokens = named(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n), "inp_tokens", -1);
  ggml_set_input(inpTokens);
  inpSlots = named(ggml_new_tensor_1d(ctx, GGML_TYPE_I64, n), "inp_slots", -1);
  ggml_set_input(inpSlots);
}

namespace {

// The first n columns of a boundary tensor [rows, maxBatch] -> [rows, n].
ggml_tensor* boundaryView(ggml_context* ctx, ggml_tensor* t, int64_t n) {
  return ggml_view_2d(ctx, t, t->ne[0], n, t->nb[1], 0);
}

}  // namespace

ggml_tensor* GraphBuilder::named(ggml_tensor* t, const char* base, int il) {
  if (il >= 0) {
    ggml_format_name(t, "%s-%d", base, il);
  } else {
    ggml_set_name(t, base);
  }
  return t;
}

ggml_tensor* GraphBuilder::embed() {
  if (target_.boundary != nullptr) {
    // looked up on the host into the boundary's x                 [E, n]
    xLeaf_ = named(boundaryView(ctx, target_.boundary->x, n), "inp_embd", -1);
    return xLeaf_;
  }
  // token_embd [E, nVocab], tokens [n] -> [E, n] (f32, dequantized rows)
  return named(ggml_get_rows(ctx, model.tokEmbd, inpTokens), "inp_embd", -1);
}

ggml_tensor* GraphBuilder::norm(ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, const char* name, int il) {
  const float eps = static_cast<float>(hp.normEps);
  // RMSNorm: x / sqrt(mean(x^2) + eps); LayerNorm: (x - mean) / sqrt(var + eps)
  ggml_tensor* t = rmsNorm_ ? ggml_rms_norm(ctx, x, eps) : ggml_norm(ctx, x, eps);
  if (w != nullptr) t = ggml_mul(ctx, t, w);  // [E, m] * [E] broadcast
  if (b != nullptr) t = ggml_add(ctx, t, b);
  return named(t, name, il);
}

ggml_tensor* GraphBuilder::linear(ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, const char* name, int il) {
  ggml_tensor* t = ggml_mul_mat(ctx, w, x);  // [in, out] x [in, m] -> [out, m]
  if (b != nullptr) t = ggml_add(ctx, t, b);
  return named(t, name, il);
}

ggml_tensor* GraphBuilder::attention(int il, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, ggml_tensor** residual) {
  const int64_t hd = hp.headDim;
  if (target_.keyTurn != nullptr && target_.keyTurn->period > 0)
    k = named(turnKeys(ctx, k, target_.keyTurn), "k_turned", il);
  if (target_.boundary != nullptr) return segmentBoundary(il, q, k, v, residual);
  // The kernel reads q as [n][nHead][headDim] contiguous.
  if (!ggml_is_contiguous(q)) q = named(ggml_cont(ctx, q), "q_cont", il);
  ggml_tensor* kCache = target_.kCache[il];
  ggml_tensor* vCache = target_.vCache[il];
  // The op's sources. Staging (MultiEval): q and set_rows' views of the staging tensors, so the op
  // runs after those writes and reads the batch's rows from them. Otherwise: q, the cache (keys
  // un-rotated; the kernel rotates by relative distance) and the batch's rows in the cache's type,
  // contiguous, as the kernel's kNew/vNew.
  ggml_tensor* args[5] = {q};
  int nArgs = 3;
  if (target_.staging) {
    args[1] = named(ggml_set_rows(ctx, kCache, k, inpSlots), "k_stage", il);
    args[2] = named(ggml_set_rows(ctx, vCache, v, inpSlots), "v_stage", il);
  } else {
    args[1] = kCache;
    args[2] = vCache;
    args[3] = named(ggml_cast(ctx, k, kCache->type), "k_new", il);
    args[4] = named(ggml_cast(ctx, v, vCache->type), "v_new", il);
    nArgs = 5;
  }
  ggml_tensor* out = ggml_custom_4d(ctx, GGML_TYPE_F32, hd, hp.nHead, n, 1, args, nArgs, target_.attentionFn,
                                    GGML_N_TASKS_MAX, target_.attentionUserdata[il]);
  attnNodes[il] = named(out, "kqv_lambda", il);  // [headDim, nHead, n]
  if (!target_.staging) {
    // Nodes run in the order they enter the graph, and the writes overwrite slots the kernel reads:
    // the kernel goes in first. Logits 'none' needs no attention output from the last layer, only
    // its writes. From the f32 rows: set_rows rounds them to the cache's type exactly as the cast did.
    if (!(mode == LogitsMode::None && il == hp.nLayer - 1)) ggml_build_forward_expand(gf, out);
    writeCache(il, k, v);
  }
  return named(ggml_reshape_2d(ctx, out, hd * hp.nHead, n), "kqv_out", il);  // [Hq, n]
}

void GraphBuilder::writeCache(int il, ggml_tensor* kRows, ggml_tensor* vRows) {
  // set_rows takes f32 rows and converts them to the cache's type; rows already in that type
  // round-trip exactly, so the cache holds what the kernel attended.
  ggml_tensor* cache[2] = {target_.kCache[il], target_.vCache[il]};
  ggml_tensor* rows[2] = {kRows, vRows};
  const char* names[2] = {"k_write", "v_write"};
  for (int i = 0; i < 2; i++) {
    ggml_tensor* src = rows[i]->type == GGML_TYPE_F32 ? rows[i] : ggml_cast(ctx, rows[i], GGML_TYPE_F32);
    if (cache[i]->ne[2] > 1) {
      // Head-major cache [headDim, slots, nHeadKV] (kv_cache.h): rows [Hkv, n] seen as
      // [headDim, n, nHeadKV], each KV head's n rows going to its own slots.
      const size_t f = ggml_element_size(src);
      src = ggml_view_3d(ctx, src, hp.headDim, hp.nHeadKV, n, hp.headDim * f, src->nb[1], 0);
      src = ggml_permute(ctx, src, 0, 2, 1, 3);
    }
    ggml_build_forward_expand(gf, named(ggml_set_rows(ctx, cache[i], src, inpSlots), names[i], il));
  }
}

ggml_tensor* GraphBuilder::segmentBoundary(int il, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v,
                                           ggml_tensor** residual) {
  const SegmentBoundary& bd = *target_.boundary;
  // The batch's K/V rows, converted to the cache's type, for the kernel and the next graph's writes.
  ggml_tensor* kNew = boundaryView(ctx, bd.kNew, n);
  ggml_tensor* vNew = boundaryView(ctx, bd.vNew, n);
  ggml_build_forward_expand(gf, named(ggml_cpy(ctx, k, kNew), "k_new", il));
  ggml_build_forward_expand(gf, named(ggml_cpy(ctx, v, vNew), "v_new", il));
  // Logits 'none': nothing reads the last layer's attention output, only its K/V writes count.
  if (!(mode == LogitsMode::None && il == hp.nLayer - 1)) {
    // q [Hq, n] (maybe a strided view of a fused projection) -> the boundary, contiguous rows:
    // the kernel reads it as [n][nHead][headDim].
    ggml_build_forward_expand(gf, named(ggml_cpy(ctx, q, boundaryView(ctx, bd.q, n)), "q_out", il));
    // The residual stream, unless it is still the boundary's own x (layer 0 reads the embeddings).
    if (*residual != xLeaf_)
      ggml_build_forward_expand(gf, named(ggml_cpy(ctx, *residual, boundaryView(ctx, bd.x, n)), "x_out", il));
  }
  segments.push_back(gf);
  gf = ggml_new_graph_custom(ctx, target_.segmentNodes, false);
  // The next graph starts by writing the rows the kernel attended into the cache, then goes on
  // from leaves over the boundary: x, and the kernel's output.
  writeCache(il, named(boundaryView(ctx, bd.kNew, n), "k_new_in", il),
             named(boundaryView(ctx, bd.vNew, n), "v_new_in", il));
  xLeaf_ = named(boundaryView(ctx, bd.x, n), "x_in", il);
  *residual = xLeaf_;
  return named(boundaryView(ctx, bd.attn, n), "kqv_out", il);  // [Hq, n]
}

ggml_tensor* GraphBuilder::ffnSwiGLU(ggml_tensor* x, const LayerWeights& w, int il) {
  ggml_tensor* gate = linear(x, w.ffnGate, w.ffnGateB, "ffn_gate", il);  // [F, m]
  ggml_tensor* up = linear(x, w.ffnUp, w.ffnUpB, "ffn_up", il);          // [F, m]
  ggml_tensor* act = named(ggml_swiglu_split(ctx, gate, up), "ffn_swiglu", il);  // silu(gate) * up
  return linear(act, w.ffnDown, w.ffnDownB, "ffn_out", il);            // [E, m]
}

ggml_tensor* GraphBuilder::ffnGelu(ggml_tensor* x, const LayerWeights& w, int il) {
  ggml_tensor* up = linear(x, w.ffnUp, w.ffnUpB, "ffn_up", il);   // [F, m]
  ggml_tensor* act = named(ggml_gelu(ctx, up), "ffn_gelu", il);    // tanh-approximated GELU, as llama.cpp
  return linear(act, w.ffnDown, w.ffnDownB, "ffn_out", il);      // [E, m]
}

ggml_tensor* GraphBuilder::outputRows(ggml_tensor* x, int il) {
  if (il != hp.nLayer - 1 || mode != LogitsMode::Last || n == 1) return x;
  // the last token's column: [rows, n] -> [rows, 1]
  return ggml_view_2d(ctx, x, x->ne[0], 1, x->nb[1], static_cast<size_t>(n - 1) * x->nb[1]);
}

void GraphBuilder::head(ggml_tensor* x) {
  if (mode == LogitsMode::None) return;
  ggml_tensor* h = norm(x, model.outputNorm, model.outputNormB, "result_norm", -1);  // [E, rows]
  logits = linear(h, model.output, nullptr, "result_output", -1);                    // [nVocab, rows]
  ggml_set_output(logits);
  ggml_build_forward_expand(gf, logits);
}

size_t graphNodeBudget(const Hyperparameters& hp) {
  // About 30 nodes per layer in the largest builder; generous so ggml's graph never overflows.
  return 256 + static_cast<size_t>(hp.nLayer) * 64;
}

}  // namespace lmi::engine
