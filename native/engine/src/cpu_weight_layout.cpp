#include "cpu_weight_layout.h"

#include <cstring>
#include <map>
#include <string>

#include "model.h"

namespace lmi::engine {

namespace {

// The extra buffer types of ggml's CPU device, in ggml's order of preference (null-terminated list).
std::vector<ggml_backend_buffer_type_t> cpuExtraBufferTypes(ggml_backend_dev_t cpu) {
  std::vector<ggml_backend_buffer_type_t> out;
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
  auto get = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
      ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
  if (get == nullptr) return out;
  for (ggml_backend_buffer_type_t* p = get(cpu); p != nullptr && *p != nullptr; ++p) out.push_back(*p);
  return out;
}

bool isAmx(ggml_backend_buffer_type_t buft) { return std::strstr(ggml_backend_buft_name(buft), "AMX") != nullptr; }

// The weight types ggml's AMX buffer multiplies with tile (TMUL) kernels. It accepts F16 too, but
// only to run an AVX-512 loop slower than the llamafile matmul F16 otherwise gets; llama.cpp's
// newer ggml no longer offers it for F16 at all.
bool hasAmxTileKernels(ggml_type type) {
  switch (type) {
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K:
    case GGML_TYPE_IQ4_XS:
      return true;
    default:
      return false;
  }
}

// Whether the CPU device computes w^T x with w stored in `buft`, asked the way ggml's scheduler
// asks: a mul_mat node over w (temporarily in an empty buffer of that type) and an f32 activation.
bool acceptsMatmul(ggml_backend_dev_t cpu, ggml_backend_buffer_type_t buft, ggml_tensor* w, int64_t nTokens) {
  ggml_init_params params{};
  params.mem_size = 3 * ggml_tensor_overhead();
  params.no_alloc = true;
  ggml_context* ctx = ggml_init(params);
  if (ctx == nullptr) return false;
  ggml_backend_buffer_t probe = ggml_backend_buft_alloc_buffer(buft, 0);
  bool ok = false;
  if (probe != nullptr) {
    ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, w->ne[0], nTokens);
    ggml_tensor* op = ggml_mul_mat(ctx, w, x);
    ggml_backend_buffer_t saved = w->buffer;
    w->buffer = probe;
    ok = ggml_backend_dev_supports_op(cpu, op);
    w->buffer = saved;
    ggml_backend_buffer_free(probe);
  }
  ggml_free(ctx);
  return ok;
}

}  // namespace

std::vector<ggml_backend_buffer_t> placeWeightsInCpuLayouts(Model& model) {
  std::vector<ggml_backend_buffer_t> buffers;
  ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  const std::vector<ggml_backend_buffer_type_t> extras =
      cpu != nullptr ? cpuExtraBufferTypes(cpu) : std::vector<ggml_backend_buffer_type_t>{};

  // Matrices used only as the weight of a matmul. token_embd stays mapped: its rows are looked up
  // (get_rows), and a tied classifier is that same tensor.
  std::vector<ggml_tensor*> candidates;
  for (const LayerWeights& l : model.layers)
    for (ggml_tensor* w : {l.wq, l.wk, l.wv, l.wqkv, l.wo, l.ffnGate, l.ffnUp, l.ffnDown})
      if (w != nullptr) candidates.push_back(w);
  if (model.output != nullptr && model.output != model.tokEmbd) candidates.push_back(model.output);

  // Both a single-token and a batched product must be computable from the new layout.
  std::map<ggml_backend_buffer_type_t, std::vector<ggml_tensor*>> chosen;
  WeightLayout stayMapped{"mapped", 0, 0};
  for (ggml_tensor* w : candidates) {
    bool placed = false;
    for (ggml_backend_buffer_type_t buft : extras) {
      if (isAmx(buft) && !hasAmxTileKernels(w->type)) continue;
      if (acceptsMatmul(cpu, buft, w, 1) && acceptsMatmul(cpu, buft, w, 512)) {
        chosen[buft].push_back(w);
        placed = true;
        break;
      }
    }
    if (!placed) {
      stayMapped.tensors += 1;
      stayMapped.bytes += ggml_nbytes(w);
    }
  }
  if (stayMapped.tensors > 0) model.weightLayouts.push_back(stayMapped);

  for (auto& [buft, tensors] : chosen) {
    const size_t align = ggml_backend_buft_get_alignment(buft);
    size_t total = 0;
    for (ggml_tensor* w : tensors) total += GGML_PAD(ggml_backend_buft_get_alloc_size(buft, w), align);
    ggml_backend_buffer_t buffer = ggml_backend_buft_alloc_buffer(buft, total);
    if (buffer == nullptr) {
      for (ggml_backend_buffer_t b : buffers) ggml_backend_buffer_free(b);
      throw Error(ErrorCode::Native, std::string("cannot allocate ") + std::to_string(total) + " bytes for weights in " +
                                         ggml_backend_buft_name(buft) + " layout");
    }
    ggml_backend_buffer_set_usage(buffer, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    buffers.push_back(buffer);
    model.weightLayouts.push_back({ggml_backend_buft_name(buft), static_cast<int64_t>(tensors.size()), total});
    auto* base = static_cast<uint8_t*>(ggml_backend_buffer_get_base(buffer));
    size_t offset = 0;
    for (ggml_tensor* w : tensors) {
      const void* mapped = w->data;
      w->data = nullptr;
      w->buffer = nullptr;
      if (ggml_backend_tensor_alloc(buffer, w, base + offset) != GGML_STATUS_SUCCESS) {
        for (ggml_backend_buffer_t b : buffers) ggml_backend_buffer_free(b);
        throw Error(ErrorCode::Native, std::string("cannot place tensor '") + w->name + "' in " + ggml_backend_buft_name(buft));
      }
      ggml_backend_tensor_set(w, mapped, 0, ggml_nbytes(w));  // converts to the buffer type's layout
      if (model.file) model.file->release(mapped, ggml_nbytes(w));  // the copy is all that is read now
      offset += GGML_PAD(ggml_backend_buft_get_alloc_size(buft, w), align);
    }
  }
  return buffers;
}

}  // namespace lmi::engine
