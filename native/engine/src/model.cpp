// Loading: map the file, re-check every tensor the spec names against the file and ggml's type
// table, check the architecture's tensors (presence, shape), wrap them as ggml tensors whose
// data points into the read-only mapping. Nothing here writes to the mapping.
#include <cmath>
#include <cstdio>
#include <mutex>
#include <unordered_map>

#include "arch.h"
#include "cpu_weight_layout.h"
#include "device.h"
#include "ggml-cpu.h"
#include "model.h"

namespace lmi::engine {

bool isComputableType(int type) {
  switch (type) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q2_K:
    case GGML_TYPE_Q3_K:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K:
      return true;
    default:
      return false;
  }
}

std::string typeLabel(int type) {
  if (type >= 0 && type < GGML_TYPE_COUNT) {
    return std::string(ggml_type_name(static_cast<ggml_type>(type))) + " (type " + std::to_string(type) + ")";
  }
  return "type " + std::to_string(type) + " (unknown to ggml)";
}

namespace {

constexpr int kMaxDims = 4;
constexpr int64_t kMaxDim = int64_t(1) << 40;

std::string dimsLabel(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); i++) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Trailing 1s do not change a shape: [64] == [64, 1].
std::vector<int64_t> canonical(std::vector<int64_t> dims) {
  while (dims.size() > 1 && dims.back() == 1) dims.pop_back();
  return dims;
}

[[noreturn]] void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

// Checks one tensor of the spec against ggml's storage rules and the file's extent.
void checkTensor(const TensorSpec& t, uint64_t fileSize) {
  const std::string who = "tensor '" + t.name + "'";
  if (!isComputableType(t.type))
    fail(ErrorCode::Unsupported, who + " has " + typeLabel(t.type) +
                                     ", which the engine does not compute (supported: F32, F16, BF16, Q4_0, Q4_1, "
                                     "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)");
  const auto type = static_cast<ggml_type>(t.type);
  if (t.dims.empty() || t.dims.size() > kMaxDims)
    fail(ErrorCode::GgufFormat, who + " has " + std::to_string(t.dims.size()) + " dimensions (1 to 4 allowed)");
  for (int64_t d : t.dims)
    if (d < 1 || d > kMaxDim) fail(ErrorCode::GgufFormat, who + " has dimension " + std::to_string(d));
  const int64_t block = ggml_blck_size(type);
  if (t.dims[0] % block != 0)
    fail(ErrorCode::GgufFormat, who + ": row length " + std::to_string(t.dims[0]) + " is not a multiple of " +
                                    typeLabel(t.type) + "'s block size " + std::to_string(block));
  // byteLength == row size * rows, in 128-bit arithmetic so hostile dims cannot overflow.
  unsigned __int128 rows = 1;
  for (size_t i = 1; i < t.dims.size(); i++) rows *= static_cast<uint64_t>(t.dims[i]);
  const unsigned __int128 expected = static_cast<unsigned __int128>(ggml_row_size(type, t.dims[0])) * rows;
  if (expected != t.byteLength)
    fail(ErrorCode::GgufFormat, who + " " + dimsLabel(t.dims) + " of " + typeLabel(t.type) + " needs " +
                                    (expected > UINT64_MAX ? std::string("more than 2^64")
                                                           : std::to_string(static_cast<uint64_t>(expected))) +
                                    " bytes, but the spec says byteLength " + std::to_string(t.byteLength));
  if (t.offset > fileSize || t.byteLength > fileSize - t.offset)
    fail(ErrorCode::GgufFormat, who + " lies outside the file: offset " + std::to_string(t.offset) + " + " +
                                    std::to_string(t.byteLength) + " bytes > file size " + std::to_string(fileSize));
  // ggml reads f32 data as floats and every other type's blocks start with a 16-bit field.
  const uint64_t align = type == GGML_TYPE_F32 ? 4 : 2;
  if (t.offset % align != 0)
    fail(ErrorCode::GgufFormat, who + " starts at offset " + std::to_string(t.offset) +
                                    ", which is not aligned to " + std::to_string(align) + " bytes");
}

void quietGgmlLog(enum ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

}  // namespace

std::vector<float> alibiSlopes(int64_t nHead, double maxBias) {
  // In float with powf, exactly as ggml's soft_max computes them.
  const uint32_t n2 = 1u << static_cast<uint32_t>(std::floor(std::log2(static_cast<double>(nHead))));
  const float mb = static_cast<float>(maxBias);
  const float m0 = powf(2.0f, -mb / n2);
  const float m1 = powf(2.0f, -(mb / 2.0f) / n2);
  std::vector<float> slopes(static_cast<size_t>(nHead));
  for (int64_t h = 0; h < nHead; h++) {
    slopes[h] = mb > 0.0f ? (h < n2 ? powf(m0, static_cast<float>(h + 1))
                                    : powf(m1, static_cast<float>(2 * (h - n2) + 1)))
                          : 1.0f;
  }
  return slopes;
}

Model::~Model() {
  for (ggml_backend_buffer_t b : layoutBuffers) ggml_backend_buffer_free(b);
  if (buffer != nullptr) ggml_backend_buffer_free(buffer);  // does not unmap: the buffer does not own the memory
  if (ctx != nullptr) ggml_free(ctx);
}

std::shared_ptr<const Model> loadModel(const ModelSpec& spec) {
  static std::once_flag logOnce;
  std::call_once(logOnce, [] {
    ggml_log_set(quietGgmlLog, nullptr);
    ggml_cpu_init();
  });

  auto model = std::make_shared<Model>();
  model->arch = spec.arch;
  model->hp = spec.hparams;
  if (spec.threads < 1 || spec.threads > 1024)
    fail(ErrorCode::InvalidArgument, "threads = " + std::to_string(spec.threads) + " is outside [1, 1024]");
  model->threads = spec.threads;
  ArchPlan plan = planArch(*model);  // checks the hyperparameters
  model->device = spec.device;
  if (spec.device == Device::Gpu) model->gpu = requireGpu();  // before mapping anything

  model->file = std::make_unique<MappedFile>(spec.path);
  const uint64_t fileSize = model->file->size();

  // Every tensor of the spec, whether this architecture reads it or not.
  std::unordered_map<std::string, const TensorSpec*> byName;
  byName.reserve(spec.tensors.size());
  for (const TensorSpec& t : spec.tensors) {
    checkTensor(t, fileSize);
    if (!byName.emplace(t.name, &t).second) fail(ErrorCode::GgufFormat, "tensor '" + t.name + "' appears twice");
  }
  for (const auto& [name, meaning] : plan.unsupported) {
    if (byName.count(name))
      fail(ErrorCode::Unsupported, std::string("tensor '") + name + "' means " + meaning + ", which " +
                                       archName(spec.arch) + " support in this engine does not implement");
  }

  // The architecture's tensors: presence, shape, type.
  std::vector<std::pair<const TensorSlot*, const TensorSpec*>> found;
  found.reserve(plan.tensors.size());
  for (const TensorSlot& slot : plan.tensors) {
    auto it = byName.find(slot.name);
    if (it == byName.end()) {
      if (slot.required)
        fail(ErrorCode::GgufFormat, std::string("missing tensor '") + slot.name + "', required by architecture " +
                                        archName(spec.arch));
      continue;
    }
    const TensorSpec& t = *it->second;
    if (canonical(t.dims) != canonical(slot.shape))
      fail(ErrorCode::GgufFormat, "tensor '" + t.name + "' has shape " + dimsLabel(t.dims) + ", expected " +
                                      dimsLabel(slot.shape) + " for these hyperparameters");
    if (slot.vector && t.type != GGML_TYPE_F32)
      fail(ErrorCode::Unsupported, "tensor '" + t.name + "' is " + typeLabel(t.type) +
                                       "; norm weights and biases must be F32");
    found.emplace_back(&slot, &t);
  }

  // Wrap them: tensor metadata in a no_alloc context; the data stays in the mapping (CPU) or is
  // uploaded to device memory (GPU).
  ggml_init_params params{};
  params.mem_size = ggml_tensor_overhead() * (found.size() + 1);
  params.mem_buffer = nullptr;
  params.no_alloc = true;
  model->ctx = ggml_init(params);
  if (model->ctx == nullptr) fail(ErrorCode::Native, "cannot create the ggml context for the weights");
  auto* base = static_cast<uint8_t*>(const_cast<void*>(model->file->data()));
  if (model->device == Device::Cpu) {
    // ggml's CPU buffer API takes a non-const pointer; the pages are PROT_READ and nothing writes them.
    model->buffer = ggml_backend_cpu_buffer_from_ptr(base, model->file->size());
    if (model->buffer == nullptr) fail(ErrorCode::Native, "cannot wrap the mapping as a ggml buffer");
    ggml_backend_buffer_set_usage(model->buffer, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
  }
  std::vector<ggml_tensor*> created;
  created.reserve(found.size());
  for (const auto& [slot, t] : found) {
    int64_t ne[kMaxDims] = {1, 1, 1, 1};
    for (size_t i = 0; i < t->dims.size(); i++) ne[i] = t->dims[i];
    ggml_tensor* w = ggml_new_tensor(model->ctx, static_cast<ggml_type>(t->type), static_cast<int>(t->dims.size()), ne);
    ggml_set_name(w, t->name.c_str());
    if (model->device == Device::Cpu && ggml_backend_tensor_alloc(model->buffer, w, base + t->offset) != GGML_STATUS_SUCCESS)
      fail(ErrorCode::Native, "cannot place tensor '" + t->name + "' in the mapping");
    if (slot->dst == &model->tokEmbd) model->tokEmbdHost = base + t->offset;
    *slot->dst = w;
    created.push_back(w);
    model->weightBytes += t->byteLength;
  }
  if (model->device == Device::Gpu) {
    model->buffer = ggml_backend_alloc_ctx_tensors_from_buft(model->ctx, ggml_backend_dev_buffer_type(model->gpu));
    if (model->buffer == nullptr) {
      size_t freeBytes = 0, totalBytes = 0;
      ggml_backend_dev_memory(model->gpu, &freeBytes, &totalBytes);
      fail(ErrorCode::Native, "cannot allocate " + std::to_string(model->weightBytes) + " bytes of GPU memory for the " +
                                  "weights (" + std::to_string(freeBytes) + " of " + std::to_string(totalBytes) +
                                  " bytes free on " + ggml_backend_dev_description(model->gpu) + ")");
    }
    ggml_backend_buffer_set_usage(model->buffer, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    for (size_t i = 0; i < found.size(); i++)
      ggml_backend_tensor_set(created[i], base + found[i].second->offset, 0, found[i].second->byteLength);
  }
  if (model->output == nullptr) model->output = model->tokEmbd;  // tied classifier
  // On the CPU, the matrices ggml computes faster from its own layouts move there (as in llama.cpp).
  if (model->device == Device::Cpu) model->layoutBuffers = placeWeightsInCpuLayouts(*model);

  const Hyperparameters& hp = model->hp;
  model->attnScale = 1.0f / std::sqrt(static_cast<float>(hp.headDim));
  if (spec.arch == Arch::Mpt) {
    model->alibiSlopes = alibiSlopes(hp.nHead, hp.alibiBiasMax);
    model->pe.kind = attn::Encoding::Alibi;
    model->pe.alibiSlopes = model->alibiSlopes.data();
  } else {
    model->pe.kind = attn::Encoding::Rope;
    model->pe.thetaBase = hp.ropeTheta;
    model->pe.freqScale = hp.ropeFreqScale;
    model->pe.rotaryDim = static_cast<int>(hp.rotaryDim);
    model->pe.pairing = hp.ropePairing;
  }
  return model;
}

size_t modelWeightBytes(const Model& model) { return model.weightBytes; }
Device modelDevice(const Model& model) { return model.device; }
std::vector<WeightLayout> modelWeightLayouts(const Model& model) { return model.weightLayouts; }

}  // namespace lmi::engine
