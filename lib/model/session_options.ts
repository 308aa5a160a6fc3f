// The onnxruntime session options every decoder session of ours uses (the main thread's and the
// engine worker's alike).
//
// force_spinning_stop: by default onnxruntime's pool threads keep spinning after a run returns,
// taking a core from whatever runs next — our kernels (folding a joining request's mix), the
// router's session, another model's session. Measured in bench/NOTES.md (method, 7): a kernel
// call after an onnxruntime run went from ~46 µs to 19.6 ms with the default. Spinning inside a
// run stays on.
import type * as ort from 'onnxruntime-node';

export function decoderSessionOptions(o: { executionProviders?: string[]; intraOpNumThreads?: number }): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: o.executionProviders ?? ['cpu'],
    graphOptimizationLevel: 'all',
    ...(o.intraOpNumThreads ? { intraOpNumThreads: o.intraOpNumThreads } : {}),
    extra: { session: { force_spinning_stop: '1' } },
  };
}
