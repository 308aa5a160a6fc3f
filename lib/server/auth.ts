// Bearer-token auth for /v1/* (the probes and /metrics stay open: kubelet and Prometheus send no
// key). The key is compared as SHA-256 digests with timingSafeEqual: the digests always have the
// same length, so neither the comparison time nor a length check tells an attacker how much of a
// guess was right.
import { createHash, timingSafeEqual } from 'node:crypto';
import type * as http from 'node:http';

export type Authorizer = (req: http.IncomingMessage) => boolean;

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** A check of `Authorization: Bearer <key>` against the key (the scheme is case-insensitive, RFC 7235). */
export function bearerAuth(key: string): Authorizer {
  const want = digest(key);
  return (req) => {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
    // a missing header is compared too (against the digest of ''), so it takes the same path
    return timingSafeEqual(digest(m?.[1] ?? ''), want) && m !== null;
  };
}
