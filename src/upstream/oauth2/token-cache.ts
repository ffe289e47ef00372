/**
 * The access token of one upstream entry (one mailbox at one identity provider), shared by every pooled
 * connection and every health probe of that entry (docs/oauth2.md, "The token cache"):
 *
 * - fetched once, on first use, and reused until it nears its end;
 * - renewed in the background after RENEW_AT of its lifetime (80 %), a share and not a fixed margin, so
 *   a token of a few seconds works as well as one of an hour: a library's 5-minute renewal offset would
 *   fetch a token per message once the lifetime is shorter than the offset;
 * - single-flight: however many callers need a token at once, one request is in flight, and every caller
 *   shares its answer;
 * - a failed request is answered to the callers that arrive within FAILURE_HOLD_MS after it, without a
 *   new request: an identity provider that is down is not asked once per message;
 * - a token the mail server refused (XOAUTH2 334 or 535) is replaced once by a new request; a token
 *   that was itself such a replacement and is refused in turn is not replaced again for REPLACE_COOLDOWN_MS
 *   (a mailbox with SMTP AUTH off refuses every token: asking for more would only load the provider).
 */
import type { StopSignal } from '../deadline.js';
import type { IssuedToken, TokenEndpoint } from './token-endpoint.js';
import { TokenError } from './token-error.js';
import type { TokenFetch, TokenFetchTrigger } from './token-events.js';

/** Renew in the background once this share of the lifetime has passed. */
export const RENEW_AT = 0.8;
/** A token is not handed out in the last part of its life (clock skew, the time the AUTH takes): 10 %, at most 30 s. */
const END_MARGIN_SHARE = 0.1;
const END_MARGIN_MAX_MS = 30_000;
export const FAILURE_HOLD_MS = 1_000;
export const REPLACE_COOLDOWN_MS = 60_000;
/** Retries of a failed background renewal: at most this far apart, while the current token lasts. */
const RENEW_RETRY_MAX_MS = 30_000;
const RENEW_RETRY_MIN_MS = 1_000;

export interface TokenCacheOptions {
  readonly upstream: string;
  /** Told of every request and its outcome (metrics, the log). */
  readonly onFetch: (fetch: TokenFetch) => void;
}

export class TokenCache {
  readonly upstream: string;
  #endpoint: TokenEndpoint;
  #onFetch: (fetch: TokenFetch) => void;
  #current: IssuedToken | null = null;
  /** The current token replaced one the server refused: when, so a refusal of it in turn is not chased. */
  #replacedRefusedAt: number | null = null;
  #inFlight: Promise<IssuedToken> | null = null;
  #lastFailure: { readonly error: TokenError; readonly at: number } | null = null;
  #renewTimer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(endpoint: TokenEndpoint, options: TokenCacheOptions) {
    this.#endpoint = endpoint;
    this.upstream = options.upstream;
    this.#onFetch = options.onFetch;
  }

  /** The token endpoint's URL, for messages. */
  get endpoint(): string {
    return this.#endpoint.url;
  }

  /** When the cached token expires (epoch ms), or null when there is none. */
  get expiresAt(): number | null {
    return this.#current?.expiresAt ?? null;
  }

  /**
   * A token to log in with: the cached one while it is usable, else the answer of the one request in
   * flight (started here if none is). Rejects with a TokenError, or with `signal`'s reason when the
   * caller stops waiting (the request goes on for the others).
   */
  token(signal?: StopSignal): Promise<string> {
    const now = Date.now();
    if (this.#current !== null && usable(this.#current, now)) return Promise.resolve(this.#current.accessToken);
    const held = this.#lastFailure;
    if (this.#inFlight === null && held !== null && now - held.at < FAILURE_HOLD_MS) return Promise.reject(held.error);
    return waitFor(this.#fetch(this.#current === null ? 'first' : 'expired'), signal).then((t) => t.accessToken);
  }

  /**
   * The mail server refused `refused`: a new token to try once more, or null when another would not
   * help (see REPLACE_COOLDOWN_MS). A token already replaced by another caller is answered with its
   * successor at once.
   */
  async replace(refused: string, signal?: StopSignal): Promise<string | null> {
    const current = this.#current;
    if (current !== null && current.accessToken !== refused && usable(current, Date.now())) return current.accessToken;
    if (this.#inFlight !== null) return (await waitFor(this.#inFlight, signal)).accessToken;
    const now = Date.now();
    if (current?.accessToken === refused && this.#replacedRefusedAt !== null && now - this.#replacedRefusedAt < REPLACE_COOLDOWN_MS) return null;
    if (current?.accessToken === refused) this.#current = null;
    const fresh = await waitFor(this.#fetch('refused'), signal);
    this.#replacedRefusedAt = Date.now();
    return fresh.accessToken;
  }

  /** Stops the background renewal; later calls still work, without it. */
  close(): void {
    this.#closed = true;
    if (this.#renewTimer) clearTimeout(this.#renewTimer);
    this.#renewTimer = null;
  }

  /** The one request in flight, started if none is. */
  #fetch(trigger: TokenFetchTrigger): Promise<IssuedToken> {
    if (this.#inFlight !== null) return this.#inFlight;
    const started = performance.now();
    const request = this.#endpoint.request().then(
      (token) => {
        this.#inFlight = null;
        this.#current = token;
        this.#replacedRefusedAt = null;
        this.#lastFailure = null;
        this.#scheduleRenewal(token);
        this.#onFetch({ upstream: this.upstream, ok: true, trigger, ms: performance.now() - started, expiresAt: token.expiresAt, error: null });
        return token;
      },
      (err: unknown) => {
        this.#inFlight = null;
        const error =
          err instanceof TokenError
            ? err
            : new TokenError(`token request to ${this.#endpoint.url} failed (${(err as Error)?.name ?? 'error'})`, 'invalid_token_response', null);
        this.#lastFailure = { error, at: Date.now() };
        this.#onFetch({ upstream: this.upstream, ok: false, trigger, ms: performance.now() - started, expiresAt: this.expiresAt, error });
        throw error;
      },
    );
    // Callers may all have stopped waiting; the failure is still kept and published above.
    request.catch(() => undefined);
    this.#inFlight = request;
    return request;
  }

  #scheduleRenewal(token: IssuedToken): void {
    const lifetime = Math.max(0, token.expiresAt - token.obtainedAt);
    this.#renewIn(token.obtainedAt + lifetime * RENEW_AT - Date.now());
  }

  #renewIn(ms: number): void {
    if (this.#closed) return;
    if (this.#renewTimer) clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => this.#renew(), Math.max(0, ms));
    // A token renewal never keeps the process alive on its own.
    this.#renewTimer.unref();
  }

  #renew(): void {
    this.#renewTimer = null;
    if (this.#closed) return;
    this.#fetch('renew').catch(() => {
      // Try again while the current token lasts; once it is gone, the next caller asks (token()).
      const current = this.#current;
      if (current === null || !usable(current, Date.now())) return;
      const left = usableUntil(current) - Date.now();
      this.#renewIn(Math.min(RENEW_RETRY_MAX_MS, Math.max(RENEW_RETRY_MIN_MS, left / 2)));
    });
  }
}

function usableUntil(token: IssuedToken): number {
  const lifetime = Math.max(0, token.expiresAt - token.obtainedAt);
  return token.expiresAt - Math.min(END_MARGIN_MAX_MS, lifetime * END_MARGIN_SHARE);
}

function usable(token: IssuedToken, now: number): boolean {
  return now < usableUntil(token);
}

/** `promise`, or `signal`'s reason as soon as it stops. */
function waitFor<T>(promise: Promise<T>, signal: StopSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.stopped) return Promise.reject(signal.reason!);
  return new Promise<T>((resolve, reject) => {
    const detach = signal.onStop((reason) => reject(reason));
    promise.then(
      (value) => {
        detach();
        resolve(value);
      },
      (err: Error) => {
        detach();
        reject(err);
      },
    );
  });
}
