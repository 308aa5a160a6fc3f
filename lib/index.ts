// personafuse: persona-adaptive LLM serving for Node.
export * as kernels from './kernels';
export * as reference from './reference';
export * as adapters from './adapters';
export { loadPeftAdapter, buildAdapterBank, readSafetensors } from './adapters';
export { PersonaModel } from './model/persona_model';
export { mergeModel } from './model/merge_model';
export { injectedModel } from './onnx/cache';
export { DisposedError } from './errors';
