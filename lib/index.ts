// personafuse: persona-adaptive LLM serving for Node.
export * as kernels from './kernels';
export * as reference from './reference';
export * as adapters from './adapters';
export { loadPeftAdapter, buildAdapterBank, readSafetensors } from './adapters';
export { PersonaModel } from './model/persona_model';
export { mergeModel } from './model/merge_model';
export { injectedModel } from './onnx/cache';
export { DisposedError } from './errors';
export type { PersonaModelOptions, ForwardOptions, LoraLayout } from './model/persona_model';
export type { GenerateOptions } from './engine/options';
export type { GenerateResult, StreamEvent } from './engine/engine';
export type { FinishReason } from './engine/batcher';
export type { ChatMessage } from './decoder/text_codec';
export * as router from './router';
export { PersonaRouter, bigFiveMix, BIG_FIVE } from './router';
export type { BigFiveProfile, Persona, RouteResult, RouterConfig } from './router';
export { createServer, startServer } from './server';
export type { ServerOptions, RunningServer } from './server';
