#include "eval_thread.h"

#include "js_args.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace lmi::napi {

namespace {

// How long the thread polls for the next job before it sleeps: a few decode steps' worth of JS.
constexpr std::chrono::microseconds kPollWindow{500};

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

}  // namespace

struct EvalThread::State {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> pending{false};  // a job is waiting (polled without the lock)
  bool stopping = false;
  // The thread-safe function's finalizer ran (the last release, or the environment's teardown,
  // which frees it even while this thread holds it): no call on it any more.
  bool tsfnGone = false;
  bool busy = false;       // a job is running
  bool hookRan = false;    // the environment's cleanup hook ran (it is removed by then)
  std::condition_variable idle;  // busy went false
  Work work;
  Done done;
  Napi::ThreadSafeFunction tsfn;

  void loop();
};

void EvalThread::State::loop() {
  for (;;) {
    const auto since = std::chrono::steady_clock::now();
    while (!pending.load(std::memory_order_acquire) && std::chrono::steady_clock::now() - since < kPollWindow)
      cpuRelax();
    Work w;
    Done* d = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return pending.load(std::memory_order_relaxed) || stopping; });
      if (!pending.load(std::memory_order_relaxed)) break;  // stopping, nothing in hand
      w = std::move(work);
      d = new Done(std::move(done));
      pending.store(false, std::memory_order_relaxed);
      busy = true;
    }
    w();
    std::lock_guard<std::mutex> lock(mu);  // held across the call: the finalizer cannot run meanwhile
    busy = false;
    idle.notify_all();
    if (tsfnGone) return;
    const napi_status s = tsfn.NonBlockingCall(d, [](Napi::Env env, Napi::Function, Done* done) {
      // env is null while the environment is torn down: its JS handles died with it, so the
      // callback's captures are leaked rather than released into a dead environment.
      if (env == nullptr) return;
      settleQuietly([&] { (*done)(env); });
      delete done;
    });
    if (s != napi_ok) return;  // closing: the thread must not touch the function again
  }
  std::lock_guard<std::mutex> lock(mu);
  if (!tsfnGone) tsfn.Release();
}

// The environment is being torn down (a worker thread exits): the job in hand writes into memory of
// that environment (its logits array), so the teardown waits for it; then the thread stops.
void EvalThread::cleanupHook(void* arg) {
  State& s = *static_cast<State*>(arg);
  std::unique_lock<std::mutex> lock(s.mu);
  s.hookRan = true;
  s.stopping = true;
  s.cv.notify_one();
  s.idle.wait(lock, [&] { return !s.busy && !s.pending.load(std::memory_order_relaxed); });
}

std::shared_ptr<EvalThread> EvalThread::start(Napi::Env env) {
  auto state = std::make_shared<State>();
  // The JS function is never called: completions run their own callback on the JS thread.
  state->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                              "lmi.eval", 0, 1, [state](Napi::Env) {
                                                std::lock_guard<std::mutex> lock(state->mu);
                                                state->tsfnGone = true;
                                                state->stopping = true;
                                                state->cv.notify_one();
                                              });
  state->tsfn.Unref(env);  // an idle context does not keep the process alive
  try {
    std::thread([state] { state->loop(); }).detach();
  } catch (const std::system_error& e) {
    state->tsfn.Release();  // nothing else holds it yet
    throw std::runtime_error(std::string("cannot start an eval thread: ") + e.what());
  }
  napi_add_env_cleanup_hook(env, &EvalThread::cleanupHook, state.get());
  return std::shared_ptr<EvalThread>(new EvalThread(env, std::move(state)));
}

EvalThread::~EvalThread() {
  stop();
  bool ran;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    ran = state_->hookRan;
  }
  if (!ran) napi_remove_env_cleanup_hook(env_, &EvalThread::cleanupHook, state_.get());
}

void EvalThread::submit(Napi::Env env, Work work, Done done) {
  State& s = *state_;
  s.tsfn.Ref(env);  // a job in flight keeps the event loop alive
  Done unref = [state = state_, done = std::move(done)](Napi::Env e) {
    state->tsfn.Unref(e);
    done(e);
  };
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.work = std::move(work);
    s.done = std::move(unref);
    s.pending.store(true, std::memory_order_release);
  }
  s.cv.notify_one();  // no system call unless the thread sleeps
}

void EvalThread::stop() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopping = true;
  }
  state_->cv.notify_one();
}

}  // namespace lmi::napi
