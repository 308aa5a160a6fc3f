// Errors the server answers with, in OpenAI's error shape:
//   { error: { message, type, param, code } }
// with their HTTP status and any headers they need (Retry-After, WWW-Authenticate). Every fixed
// answer is built here, so the wording is the same wherever it is sent. The openai clients raise
// by status (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 429
// RateLimitError, ...) and retry 408, 429 and 5xx by default.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get body(): unknown {
    return errorBody(this.message, this.type, this.param, this.code);
  }
}

export function errorBody(message: string, type: string, param: string | null = null, code: string | null = null): unknown {
  return { error: { message, type, param, code } };
}

/** 400 for a field the API has and this server does not implement. */
export function unsupportedField(param: string, why: string): ApiError {
  return new ApiError(400, `${param} is not supported by this server: ${why}`, 'invalid_request_error', param, 'unsupported_parameter');
}

export function bodyTooLarge(maxBytes: number): ApiError {
  return new ApiError(413, `The request body is over ${maxBytes} bytes`, 'invalid_request_error', null, 'request_too_large');
}

export function invalidJson(detail: string): ApiError {
  return new ApiError(400, `The request body is not valid JSON: ${detail}`);
}

export function modelNotFound(model: string): ApiError {
  return new ApiError(404, `The model '${model}' does not exist (GET /v1/models lists the models served)`, 'invalid_request_error', 'model', 'model_not_found');
}

/** OpenAI's rate-limit answer: type 'requests', code 'rate_limit_exceeded'. */
export function tooManyRequests(admitted: number, retryAfterSeconds: number): ApiError {
  return new ApiError(429, `The server is at capacity (${admitted} requests running or queued); retry after ${retryAfterSeconds} s`,
    'requests', null, 'rate_limit_exceeded', { 'retry-after': String(retryAfterSeconds) });
}

export function unauthorized(): ApiError {
  return new ApiError(401, 'Missing or incorrect API key: send the header Authorization: Bearer <key>', 'invalid_request_error', null, 'invalid_api_key',
    { 'www-authenticate': 'Bearer' });
}

/** New requests while the server drains (it is shutting down): the client should go elsewhere. */
export function draining(): ApiError {
  return new ApiError(503, 'The server is shutting down and takes no new requests', 'server_error', null, 'server_shutting_down', { connection: 'close' });
}

/** A generation cut at --request-timeout. 504, not 408: the client sent its request in time, the
 *  server did not answer in time (408 means the client was too slow to send). */
export function timedOut(timeoutMs: number): ApiError {
  return new ApiError(504, `The request ran past the server's limit of ${timeoutMs / 1000} s and was stopped`, 'server_error', null, 'request_timeout');
}

/** In-flight requests the drain deadline cut. */
export function cutByShutdown(): ApiError {
  return new ApiError(503, 'The server shut down before the request finished', 'server_error', null, 'server_shutting_down');
}

export function notFound(method: string, path: string): ApiError {
  return new ApiError(404, `No route ${method} ${path}`, 'invalid_request_error', null, 'not_found');
}

export function methodNotAllowed(method: string, path: string, allowed: readonly string[]): ApiError {
  return new ApiError(405, `Method ${method} is not allowed on ${path}`, 'invalid_request_error', null, 'method_not_allowed', { allow: allowed.join(', ') });
}
