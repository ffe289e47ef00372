/**
 * What happens to a spooled message after a delivery attempt (docs/spool.md, "Retry policy"): a pure
 * function of the attempt's verdict, the message's age and the configuration. The queue manager acts
 * on it; a table of cases in test/unit/retry-policy.test.ts pins every branch.
 */
import type { DeliveryOutcome, UpstreamFailureClass } from '../classify/failure-class.js';

/** The classes that say the account is refused, not the message: the upstream is parked. */
export const ACCOUNT_WIDE_CLASSES: ReadonlySet<string> = new Set<UpstreamFailureClass>(['upstream_auth', 'quota', 'tls']);

export interface RetrySettings {
  /** `spool.retry.first` (ms): the pause after the first failed attempt. */
  readonly first: number;
  /** `spool.retry.max` (ms): the longest pause, and how long an upstream stays parked before one trial. */
  readonly max: number;
  /** `spool.maxAge` (ms): a message older than this expires. */
  readonly maxAge: number;
  /** `spool.unknownOutcome`: what an attempt whose final dot got no answer becomes. */
  readonly unknownOutcome: 'hold' | 'resend';
}

export interface AttemptSummary {
  /** 1 for the message's first attempt. */
  readonly attempt: number;
  readonly outcome: DeliveryOutcome;
  /** The deciding failure's class; null when the attempt delivered. */
  readonly class: string | null;
  /** Recipients still owed after this attempt (refused for now, or never answered). */
  readonly stillPending: number;
  /** Recipients refused for good, on this attempt or before. */
  readonly bounced: number;
  /** When the message was accepted (ms). */
  readonly acceptedAt: number;
  /** When the attempt ended (ms). */
  readonly now: number;
}

export type NextAction =
  /** The message is done: every recipient delivered, or some refused for good and none owed. */
  | { readonly action: 'end'; readonly end: 'delivered' | 'bounced' | 'expired' }
  /** Try again at `at`. `park`: the upstream that answered is parked too (an account-wide class). */
  | { readonly action: 'retry' | 'park'; readonly at: number; readonly possibleDuplicate: boolean }
  /** Keep it for the operator: the upstream may have it (an unknown outcome under `hold`). */
  | { readonly action: 'hold'; readonly reason: string };

/** `random` in [0, 1): the jitter (Math.random by default; tests pass a fixed one). */
export function nextAction(a: AttemptSummary, s: RetrySettings, random: () => number = Math.random): NextAction {
  if (a.stillPending === 0) return { action: 'end', end: a.bounced > 0 ? 'bounced' : 'delivered' };
  const expiresAt = a.acceptedAt + s.maxAge;
  // spool.maxAge holds in every state: not even an unknown outcome outlives it.
  if (a.now >= expiresAt) return { action: 'end', end: 'expired' };
  // Never silently: held for the operator, or sent again and recorded as a possible duplicate.
  if (a.outcome === 'unknown' && s.unknownOutcome === 'hold') {
    return { action: 'hold', reason: 'unknown outcome: the final dot got no answer; the upstream may have the message' };
  }
  const at = Math.min(expiresAt, a.now + backoff(a.attempt, s, random));
  const possibleDuplicate = a.outcome === 'unknown';
  if (a.class !== null && ACCOUNT_WIDE_CLASSES.has(a.class)) return { action: 'park', at, possibleDuplicate };
  return { action: 'retry', at, possibleDuplicate };
}

/**
 * The pause after attempt `n` (1, 2...): min(max, first × 2^(n-1)), times a random factor in
 * [0.5, 1] so messages that failed together do not all come back together.
 */
export function backoff(n: number, s: Pick<RetrySettings, 'first' | 'max'>, random: () => number = Math.random): number {
  const base = Math.min(s.max, s.first * 2 ** Math.min(Math.max(0, n - 1), 52));
  return Math.round(base * (0.5 + 0.5 * random()));
}

/** When the message expires (ms). */
export function expiresAt(acceptedAt: number, s: Pick<RetrySettings, 'maxAge'>): number {
  return acceptedAt + s.maxAge;
}
