// personafuse: persona-adaptive LLM serving for Node.
export * as kernels from './kernels';
export * as reference from './reference';
export { DisposedError } from './errors';
