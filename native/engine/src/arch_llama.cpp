// llama (LLaMA 1/2/3, Mistral, TinyLlama; GQA) and qwen2: pre-RMSNorm blocks, separate Q/K/V
// projections, SwiGLU feed-forward. qwen2 adds Q/K/V biases and pairs RoPE dimensions NeoX-style;
// llama's GGUF Q/K rows are already permuted (by llama.cpp's converter) for normal pairing.
// Neither has a position rotation in the graph: the Λ kernel rotates q and k by relative distance
// (GraphBuilder::attention turns new keys only by position mod 64 for the CPU cache, key_turn.h).
#include "arch.h"
#include "graph.h"

namespace lmi::engine {

ArchPlan planLlama(Model& m) {
  const Hyperparameters& hp = m.hp;
  const bool qwen2 = m.arch == Arch::Qwen2;
  const int64_t E = hp.nEmbd, Hq = hp.nHead * hp.headDim, Hkv = hp.nHeadKV * hp.headDim, F = hp.nFF;
  ArchPlan plan;
  auto& t = plan.tensors;
  t.push_back({"token_embd.weight", {E, hp.nVocab}, true, false, &m.tokEmbd});
  t.push_back({"output_norm.weight", {E}, true, true, &m.outputNorm});
  t.push_back({"output.weight", {E, hp.nVocab}, false, false, &m.output});  // absent: tied to token_embd
  for (int64_t il = 0; il < hp.nLayer; il++) {
    LayerWeights& w = m.layers[il];
    const std::string b = "blk." + std::to_string(il) + ".";
    t.push_back({b + "attn_norm.weight", {E}, true, true, &w.attnNorm});
    t.push_back({b + "attn_q.weight", {E, Hq}, true, false, &w.wq});
    t.push_back({b + "attn_k.weight", {E, Hkv}, true, false, &w.wk});
    t.push_back({b + "attn_v.weight", {E, Hkv}, true, false, &w.wv});
    t.push_back({b + "attn_q.bias", {Hq}, qwen2, true, &w.bq});
    t.push_back({b + "attn_k.bias", {Hkv}, qwen2, true, &w.bk});
    t.push_back({b + "attn_v.bias", {Hkv}, qwen2, true, &w.bv});
    t.push_back({b + "attn_output.weight", {Hq, E}, true, false, &w.wo});
    t.push_back({b + "attn_output.bias", {E}, false, true, &w.bo});
    t.push_back({b + "ffn_norm.weight", {E}, true, true, &w.ffnNorm});
    t.push_back({b + "ffn_gate.weight", {E, F}, true, false, &w.ffnGate});
    t.push_back({b + "ffn_up.weight", {E, F}, true, false, &w.ffnUp});
    t.push_back({b + "ffn_down.weight", {F, E}, true, false, &w.ffnDown});
    t.push_back({b + "ffn_gate.bias", {F}, false, true, &w.ffnGateB});
    t.push_back({b + "ffn_up.bias", {F}, false, true, &w.ffnUpB});
    t.push_back({b + "ffn_down.bias", {E}, false, true, &w.ffnDownB});
    plan.unsupported.push_back({b + "ffn_gate_inp.weight", "a mixture-of-experts feed-forward"});
  }
  plan.unsupported.push_back({"rope_freqs.weight", "per-dimension RoPE frequency factors (Llama 3.1 rope scaling)"});
  return plan;
}

// x_{l+1} = h + ffn(rmsnorm(h)),  h = x_l + Wo · attn(rmsnorm(x_l))
void buildLlama(GraphBuilder& g) {
  const Model& m = g.model;
  ggml_tensor* x = g.embed();  // [E, n]
  for (int il = 0; il < g.hp.nLayer; il++) {
    const LayerWeights& w = m.layers[il];
    ggml_tensor* h = g.norm(x, w.attnNorm, nullptr, "attn_norm", il);  // [E, n]
    ggml_tensor* q = g.linear(h, w.wq, w.bq, "Qcur", il);               // [Hq, n]
    ggml_tensor* k = g.linear(h, w.wk, w.bk, "Kcur", il);               // [Hkv, n]
    ggml_tensor* v = g.linear(h, w.wv, w.bv, "Vcur", il);               // [Hkv, n]
    ggml_tensor* a = g.attention(il, q, k, v, &x);                      // [Hq, n]
    a = g.linear(a, w.wo, w.bo, "attn_out", il);                        // [E, n]

    a = g.outputRows(a, il);  // last layer: [E, rows]
    x = g.outputRows(x, il);
    ggml_tensor* ffnIn = g.named(ggml_add(g.ctx, x, a), "ffn_inp", il);
    h = g.norm(ffnIn, w.ffnNorm, nullptr, "ffn_norm", il);
    ggml_tensor* f = g.ffnSwiGLU(h, w, il);                             // [E, rows]
    x = g.named(ggml_add(g.ctx, ffnIn, f), "l_out", il);
  }
  g.head(x);
}

}  // namespace lmi::engine
