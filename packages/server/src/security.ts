import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/**
 * Whether an `Authorization` header carries the API key: the scheme in any case (`Bearer`, `bearer`), the key
 * compared in constant time (over digests, so neither the key's length nor its prefix leaks through timing).
 */
export function apiKeyMatches(authorization: string | undefined, apiKey: string): boolean {
  const match = /^bearer[ \t]+(.*)$/i.exec(authorization ?? '');
  const given = match?.[1]?.trim() ?? '';
  return timingSafeEqual(digest(given), digest(apiKey)) && match !== null;
}

/** Whether a listening address is a loopback one (then only loopback host names may address the server). */
export function isLoopbackAddress(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare === '::1' || bare === '::ffff:127.0.0.1';
}

/**
 * Whether a `Host` header names this machine's loopback interface: `localhost` (and `*.localhost`, RFC 6761),
 * 127.0.0.0/8 or `[::1]`, with any port.
 */
export function isLoopbackHost(hostHeader: string | undefined): boolean {
  if (hostHeader === undefined) return false;
  const host = hostHeader.startsWith('[') ? hostHeader.slice(0, hostHeader.indexOf(']') + 1) : hostHeader.replace(/:\d+$/, '');
  const name = host.toLowerCase();
  return name === 'localhost' || name.endsWith('.localhost') || isLoopbackAddress(name);
}

/** Pages from these origins may call a server by default: localhost, 127.0.0.1 and [::1] on any port (as Ollama). */
const localOrigin = /^https?:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/;

/** @fastify/cors's `origin` for `--allowed-origins`: the local default, `*` for any origin, an exact list, or none. */
export function corsOrigin(allowedOrigins: readonly string[] | undefined): boolean | string | Array<string | RegExp> | RegExp {
  if (allowedOrigins === undefined) return localOrigin;
  if (allowedOrigins.length === 0) return false;
  if (allowedOrigins.includes('*')) return '*';
  return [...allowedOrigins];
}
