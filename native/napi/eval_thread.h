// A context's own compute thread. eval() hands it the staged batch through a flag it polls for a
// short while after every job, so in a decode loop (evaluate, sample in JS, evaluate...) the next
// token starts without waking a sleeping thread: on a VM that wake-up (libuv's thread pool: a futex
// syscall and an inter-processor interrupt) cost more than a small model's whole forward pass. After
// the polling window the thread sleeps on a condition variable and costs nothing.
// The result comes back through a thread-safe function, which keeps the event loop alive only while
// a job is in flight.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>

namespace lmi::napi {

class EvalThread {
 public:
  using Work = std::function<void()>;          // runs on the compute thread
  using Done = std::function<void(Napi::Env)>;  // then runs on the JS thread

  // JS thread. Throws std::runtime_error when the thread cannot be started.
  static std::shared_ptr<EvalThread> start(Napi::Env env);
  ~EvalThread();  // stop()

  // JS thread: one job at a time (the caller ensures the previous one's done has run).
  void submit(Napi::Env env, Work work, Done done);
  // JS thread: the thread finishes the job in hand (whose done still runs) and exits. Idempotent.
  // Keep the object until the job's done has run: its destructor unregisters the teardown wait.
  void stop();

  struct State;

 private:
  EvalThread(napi_env env, std::shared_ptr<State> state) : env_(env), state_(std::move(state)) {}
  static void cleanupHook(void* arg);
  napi_env env_;
  std::shared_ptr<State> state_;
};

}  // namespace lmi::napi
