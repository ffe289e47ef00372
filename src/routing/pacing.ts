import type { StopSignal } from '../upstream/deadline.js';

/** Why a message may not start now: the wait would pass its limit, or too many are waiting already. */
export type RateRefusal = 'over-deadline' | 'too-many-waiting' | 'aborted';

export type RateTicket =
  | { readonly ok: true; readonly waitedMs: number }
  | { readonly ok: false; readonly waitedMs: number; readonly refusal: RateRefusal; readonly wouldWaitMs: number };

/** A start slot held for a message: `waitMs` from now; `cancel()` gives it back. */
export type Reservation =
  | { readonly ok: true; readonly waitMs: number; cancel(): void }
  | { readonly ok: false; readonly waitedMs: 0; readonly refusal: RateRefusal; readonly wouldWaitMs: number };

/**
 * The sending rate towards one upstream (`upstreams[].rateLimit`): this instance's own
 * (EgressRateLimiter), or the fleet's through Redis (redis-pacing.ts). The relay engine asks it
 * before each attempt.
 */
export interface SendingRate {
  /** Messages currently waiting for their slot. */
  readonly waiting: number;
  /** Reserves the next start slot if it comes within `limitMs`, then waits for it. Never throws. */
  take(limitMs: number, signal: StopSignal): Promise<RateTicket>;
}

/**
 * The adaptive slow-down towards one upstream after throttling replies (`rateLimit.backoff`): this
 * instance's own (AdaptiveThrottle), or the fleet's through Redis.
 */
export interface Slowdown {
  /** The spacing currently added between messages (0 = none). */
  readonly delayMs: number;
  /** The upstream just answered with a throttling reply. */
  throttled(): void;
  /** The upstream took a message (or gave a verdict on it). */
  succeeded(): void;
  close(): void;
}

/**
 * Waits for a reserved slot (`reservation.waitMs`), counting the waiter in `count`; an abort of
 * `signal` gives the slot back and the ticket `aborted`. Shared by every SendingRate.
 */
export async function waitForSlot(
  reservation: Reservation,
  signal: StopSignal,
  count: { waiting: number },
  clock: { now(): number } = performance,
): Promise<RateTicket> {
  if (!reservation.ok) return reservation;
  if (reservation.waitMs <= 0) return { ok: true, waitedMs: 0 };
  const started = clock.now();
  count.waiting += 1;
  try {
    await sleep(reservation.waitMs, signal);
    return { ok: true, waitedMs: clock.now() - started };
  } catch {
    reservation.cancel();
    return { ok: false, waitedMs: clock.now() - started, refusal: 'aborted', wouldWaitMs: reservation.waitMs };
  } finally {
    count.waiting -= 1;
  }
}

function sleep(ms: number, signal: StopSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.stopped) return reject(signal.reason ?? new Error('stopped'));
    const timer = setTimeout(() => {
      detach();
      resolve();
    }, ms);
    const detach = signal.onStop((reason) => {
      clearTimeout(timer);
      reject(reason);
    });
  });
}
