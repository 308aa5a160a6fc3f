// Limits on what one request may make the server do before it reaches the model:
//   - the body: at most maxBodyBytes. A larger body is read to its end and thrown away, then
//     answered 413: answering while the client still sends (and closing) makes most clients see
//     a connection reset rather than the 413, and retry. Past DISCARD_BYTES more it is cut anyway.
//   - the prompt: tokenizing and templating run on the main thread (~1.7 s for a 1 MiB prompt),
//     so text far beyond the model's context (more than CHARS_PER_TOKEN characters per token of
//     it) is refused before it is tokenized; anything shorter the engine measures exactly.
import type * as http from 'node:http';
import { ApiError, bodyTooLarge } from './api_error';

/** What an oversized body may still send (and we read and drop) before it is cut off. */
export const DISCARD_BYTES = 32 << 20;

/** No tokenizer packs this many characters into one token on average (English runs ~4). */
export const CHARS_PER_TOKEN = 16;

/** The body as text, or ApiError 413 once it is all read (or cut past DISCARD_BYTES). */
export function readBody(req: http.IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > max + DISCARD_BYTES) {
      // too big to be worth reading: answer now and close (Node drops the rest of the body)
      const err = bodyTooLarge(max);
      reject(new ApiError(err.status, err.message, err.type, err.param, err.code, { connection: 'close' }));
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= max) parts.push(c);
      else if (size > max + DISCARD_BYTES) {
        const err = bodyTooLarge(max);
        reject(new ApiError(err.status, err.message, err.type, err.param, err.code, { connection: 'close' }));
        req.pause();
      }
    });
    req.on('end', () => (size > max ? reject(bodyTooLarge(max)) : resolve(Buffer.concat(parts).toString('utf8'))));
    req.on('error', reject);
  });
}

/** 400 naming `messages` when their text cannot fit the model's context whatever it tokenizes to. */
export function checkPromptSize(messages: readonly { content: string }[], maxContext: number | undefined): void {
  if (maxContext === undefined || maxContext <= 0) return;
  const limit = maxContext * CHARS_PER_TOKEN;
  let chars = 0;
  for (const m of messages) chars += m.content.length;
  if (chars > limit) {
    throw new ApiError(400,
      `Expected at most ${limit} characters of message text (${CHARS_PER_TOKEN} per token of the model's ${maxContext}-token context) for messages but received ${chars} characters`,
      'invalid_request_error', 'messages', 'context_length_exceeded');
  }
}
