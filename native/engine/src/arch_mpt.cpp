// mpt: LayerNorm (bias optional), fused QKV as three contiguous blocks [q | k | v] (not
// interleaved), optional clamp of the QKV activations, ALiBi (no positional rotation: the kernel
// adds -slope_h * distance), GELU MLP, classifier tied to token_embd when output is absent.
#include "arch.h"
#include "graph.h"

namespace lmi::engine {

ArchPlan planMpt(Model& m) {
  ArchPlan plan = planLayerNormFusedQkv(m, /*biasesRequired=*/false);
  for (int64_t il = 0; il < m.hp.nLayer; il++) {
    const std::string b = "blk." + std::to_string(il) + ".";
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
    ggml_tensor* a = g.attention(il, q, k, v, &x);        // [Hq, n]
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
