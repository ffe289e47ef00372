/**
 * What a token source is to the token cache: one request to the identity provider, answered with an
 * access token and when it expires. Each provider's source (microsoft-, google-, generic-endpoint.ts)
 * makes its request through its library over one TokenHttp, and turns any failure into a TokenError
 * from the wire facts that transport kept.
 */
import { tokenError, unusableResponse } from './token-error.js';
import type { TokenHttp } from './token-http.js';

export interface IssuedToken {
  readonly accessToken: string;
  /** When the identity provider said it expires (epoch ms). */
  readonly expiresAt: number;
  /** When it arrived (epoch ms). */
  readonly obtainedAt: number;
}

export interface TokenEndpoint {
  /** The token endpoint, for messages and metrics. */
  readonly url: string;
  /** One token request; rejects with a TokenError. Never called twice at once (token-cache.ts). */
  request(): Promise<IssuedToken>;
}

/**
 * Assumed when a response gives no lifetime (`expires_in` is only RECOMMENDED, RFC 6749 §5.1): short,
 * so a token is renewed well before any real lifetime ends; a token refused earlier is replaced anyway.
 */
export const ASSUMED_LIFETIME_MS = 5 * 60_000;

/** Runs one library call over `http`, turning whatever it throws into a TokenError. */
export async function requestOver<T>(http: TokenHttp, endpoint: string, call: () => Promise<T>): Promise<T> {
  http.forget();
  try {
    return await call();
  } catch (err) {
    throw tokenError(endpoint, http.last, err);
  }
}

/** The token as the cache keeps it; `expiresAt` null = the response said nothing (ASSUMED_LIFETIME_MS). */
export function issued(endpoint: string, accessToken: unknown, expiresAt: number | null, obtainedAt = Date.now()): IssuedToken {
  if (typeof accessToken !== 'string' || accessToken === '') throw unusableResponse(endpoint, 'no access_token');
  if (expiresAt !== null && !Number.isFinite(expiresAt)) throw unusableResponse(endpoint, 'no valid expiry');
  return { accessToken, expiresAt: expiresAt ?? obtainedAt + ASSUMED_LIFETIME_MS, obtainedAt };
}
