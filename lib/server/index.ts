// The OpenAI-compatible HTTP server.
export { createServer, startServer } from './server';
export type { ServerOptions, RunningServer } from './server';
export { parseChatRequest } from './openai';
