// How fast this machine's cores read memory that is not in their own caches: the ceiling a decode
// step's weight and K/V reads run against.
//
//   lmi_bench_read_bandwidth [--threads N] [--mib M[,M...]]
//
// Each of N threads (default 1, then every count up to N) sums its own buffer of M MiB over and
// over (a sequential read, what the hardware prefetchers follow best), for about a second per
// size; the result is bytes read per second, per thread and all threads together. Sizes from a
// few MiB (private L2 and beyond) to hundreds (past the L3 slice a VM may get).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

// Sums the buffer's 64-bit words; integer adds, so that the sum is no latency chain.
uint64_t sumWords(const uint64_t* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++) s += p[i];
  return s;
}

struct Result {
  double perThread;  // GB/s, the slowest thread
  double total;      // GB/s, all threads together
};

Result measure(int threads, size_t bytes) {
  const size_t words = bytes / sizeof(uint64_t);
  std::vector<std::vector<uint64_t>> bufs(threads);
  for (int t = 0; t < threads; t++) bufs[t].assign(words, static_cast<uint64_t>(t + 1));
  // Passes per thread: about a second of reading at ~20 GB/s, at least 3.
  const int passes = std::max(3, static_cast<int>(20e9 / static_cast<double>(bytes)));
  std::vector<double> secs(threads);
  std::vector<uint64_t> sink(threads);
  std::atomic<int> ready{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; t++) {
    pool.emplace_back([&, t] {
      sink[t] = sumWords(bufs[t].data(), words);  // touch every page before timing
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();
      const auto t0 = std::chrono::steady_clock::now();
      for (int p = 0; p < passes; p++) sink[t] += sumWords(bufs[t].data(), words);
      secs[t] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    });
  }
  for (auto& th : pool) th.join();
  uint64_t check = 0;
  for (uint64_t s : sink) check += s;
  if (check == 0) std::printf("(unexpected zero sum)\n");  // keeps the sums live
  const double read = static_cast<double>(bytes) * passes;
  const double slowest = *std::max_element(secs.begin(), secs.end());
  return {read / slowest / 1e9, read * threads / slowest / 1e9};
}

std::vector<size_t> parseSizes(const char* s) {
  std::vector<size_t> out;
  std::string str(s);
  size_t pos = 0;
  while (pos <= str.size()) {
    const size_t comma = str.find(',', pos);
    const std::string part = str.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const long mib = std::strtol(part.c_str(), nullptr, 10);
    if (mib <= 0) {
      std::fprintf(stderr, "--mib takes positive sizes in MiB, got '%s'\n", part.c_str());
      std::exit(2);
    }
    out.push_back(static_cast<size_t>(mib) << 20);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int maxThreads = 1;
  std::vector<size_t> sizes = {size_t(4) << 20, size_t(16) << 20, size_t(64) << 20, size_t(256) << 20};
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      maxThreads = std::atoi(argv[++i]);
      if (maxThreads < 1) {
        std::fprintf(stderr, "--threads takes a count >= 1\n");
        return 2;
      }
    } else if (!std::strcmp(argv[i], "--mib") && i + 1 < argc) {
      sizes = parseSizes(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: lmi_bench_read_bandwidth [--threads N] [--mib M[,M...]]\n");
      return 2;
    }
  }
  std::printf("sequential reads, one buffer per thread\n\n");
  std::printf("%8s %8s | %14s %14s\n", "threads", "MiB", "GB/s/thread", "GB/s total");
  for (int threads = 1; threads <= maxThreads; threads++)
    for (size_t bytes : sizes) {
      const Result r = measure(threads, bytes);
      std::printf("%8d %8zu | %14.1f %14.1f\n", threads, bytes >> 20, r.perThread, r.total);
    }
  return 0;
}
