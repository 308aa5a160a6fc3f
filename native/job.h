// The baton: each operation parses its JS arguments into a Job on the main thread (plain
// pointers into the arrays plus references that keep them alive), then the same Job runs either
// right away (sync) or in an AsyncWorker whose Execute never touches N-API.
//
//   struct XJob<P> : P::Job { pf_status launch(); };   // launch: the kernel call only
//   out: the JS value the call resolves to (made before the work starts, zero-copy outputs)
// P, the policy (native/backend.h), says where the arrays live and brings the Runner.
#ifndef PF_NATIVE_JOB_H
#define PF_NATIVE_JOB_H

#include <napi.h>

#include <string>
#include <utility>
#include <vector>

#include "errors.h"

namespace pfn {

struct Job {
  std::vector<Napi::ObjectReference> refs;  // inputs and outputs kept alive while async
  Napi::ObjectReference out;

  void keep(const Napi::Value& v) {
    if (v.IsObject()) refs.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  void set_out(const Napi::Value& v) { out = Napi::Persistent(v.As<Napi::Object>()); }
  Napi::Value result(Napi::Env env) const { return out.IsEmpty() ? env.Undefined() : out.Value(); }
};

// How a job runs and where its failure message comes from. CPU jobs: job.launch() and the
// kernels' thread-local pf_last_error. Device jobs (backend.h) bring their own runner.
struct CpuRunner {
  template <class J>
  static pf_status run(J& job) { return job.launch(); }
  template <class J>
  static std::string error(const J&) { return pf_last_error(); }
};

template <class Runner, class J>
Napi::Value run_sync(Napi::Env env, J& job) {
  const pf_status s = Runner::run(job);
  if (s != PF_OK) throw status_error(env, s, Runner::error(job));
  return job.result(env);
}

template <class J, class Runner>
class AsyncJob : public Napi::AsyncWorker {
 public:
  AsyncJob(Napi::Env env, J&& job)
      : Napi::AsyncWorker(env, "personafuse"), job_(std::move(job)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    status_ = Runner::run(job_);
    if (status_ != PF_OK) message_ = Runner::error(job_);  // thread-local: read it on this thread
  }
  void OnOK() override {
    if (status_ != PF_OK) deferred_.Reject(status_error(Env(), status_, message_).Value());
    else deferred_.Resolve(job_.result(Env()));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  J job_;
  Napi::Promise::Deferred deferred_;
  pf_status status_ = PF_OK;
  std::string message_;
};

template <class Runner, class J>
Napi::Value run_async(Napi::Env env, J&& job) {
  auto* worker = new AsyncJob<J, Runner>(env, std::move(job));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace pfn
#endif
