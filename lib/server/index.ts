// The OpenAI-compatible HTTP server.
export { createServer, startServer } from './server';
export type { ServerOptions, ListenOptions, RunningServer } from './server';
export { resolveServerOptions, LOG_FORMATS } from './config';
export type { LogFormat, OptionNames } from './config';
export { eventLogger, requestLogger } from './logging';
export type { RequestLog } from './logging';
export type { DrainResult } from './drain';
export { METRIC_NAMES } from './metrics';
export { parseChatRequest } from './openai';
