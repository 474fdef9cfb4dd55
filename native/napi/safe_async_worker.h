// Napi::AsyncWorker whose completion survives a terminating environment (a worker thread's
// terminate() while the work runs): there node-addon-api's own completion (its HandleScope, the
// error it rethrows into JS) throws, and an exception leaving the completion aborts the process.
#pragma once
#include <napi.h>

#include "js_args.h"

namespace lmi::napi {

class SafeAsyncWorker : public Napi::AsyncWorker {
 public:
  using Napi::AsyncWorker::AsyncWorker;

 protected:
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    bool completed = false;
    settleQuietly([&] {
      Napi::AsyncWorker::OnWorkComplete(env, status);  // OnOK / OnError, then deletes this worker
      completed = true;
    });
    if (!completed) Destroy();
  }
};

}  // namespace lmi::napi
