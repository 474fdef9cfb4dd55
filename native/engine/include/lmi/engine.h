// The model engine: GGUF weights mmapped and wrapped as ggml tensors, one forward-pass builder
// per architecture, and contexts that own K/V memory and run batches through the Λ kernel.
// A plain C++ library (no N-API). TypeScript reads the GGUF and hands over a complete
// description (ModelSpec); it also owns the slot table, so every batch names the slot each
// token's K/V goes to and the position every slot holds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "lmi/attention.h"

namespace lmi::engine {

// The codes match lib/errors.ts (LmiErrorCode).
enum class ErrorCode { InvalidArgument, Unsupported, GgufFormat, Native, Disposed };
const char* errorCodeName(ErrorCode code);  // "INVALID_ARGUMENT", "UNSUPPORTED", ...

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

enum class Arch { Llama, Qwen2, GptNeoX, Mpt };
// "llama" | "qwen2" | "gptneox" | "mpt"; false for anything else.
bool parseArch(const std::string& name, Arch* out);
const char* archName(Arch arch);

struct Hyperparameters {
  int64_t nVocab = 0;
  int64_t nEmbd = 0;
  int64_t nLayer = 0;
  int64_t nHead = 0;
  int64_t nHeadKV = 0;
  int64_t headDim = 0;
  int64_t nFF = 0;
  double normEps = 1e-5;        // RMSNorm (llama, qwen2) or LayerNorm (gptneox, mpt)
  int64_t contextLength = 0;    // training length; informational here
  double ropeTheta = 10000.0;   // RoPE models only
  double ropeFreqScale = 1.0;
  int64_t rotaryDim = 0;        // 0 means headDim
  attn::RopePairing ropePairing = attn::RopePairing::Normal;
  bool parallelResidual = false;  // gptneox
  double alibiBiasMax = 0.0;      // mpt
  double clampKQV = 0.0;          // mpt; 0 = no clamp
};

struct TensorSpec {
  std::string name;
  int type = 0;                // ggml type number
  std::vector<int64_t> dims;   // ggml order: dims[0] is the row length
  uint64_t offset = 0;         // absolute byte offset in the file
  uint64_t byteLength = 0;
};

// Where a model's weights, K/V caches and compute live. Gpu: the first GPU of ggml's backend
// registry (ggml's CUDA backend) with the CUDA Λ kernel; needs a build with LMI_CUDA=ON.
enum class Device { Cpu, Gpu };
const char* deviceName(Device device);  // "cpu" | "gpu"

struct ModelSpec {
  std::string path;
  Arch arch = Arch::Llama;
  Hyperparameters hparams;
  std::vector<TensorSpec> tensors;
  int threads = 1;
  Device device = Device::Cpu;  // Gpu throws Error(Unsupported) when the build or the machine has none
};

// What this build and machine offer for Device::Gpu.
struct GpuInfo {
  bool compiled = false;     // built with LMI_CUDA=ON (ggml's CUDA backend and the CUDA Λ kernel)
  int deviceCount = 0;       // GPUs both ggml and the kernel see (0 when not compiled)
  std::string name;          // the first one's, as ggml names it ("CUDA0"); empty when none
  std::string description;   // e.g. "NVIDIA H100 80GB HBM3"
  size_t memoryTotal = 0;    // bytes
  size_t memoryFree = 0;
};
GpuInfo gpuInfo();
// Why Device::Gpu cannot be used here, with the fix; empty when it can.
std::string gpuUnavailableReason();

struct Model;  // weights; defined in src/model.h

// The tensor types ggml's CPU backend computes matrix products and row lookups for:
// F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K.
bool isComputableType(int type);
// "Q4_K (type 12)", or "type 99 (unknown to ggml)".
std::string typeLabel(int type);

// mmaps spec.path read-only, validates every tensor against the file, the type list and the
// architecture, and wraps them as ggml tensors over the mapping. Throws Error.
// Device::Gpu: the tensors are uploaded to the GPU (token_embd stays readable in the mapping:
// the embedding rows are looked up on the host).
std::shared_ptr<const Model> loadModel(const ModelSpec& spec);
size_t modelWeightBytes(const Model& model);  // bytes of the tensors the architecture reads
Device modelDevice(const Model& model);

// Where a CPU model's matrices (those it only multiplies by) live: one entry per ggml layout that
// holds some, e.g. "AMX" (AMX tiles), "CPU_REPACK" (interleaved rows), or "mapped" (read from
// the file mapping as stored). Empty for a GPU model.
struct WeightLayout {
  std::string name;
  int64_t tensors = 0;
  size_t bytes = 0;  // in that layout
};
std::vector<WeightLayout> modelWeightLayouts(const Model& model);

enum class LogitsMode { All, Last, None };

struct ContextOptions {
  int64_t nSlot = 0;         // ring-buffer slots
  int64_t nArchive = 0;      // extra slots for layers >= topKFromLayer (top-k middle attention)
  int64_t topKFromLayer = 0;
  attn::KVType kvType = attn::KVType::F16;
  int64_t maxBatch = 512;
  int threads = 1;
  // Run the forward pass as segments with the Λ kernel called between them (what a GPU model
  // always does) instead of one graph with the kernel as a custom op. On the CPU this is a testing
  // knob: same results, more overhead.
  bool segmented = false;
  // K/V laid out per KV head ([nHeadKV][slot][headDim] per layer) rather than per slot, so that a
  // decode step reads each KV head's keys as one sequential stream. CPU models only: a GPU model's
  // cache is always slot-major (the CUDA kernels read that layout). Same results either way.
  bool headMajorKV = true;
};

// One eval() call's input, as views; stage() copies what it needs.
struct Batch {
  int64_t n = 0;
  const int32_t* tokens = nullptr;           // [n]
  const int64_t* positions = nullptr;        // [n], increasing
  // The batch's tokens attend to the slots as slotPositions describes them and to each other, and
  // are then written into `slots` (a slot may hold a key an earlier token of the batch still sees).
  const int32_t* slots = nullptr;            // [n], each in [0, nSlot), distinct
  const int32_t* archiveCopies = nullptr;    // [nArchiveCopies * 2]: src (ring slot), dst (archive slot), first
  int64_t nArchiveCopies = 0;
  // [nSlotPositions] = nSlot + nArchive entries: the position each slot holds before the batch
  // (-1 empty; archive copies of this batch not yet counted), each older than positions[0].
  const int64_t* slotPositions = nullptr;
  int64_t nSlotPositions = 0;
  attn::LambdaMask mask;
  attn::TopKMiddle topK;
  LogitsMode logits = LogitsMode::Last;
};

// A decode run (Context::decode): evaluate `token`, sample the next token from its logits, evaluate
// that one, and so on, one token per forward pass, without returning to the caller in between.
// Step i writes its token at positions[i] into slots[i], as a one-token eval with the slot table
// as it stands after the steps before it.
struct DecodeRun {
  int32_t token = 0;                       // the first token to evaluate (sampled before the run)
  int64_t maxSteps = 0;                    // forward passes at most; positions and slots hold this many
  const int64_t* positions = nullptr;      // [maxSteps], increasing
  const int32_t* slots = nullptr;          // [maxSteps], distinct, in [0, nSlot)
  const int64_t* slotPositions = nullptr;  // [nSlot]: the table before the run, each older than positions[0]
  int64_t nSlotPositions = 0;
  attn::LambdaMask mask;
  const int32_t* recent = nullptr;  // the stream's latest tokens, oldest first, ending with `token`
  int64_t nRecent = 0;
  const uint8_t* endAfter = nullptr;  // [nVocab]: a nonzero entry ends the run once that id is sampled
  double budgetSeconds = 0;           // no step starts once this much time has passed (0: no limit)
};

struct DecodeOutcome {
  int64_t steps = 0;    // forward passes done: `token` and the first steps - 1 sampled ids were evaluated
  int64_t sampled = 0;  // ids written: steps, or steps - 1 when the sampler declined the last row (-1)
  double computeSeconds = 0;  // in the forward passes
};

class TokenSampler;
struct Sfc32;

class Context {
 public:
  // Allocates K/V for every layer (not cleared: a slot is read only after a batch wrote it);
  // the compute buffer is reserved by the first run(). Throws Error.
  Context(std::shared_ptr<const Model> model, const ContextOptions& options);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Validates the batch (throws Error with ErrorCode::InvalidArgument) and copies it into the
  // context's own buffers. Call from one thread at a time, never while run() is running.
  void stage(const Batch& batch);
  // Rows of logits the staged batch produces (n, 1 or 0).
  int64_t stagedOutputRows() const;
  // Computes the staged batch: archive copies, then the forward pass; writes
  // stagedOutputRows() * nVocab floats to logits. Throws Error (ErrorCode::Native).
  void run(float* logits);

  // Validates a run (throws Error with ErrorCode::InvalidArgument): what decode() checks first.
  // Contexts with a top-k archive take no runs.
  void checkDecode(const DecodeRun& run) const;
  // Runs it: sampledOut receives the sampled ids (at most maxSteps), lastLogits the last pass's
  // logits (nVocab floats). The rows each step overwrites are kept until the next stage() or
  // decode(), so rollback() can undo the last steps. Throws Error.
  DecodeOutcome decode(const DecodeRun& run, TokenSampler& sampler, Sfc32& rng, int32_t* sampledOut,
                       float* lastLogits);
  // Puts back the K/V rows the last `steps` steps of the latest decode() overwrote, newest first:
  // the cache is then as if the run had stopped `steps` passes earlier. Throws Error
  // (InvalidArgument) for more steps than that run did, or after a stage().
  void rollback(int64_t steps);

  size_t kvBytes() const;
  int64_t nVocab() const;
  const ContextOptions& options() const;
  bool segmented() const;  // options().segmented, or a GPU model

  struct Impl;

 private:
  friend class MultiEval;
  std::unique_ptr<Impl> impl_;
};

// Continuous batching: runs the staged batches of several contexts of one model as ONE forward
// pass over their concatenated tokens. The projections and feed-forward matmuls see every token
// at once; attention stays per sequence, each through the Λ kernel against its own context's K/V
// (this batch's K/V rows are scattered into each context's slots inside the attention op).
// Graphs are cached per (total tokens, logits mode), whatever the split between contexts.
// Owns its own ggml thread pool and compute buffer; one run() at a time.
// Segmented contexts (GPU models, ContextOptions::segmented) are not batched jointly: run()
// evaluates them one after another, each through its own segmented forward pass.
class MultiEval {
 public:
  // threads 0: the model's default thread count.
  MultiEval(std::shared_ptr<const Model> model, int threads);
  ~MultiEval();
  MultiEval(const MultiEval&) = delete;
  MultiEval& operator=(const MultiEval&) = delete;

  // Whether `context` belongs to this evaluator's model (checked again by run()).
  bool accepts(const Context& context) const;
  // contexts: distinct, staged (Context::stage) contexts of this model; logits[i] receives
  // contexts[i]->stagedOutputRows() * nVocab floats. Throws Error.
  void run(const std::vector<Context*>& contexts, const std::vector<float*>& logits);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lmi::engine
