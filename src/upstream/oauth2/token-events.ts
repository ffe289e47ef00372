import type { TokenError } from './token-error.js';

/**
 * Why a token was asked for: `first` (none yet), `renew` (the background renewal at 80 % of the
 * lifetime), `expired` (a caller found none usable: no renewal had succeeded in time), `refused` (the
 * mail server refused the token in use).
 */
export type TokenFetchTrigger = 'first' | 'renew' | 'expired' | 'refused';

/** One token request and its outcome, published on the bus as `upstream-token`. */
export interface TokenFetch {
  readonly upstream: string;
  readonly ok: boolean;
  readonly trigger: TokenFetchTrigger;
  readonly ms: number;
  /** When the cached token expires after this request (epoch ms); null when there is none. */
  readonly expiresAt: number | null;
  /** Why it failed (its message names the identity provider, never a secret); null when it succeeded. */
  readonly error: TokenError | null;
}

/** What the OAuth2 token caches publish. */
export interface TokenEvents {
  'upstream-token': [TokenFetch];
}
