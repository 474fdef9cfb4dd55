#include "cpu_backend.h"

#include "lmi/engine.h"

namespace lmi::engine {

void createCpuBackend(int threads, ggml_threadpool** pool, ggml_backend_t* backend) {
  ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
  tpp.poll = 0;
  *pool = ggml_threadpool_new(&tpp);
  if (*pool == nullptr) throw Error(ErrorCode::Native, "cannot create a ggml thread pool");
  *backend = ggml_backend_cpu_init();
  if (*backend == nullptr) throw Error(ErrorCode::Native, "cannot initialise ggml's CPU backend");
  ggml_backend_cpu_set_n_threads(*backend, threads);
  ggml_backend_cpu_set_threadpool(*backend, *pool);
}

}  // namespace lmi::engine
