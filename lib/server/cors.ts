// Opt-in CORS (--cors <origin>): browsers may call the API from the listed origins ('*': any).
// Every response to an allowed origin carries Access-Control-Allow-Origin; an OPTIONS preflight
// is answered 204 with the methods and the headers asked for (Authorization among them, which
// the preflight itself never carries, so it is answered before the API-key check).
import type * as http from 'node:http';

const METHODS = 'GET, POST, OPTIONS';
/** how long a browser may cache a preflight answer, in seconds */
const MAX_AGE = '600';

export interface Cors {
  /** sets the CORS headers on res when the request's origin is allowed */
  apply(req: http.IncomingMessage, res: http.ServerResponse): void;
  /** answers a preflight; false when this is not one (CORS off, or not OPTIONS) */
  preflight(req: http.IncomingMessage, res: http.ServerResponse): boolean;
}

export function cors(origins: readonly string[]): Cors {
  const any = origins.includes('*');
  const allowed = (origin: string | undefined): string | undefined => {
    if (any) return '*';
    return origin !== undefined && origins.includes(origin) ? origin : undefined;
  };
  const apply = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (origins.length === 0) return;
    const origin = allowed(req.headers.origin);
    // caches must not hand one origin's answer to another
    if (!any) res.setHeader('vary', 'Origin');
    if (origin === undefined) return;
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('access-control-expose-headers', 'x-request-id, retry-after');
  };
  return {
    apply,
    preflight(req, res) {
      if (origins.length === 0 || req.method !== 'OPTIONS') return false;
      apply(req, res);
      res.setHeader('access-control-allow-methods', METHODS);
      res.setHeader('access-control-allow-headers', req.headers['access-control-request-headers'] ?? 'authorization, content-type');
      res.setHeader('access-control-max-age', MAX_AGE);
      res.writeHead(204).end();
      return true;
    },
  };
}
