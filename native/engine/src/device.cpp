// Device::Gpu: finding the GPU through ggml's backend registry, reporting what the build and the
// machine offer, and calling the CUDA Λ kernel between graph segments.
#include "device.h"

#include <string>

#include "gpu_sync.h"

#include "lmi/attention_cuda.h"

namespace lmi::engine {

namespace {

ggml_backend_dev_t firstGgmlGpu() { return ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU); }

int ggmlGpuCount() {
  int count = 0;
  for (size_t i = 0; i < ggml_backend_dev_count(); i++)
    if (ggml_backend_dev_type(ggml_backend_dev_get(i)) == GGML_BACKEND_DEVICE_TYPE_GPU) count++;
  return count;
}

}  // namespace

const char* deviceName(Device device) { return device == Device::Gpu ? "gpu" : "cpu"; }

GpuInfo gpuInfo() {
  GpuInfo info;
  info.compiled = attn::cuda::compiled();
  if (!info.compiled) return info;
  int kernelDevices = 0;
  try {
    kernelDevices = attn::cuda::deviceCount();
  } catch (const std::exception&) {
    kernelDevices = 0;
  }
  const int ggmlDevices = ggmlGpuCount();
  info.deviceCount = kernelDevices < ggmlDevices ? kernelDevices : ggmlDevices;
  if (info.deviceCount > 0) {
    ggml_backend_dev_t dev = firstGgmlGpu();
    info.name = ggml_backend_dev_name(dev);
    info.description = ggml_backend_dev_description(dev);
    ggml_backend_dev_memory(dev, &info.memoryFree, &info.memoryTotal);
  }
  return info;
}

std::string gpuUnavailableReason() {
  if (!attn::cuda::compiled())
    return "this build of lm-infinite has no CUDA support (it was built without LMI_CUDA). Rebuild the native "
           "addon with CUDA on a machine with the CUDA toolkit (nvcc and cuBLAS): `LMI_CUDA=1 npm rebuild "
           "lm-infinite`, or `LMI_CUDA=1 node scripts/build-native.cjs` in the package folder; or run on the CPU";
  if (gpuInfo().deviceCount > 0) return {};
  return "this build has CUDA support, but no CUDA device is visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES "
         "hides them; see nvidia-smi); run on the CPU";
}

ggml_backend_dev_t requireGpu() {
  const std::string why = gpuUnavailableReason();
  if (!why.empty()) throw Error(ErrorCode::Unsupported, "gpu: " + why);
  return firstGgmlGpu();
}

void kernelValidateShape(const attn::Problem& p) { attn::cuda::validateShape(p); }

void kernelRun(const attn::Problem& p) {
  attn::cuda::run(p, nullptr);
  const std::string err = gpu::synchronize();
  if (!err.empty()) throw Error(ErrorCode::Native, "CUDA Λ kernel failed: " + err);
}

}  // namespace lmi::engine
