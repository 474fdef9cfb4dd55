// The small per-shape graph caches of the executors (context, segmented, batched): graphs keyed by
// (token count, logits mode), the least recently used one evicted when a cache is full.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

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

}  // namespace lmi::engine
