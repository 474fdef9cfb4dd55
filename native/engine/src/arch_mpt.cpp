// mpt: LayerNorm (bias optional), fused QKV as three contiguous blocks [q | k | v] (not
// interleaved), optional clamp of the QKV activations, ALiBi (no positional rotation: the kernel
// adds -slope_h * distance), GELU MLP, classifier tied to token_embd when output is absent.
#include "arch.h"
#include "graph.h"

namespace lmi::engine {

ArchPlan planMpt(Model& m) {
  const Hyperparameters& hp = m.hp;
  const int64_t E = hp.nEmbd, Hq = hp.nHead * hp.headDim, Hkv = hp.nHeadKV * hp.headDim, F = hp.nFF;
  ArchPlan plan;
  auto& t = plan.tensors;
  t.push_back({"token_embd.weight", {E, hp.nVocab}, true, false, &m.tokEmbd});
  t.push_back({"output_norm.weight", {E}, true, true, &m.outputNorm});
  t.push_back({"output_norm.bias", {E}, false, true, &m.outputNormB});
  t.push_back({"output.weight", {E, hp.nVocab}, false, false, &m.output});
  for (int64_t il = 0; il < hp.nLayer; il++) {
    LayerWeights& w = m.layers[il];
    const std::string b = "blk." + std::to_string(il) + ".";
    t.push_back({b + "attn_norm.weight", {E}, true, true, &w.attnNorm});
    t.push_back({b + "attn_norm.bias", {E}, false, true, &w.attnNormB});
    t.push_back({b + "attn_qkv.weight", {E, Hq + 2 * Hkv}, true, false, &w.wqkv});
    t.push_back({b + "attn_qkv.bias", {Hq + 2 * Hkv}, false, true, &w.bqkv});
    t.push_back({b + "attn_output.weight", {Hq, E}, true, false, &w.wo});
    t.push_back({b + "attn_output.bias", {E}, false, true, &w.bo});
    t.push_back({b + "ffn_norm.weight", {E}, true, true, &w.ffnNorm});
    t.push_back({b + "ffn_norm.bias", {E}, false, true, &w.ffnNormB});
    t.push_back({b + "ffn_up.weight", {E, F}, true, false, &w.ffnUp});
    t.push_back({b + "ffn_up.bias", {F}, false, true, &w.ffnUpB});
    t.push_back({b + "ffn_down.weight", {F, E}, true, false, &w.ffnDown});
    t.push_back({b + "ffn_down.bias", {E}, false, true, &w.ffnDownB});
    plan.unsupported.push_back({b + "attn_q_norm.weight", "Q/K layer norms (MPT qk_ln)"});
    plan.unsupported.push_back({b + "attn_k_norm.weight", "Q/K layer norms (MPT qk_ln)"});
    plan.unsupported.push_back({b + "ffn.act.scales", "activation scales of AWQ-quantized MPT"});
  }
  plan.unsupported.push_back({"position_embd.weight", "learned absolute position embeddings (MPT without ALiBi)"});
  return plan;
}

// h = x_l + Wo · attn(ln1(x_l));  x_{l+1} = h + mlp(ln2(h))
void buildMpt(GraphBuilder& g) {
  const Model& m = g.model;
  const int64_t Hq = g.hp.nHead * g.hp.headDim, Hkv = g.hp.nHeadKV * g.hp.headDim;
  const float clamp = static_cast<float>(g.hp.clampKQV);
  ggml_tensor* x = g.embed();  // [E, n]
  for (int il = 0; il < g.hp.nLayer; il++) {
    const LayerWeights& w = m.layers[il];
    ggml_tensor* h = g.norm(x, w.attnNorm, w.attnNormB, "attn_norm", il);  // [E, n]
    ggml_tensor* qkv = g.linear(h, w.wqkv, w.bqkv, "wqkv", il);             // [Hq + 2 Hkv, n]
    if (clamp > 0.0f) qkv = g.named(ggml_clamp(g.ctx, qkv, -clamp, clamp), "wqkv_clamped", il);
    const size_t f = sizeof(float);
    ggml_tensor* q = g.named(ggml_view_2d(g.ctx, qkv, Hq, g.n, qkv->nb[1], 0), "Qcur", il);            // [Hq, n]
    ggml_tensor* k = g.named(ggml_view_2d(g.ctx, qkv, Hkv, g.n, qkv->nb[1], Hq * f), "Kcur", il);       // [Hkv, n]
    ggml_tensor* v = g.named(ggml_view_2d(g.ctx, qkv, Hkv, g.n, qkv->nb[1], (Hq + Hkv) * f), "Vcur", il);
    ggml_tensor* a = g.attention(il, q, k, v);            // [Hq, n]
    a = g.linear(a, w.wo, w.bo, "attn_out", il);          // [E, n]

    a = g.outputRows(a, il);
    x = g.outputRows(x, il);
    ggml_tensor* ffnIn = g.named(ggml_add(g.ctx, x, a), "ffn_inp", il);
    ggml_tensor* hf = g.norm(ffnIn, w.ffnNorm, w.ffnNormB, "ffn_norm", il);
    ggml_tensor* mlp = g.ffnGelu(hf, w, il);
    x = g.named(ggml_add(g.ctx, ffnIn, mlp), "l_out", il);
  }
  g.head(x);
}

}  // namespace lmi::engine
