// The onnxruntime session options every decoder session of ours uses (the main thread's and the
// engine worker's alike).
//
// force_spinning_stop: by default onnxruntime's pool threads keep spinning after a run returns,
// taking a core from whatever runs next — our kernels (folding a joining request's mix), the
// router's session, another model's session. Measured (bench/README.md, Method): a kernel
// call after an onnxruntime run went from ~46 µs to 19.6 ms with the default. Spinning inside a
// run stays on.
//
// intraOpNumThreads defaults to every core this process may use (lib/cores.ts): onnxruntime's own default came out as one thread on
// our 2-vCPU VM, where a decode step of bench/models/llama-1b-slice then takes 40 ms, not 24 ms.
import * as ort from 'onnxruntime-node';
import { usableCores } from '../cores';
import { inlineModelBytes } from '../onnx/inline_weights';

export interface DecoderSessionConfig { executionProviders?: string[]; intraOpNumThreads?: number; inlineWeights?: boolean }

export function decoderSessionOptions(o: DecoderSessionConfig): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: o.executionProviders ?? ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: o.intraOpNumThreads ?? usableCores(),
    extra: { session: { force_spinning_stop: '1' } },
  };
}

/** A decoder session of `file`; with inlineWeights, its external weights are handed over inline. */
export function openDecoderSession(file: string, o: DecoderSessionConfig): Promise<ort.InferenceSession> {
  return o.inlineWeights
    ? ort.InferenceSession.create(inlineModelBytes(file), decoderSessionOptions(o))
    : ort.InferenceSession.create(file, decoderSessionOptions(o));
}
