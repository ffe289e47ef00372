/**
 * What the console shows of each OAuth2 upstream's token (docs/oauth2.md, docs/api.md "Upstreams"):
 * whether a usable one is cached, until when, and how the last request to the identity provider went.
 * Learnt from the token caches' `upstream-token` events, the same ones the metrics count; the token
 * itself never reaches the bus, so it cannot reach a page.
 */
import type { RelayBus } from '../observe/relay-events.js';
import type { TokenFetch, TokenFetchTrigger } from '../upstream/oauth2/token-events.js';

/**
 * `none`: not asked for yet (the first message or health probe asks); `valid`: cached and not expired;
 * `renewal_failing`: still valid, but the last request failed (mail goes on until it expires);
 * `failing`: no usable token, the last request failed (mail to this upstream gets 451);
 * `expired`: the cached one expired and none was asked for since.
 */
export type TokenStateName = 'none' | 'valid' | 'renewal_failing' | 'failing' | 'expired';

export interface TokenView {
  readonly state: TokenStateName;
  /** When the cached token expires (ISO time); null when none is cached. */
  readonly expiresAt: string | null;
  /** The last request to the identity provider; null before the first. */
  readonly lastRequest: {
    readonly at: string;
    readonly ok: boolean;
    readonly trigger: TokenFetchTrigger;
    readonly ms: number;
    /** The identity provider's error code (e.g. `invalid_client AADSTS7000215`) and its words; never a secret. */
    readonly error: { readonly code: string; readonly message: string } | null;
  } | null;
}

export class TokenStates {
  readonly #oauth2: ReadonlySet<string>;
  readonly #last = new Map<string, { readonly fetch: TokenFetch; readonly at: number }>();
  readonly #unsubscribe: () => void;

  /** `oauth2Upstreams`: the upstreams that log in with OAuth2; the others have no token to show. */
  constructor(bus: RelayBus, oauth2Upstreams: readonly string[]) {
    this.#oauth2 = new Set(oauth2Upstreams);
    this.#unsubscribe = bus.subscribe('upstream-token', (fetch) => this.#last.set(fetch.upstream, { fetch, at: Date.now() }));
  }

  /** The token state of `upstream`; null when it logs in with a password (or not at all). */
  view(upstream: string, now = Date.now()): TokenView | null {
    if (!this.#oauth2.has(upstream)) return null;
    const last = this.#last.get(upstream);
    if (last === undefined) return { state: 'none', expiresAt: null, lastRequest: null };
    const { fetch, at } = last;
    const cached = fetch.expiresAt !== null && fetch.expiresAt > now;
    const state: TokenStateName = fetch.ok ? (cached ? 'valid' : 'expired') : cached ? 'renewal_failing' : 'failing';
    return {
      state,
      expiresAt: fetch.expiresAt === null ? null : new Date(fetch.expiresAt).toISOString(),
      lastRequest: {
        at: new Date(at).toISOString(),
        ok: fetch.ok,
        trigger: fetch.trigger,
        ms: Math.round(fetch.ms),
        error: fetch.error === null ? null : { code: fetch.error.originalCode, message: fetch.error.message },
      },
    };
  }

  close(): void {
    this.#unsubscribe();
  }
}
