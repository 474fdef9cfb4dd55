// Architecture dispatch and the hyperparameter checks every builder relies on.
#include "arch.h"

#include <cmath>

#include "graph.h"

namespace lmi::engine {

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::Unsupported: return "UNSUPPORTED";
    case ErrorCode::GgufFormat: return "GGUF_FORMAT";
    case ErrorCode::Native: return "NATIVE";
    case ErrorCode::Disposed: return "DISPOSED";
  }
  return "NATIVE";
}

bool parseArch(const std::string& name, Arch* out) {
  if (name == "llama") *out = Arch::Llama;
  else if (name == "qwen2") *out = Arch::Qwen2;
  else if (name == "gptneox") *out = Arch::GptNeoX;
  else if (name == "mpt") *out = Arch::Mpt;
  else return false;
  return true;
}

const char* archName(Arch arch) {
  switch (arch) {
    case Arch::Llama: return "llama";
    case Arch::Qwen2: return "qwen2";
    case Arch::GptNeoX: return "gptneox";
    case Arch::Mpt: return "mpt";
  }
  return "?";
}

namespace {

[[noreturn]] void bad(const std::string& what) { throw Error(ErrorCode::InvalidArgument, "hparams: " + what); }

void requireRange(const char* name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    bad(std::string(name) + " = " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " +
        std::to_string(hi) + "]");
}

void requireFinite(const char* name, double v, double lo, bool loInclusive) {
  if (!std::isfinite(v) || v < lo || (!loInclusive && v == lo))
    bad(std::string(name) + " = " + std::to_string(v) + " must be finite and " + (loInclusive ? ">= " : "> ") +
        std::to_string(lo));
}

void checkHparams(Arch arch, Hyperparameters& hp) {
  requireRange("nVocab", hp.nVocab, 1, (int64_t(1) << 31) - 1);
  requireRange("nEmbd", hp.nEmbd, 1, int64_t(1) << 20);
  requireRange("nLayer", hp.nLayer, 1, 4096);
  requireRange("nHead", hp.nHead, 1, 4096);
  requireRange("nHeadKV", hp.nHeadKV, 1, hp.nHead);
  requireRange("headDim", hp.headDim, 1, 4096);
  requireRange("nFF", hp.nFF, 1, int64_t(1) << 22);
  requireRange("contextLength", hp.contextLength, 0, int64_t(1) << 52);
  if (hp.nHead % hp.nHeadKV != 0)
    bad("nHead (" + std::to_string(hp.nHead) + ") must be a multiple of nHeadKV (" + std::to_string(hp.nHeadKV) + ")");
  requireFinite("normEps", hp.normEps, 0.0, true);

  if (arch == Arch::Mpt) {
    requireFinite("alibiBiasMax", hp.alibiBiasMax, 0.0, true);
    requireFinite("clampKQV", hp.clampKQV, 0.0, true);
    return;
  }
  // RoPE architectures: the pairing is a property of the architecture in llama.cpp.
  const attn::RopePairing expected = arch == Arch::Llama ? attn::RopePairing::Normal : attn::RopePairing::NeoX;
  if (hp.ropePairing != expected)
    bad(std::string("ropePairing must be '") + (expected == attn::RopePairing::Normal ? "normal" : "neox") +
        "' for architecture " + archName(arch));
  requireFinite("ropeTheta", hp.ropeTheta, 0.0, false);
  requireFinite("ropeFreqScale", hp.ropeFreqScale, 0.0, false);
  if (hp.rotaryDim == 0) hp.rotaryDim = hp.headDim;
  requireRange("rotaryDim", hp.rotaryDim, 2, hp.headDim);
  if (hp.rotaryDim % 2 != 0) bad("rotaryDim = " + std::to_string(hp.rotaryDim) + " must be even");
}

}  // namespace

ArchPlan planArch(Model& model) {
  checkHparams(model.arch, model.hp);
  model.layers.assign(static_cast<size_t>(model.hp.nLayer), LayerWeights{});
  switch (model.arch) {
    case Arch::Llama:
    case Arch::Qwen2: return planLlama(model);
    case Arch::GptNeoX: return planGptNeoX(model);
    case Arch::Mpt: return planMpt(model);
  }
  throw Error(ErrorCode::Unsupported, "unknown architecture");
}

void buildArch(GraphBuilder& g) {
  switch (g.model.arch) {
    case Arch::Llama:
    case Arch::Qwen2: buildLlama(g); return;
    case Arch::GptNeoX: buildGptNeoX(g); return;
    case Arch::Mpt: buildMpt(g); return;
  }
}

}  // namespace lmi::engine
