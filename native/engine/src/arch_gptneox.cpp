// gptneox (Pythia, GPT-NeoX): LayerNorm with bias, fused QKV projection with bias, GELU MLP,
// partial rotary embedding (the first rotaryDim dims of each head, NeoX pairing), parallel or
// sequential residual.
//
// Layout of attn_qkv's output rows in GGUF files: three contiguous blocks
//   [ q: nHead*headDim | k: nHeadKV*headDim | v: nHeadKV*headDim ],
// each block head-major ([head][headDim]). Hugging Face stores query_key_value interleaved per
// head ([head][q|k|v][headDim]); llama.cpp's converter (convert_hf_to_gguf.py, GPTNeoXModel
// .modify_tensors, "Map bloom-style qkv_linear to gpt-style qkv_linear") reorders weight and
// bias into the block layout, and llama.cpp's graph (src/models/gptneox.cpp) views Q at offset
// 0, K at nEmbd and V at nEmbd + nEmbdGQA floats of each row. We read it the same way.
#include "arch.h"
#include "graph.h"

namespace lmi::engine {

ArchPlan planGptNeoX(Model& m) { return planLayerNormFusedQkv(m, /*biasesRequired=*/true); }

// The tensor list gptneox and mpt share; they differ only in whether the biases must be there.
ArchPlan planLayerNormFusedQkv(Model& m, bool biasesRequired) {
  const Hyperparameters& hp = m.hp;
  const int64_t E = hp.nEmbd, Hq = hp.nHead * hp.headDim, Hkv = hp.nHeadKV * hp.headDim, F = hp.nFF;
  const bool b = biasesRequired;
  ArchPlan plan;
  auto& t = plan.tensors;
  t.push_back({"token_embd.weight", {E, hp.nVocab}, true, false, &m.tokEmbd});
  t.push_back({"output_norm.weight", {E}, true, true, &m.outputNorm});
  t.push_back({"output_norm.bias", {E}, b, true, &m.outputNormB});
  t.push_back({"output.weight", {E, hp.nVocab}, false, false, &m.output});
  for (int64_t il = 0; il < hp.nLayer; il++) {
    LayerWeights& w = m.layers[il];
    const std::string p = "blk." + std::to_string(il) + ".";
    t.push_back({p + "attn_norm.weight", {E}, true, true, &w.attnNorm});
    t.push_back({p + "attn_norm.bias", {E}, b, true, &w.attnNormB});
    t.push_back({p + "attn_qkv.weight", {E, Hq + 2 * Hkv}, true, false, &w.wqkv});
    t.push_back({p + "attn_qkv.bias", {Hq + 2 * Hkv}, b, true, &w.bqkv});
    t.push_back({p + "attn_output.weight", {Hq, E}, true, false, &w.wo});
    t.push_back({p + "attn_output.bias", {E}, b, true, &w.bo});
    t.push_back({p + "ffn_norm.weight", {E}, true, true, &w.ffnNorm});
    t.push_back({p + "ffn_norm.bias", {E}, b, true, &w.ffnNormB});
    t.push_back({p + "ffn_up.weight", {E, F}, true, false, &w.ffnUp});
    t.push_back({p + "ffn_up.bias", {F}, b, true, &w.ffnUpB});
    t.push_back({p + "ffn_down.weight", {F, E}, true, false, &w.ffnDown});
    t.push_back({p + "ffn_down.bias", {E}, b, true, &w.ffnDownB});
  }
  return plan;
}

// parallel:   x_{l+1} = x_l + Wo · attn(ln1(x_l)) + mlp(ln2(x_l))
// sequential: h = x_l + Wo · attn(ln1(x_l));  x_{l+1} = h + mlp(ln2(h))
void buildGptNeoX(GraphBuilder& g) {
  const Model& m = g.model;
  const int64_t Hq = g.hp.nHead * g.hp.headDim, Hkv = g.hp.nHeadKV * g.hp.headDim;
  ggml_tensor* x = g.embed();  // [E, n]
  for (int il = 0; il < g.hp.nLayer; il++) {
    const LayerWeights& w = m.layers[il];
    ggml_tensor* h = g.norm(x, w.attnNorm, w.attnNormB, "attn_norm", il);  // [E, n]
    ggml_tensor* qkv = g.linear(h, w.wqkv, w.bqkv, "wqkv", il);             // [Hq + 2 Hkv, n]
    const size_t f = sizeof(float);
    ggml_tensor* q = g.named(ggml_view_2d(g.ctx, qkv, Hq, g.n, qkv->nb[1], 0), "Qcur", il);            // [Hq, n]
    ggml_tensor* k = g.named(ggml_view_2d(g.ctx, qkv, Hkv, g.n, qkv->nb[1], Hq * f), "Kcur", il);       // [Hkv, n]
    ggml_tensor* v = g.named(ggml_view_2d(g.ctx, qkv, Hkv, g.n, qkv->nb[1], (Hq + Hkv) * f), "Vcur", il);
    ggml_tensor* a = g.attention(il, q, k, v, &x);          // [Hq, n]
    a = g.linear(a, w.wo, w.bo, "attn_out", il);            // [E, n]

    a = g.outputRows(a, il);  // last layer: [E, rows]
    x = g.outputRows(x, il);
    if (g.hp.parallelResidual) {
      ggml_tensor* hf = g.norm(x, w.ffnNorm, w.ffnNormB, "ffn_norm", il);
      ggml_tensor* mlp = g.ffnGelu(hf, w, il);
      x = g.named(ggml_add(g.ctx, ggml_add(g.ctx, x, a), mlp), "l_out", il);
    } else {
      ggml_tensor* ffnIn = g.named(ggml_add(g.ctx, x, a), "ffn_inp", il);
      ggml_tensor* hf = g.norm(ffnIn, w.ffnNorm, w.ffnNormB, "ffn_norm", il);
      ggml_tensor* mlp = g.ffnGelu(hf, w, il);
      x = g.named(ggml_add(g.ctx, ffnIn, mlp), "l_out", il);
    }
  }
  g.head(x);
}

}  // namespace lmi::engine
