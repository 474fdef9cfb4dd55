// The small per-shape graph caches of the executors (context, segmented, batched): graphs keyed by
// (token count, logits mode), the least recently used one evicted when a cache is full; and the
// size of what each cached graph keeps.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "ggml.h"
#include "lmi/engine.h"

namespace lmi::engine {

// The cached graph for (n, mode), marked as used at `clock`; nullptr when there is none.
template <class G>
G* findCachedGraph(std::vector<std::unique_ptr<G>>& graphs, int64_t n, LogitsMode mode, uint64_t clock) {
  for (auto& g : graphs) {
    if (g->n == n && g->mode == mode) {
      g->lastUse = clock;
      return g.get();
    }
  }
  return nullptr;
}

// Index of the least recently used graph; graphs must not be empty.
template <class G>
size_t leastRecentlyUsed(const std::vector<std::unique_ptr<G>>& graphs) {
  size_t oldest = 0;
  for (size_t i = 1; i < graphs.size(); i++)
    if (graphs[i]->lastUse < graphs[oldest]->lastUse) oldest = i;
  return oldest;
}

// A ggml context (metadata only) holding what build(ctx) puts in it, sized to fit exactly: build
// runs twice, into a context of `bound` bytes to learn what it uses, then into one of that size,
// which is returned (the caller frees it). Node budgets are loose upper bounds (about 500 KB of
// metadata per graph) while a build uses a fifth of that, and every cached graph keeps its context;
// builds are deterministic, so the second one fits. Returns nullptr when ggml cannot allocate.
template <class Build>
ggml_context* buildExactly(size_t bound, Build&& build) {
  ggml_init_params params{};
  params.mem_size = bound;
  params.no_alloc = true;
  ggml_context* probe = ggml_init(params);
  if (probe == nullptr) return nullptr;
  build(probe);
  params.mem_size = ggml_used_mem(probe);
  ggml_free(probe);
  ggml_context* ctx = ggml_init(params);
  if (ctx != nullptr) build(ctx);
  return ctx;
}

}  // namespace lmi::engine
