import type { UpstreamRateLimitConfig } from '../config/types.js';
import type { StopSignal } from '../upstream/deadline.js';
import { waitForSlot, type RateTicket, type Reservation, type SendingRate, type Slowdown } from './pacing.js';

export interface RateClock {
  now(): number;
}

/**
 * Paces messages towards one upstream: at most `messagesPerSecond` (after a `burst` of back-to-back
 * starts), and never faster than the adaptive throttle allows. A token bucket kept as a "theoretical
 * arrival time" (GCRA): each message reserves the next start slot, so waiters are served in order
 * without a queue to manage.
 *
 * Never an unbounded queue: a message whose slot lies beyond what it may wait (its relay deadline,
 * or `maxWait`) is refused at once without reserving anything, and at most `maxWaiters` messages
 * wait at any time. Both bounds also cap memory: each waiter holds one buffered message.
 */
export class EgressRateLimiter implements SendingRate {
  readonly upstream: string;
  #baseInterval: number;
  #tolerance: number;
  #maxWait: number | null;
  #maxWaiters: number;
  #throttle: Slowdown | null;
  #clock: RateClock;
  /** When the next message may start, before the burst tolerance. */
  #tat = Number.NEGATIVE_INFINITY;
  #count = { waiting: 0 };

  constructor(
    upstream: string,
    config: Pick<UpstreamRateLimitConfig, 'messagesPerSecond' | 'burst' | 'maxWait'>,
    maxWaiters: number,
    throttle: Slowdown | null,
    clock: RateClock = performance,
  ) {
    this.upstream = upstream;
    this.#baseInterval = config.messagesPerSecond === null ? 0 : 1000 / config.messagesPerSecond;
    this.#tolerance = (config.burst - 1) * this.#baseInterval;
    this.#maxWait = config.maxWait;
    this.#maxWaiters = maxWaiters;
    this.#throttle = throttle;
    this.#clock = clock;
  }

  /** Messages currently waiting for their slot. */
  get waiting(): number {
    return this.#count.waiting;
  }

  /**
   * The start of the last slot given, on this limiter's clock (-Infinity before the first); with a
   * slow-down in force it may lie a little later than that start.
   */
  get lastStart(): number {
    return this.#tat - this.#baseInterval;
  }

  /**
   * A slot starting at `start` was given elsewhere (the fleet's pacing in Redis, for this instance):
   * the next one here comes a full interval after it, so a handover from the fleet's pacing to this
   * one adds no burst on top of the slots already given (docs/fleet.md, "When Redis is down or slow").
   */
  continueAfter(start: number): void {
    this.#tat = Math.max(this.#tat, start + this.#baseInterval);
  }

  /**
   * Reserves the next start slot if it comes within `limitMs` (and `maxWait`), then waits for it.
   * Never throws; an abort of `signal` while waiting gives `aborted`.
   */
  async take(limitMs: number, signal: StopSignal): Promise<RateTicket> {
    return waitForSlot(this.reserve(limitMs), signal, this.#count, this.#clock);
  }

  /** The bookkeeping of `take` without the waiting; `cancel()` gives an unused slot back. */
  reserve(limitMs: number): Reservation {
    const interval = Math.max(this.#baseInterval, this.#throttle?.delayMs ?? 0);
    if (interval === 0) return { ok: true, waitMs: 0, cancel: () => undefined };
    const now = this.#clock.now();
    // GCRA: the message may start once `now` reaches TAT minus the burst tolerance. The tolerance is
    // the fixed rate's; an adaptive slow-down spaces every message, burst or not.
    const tolerance = interval === this.#baseInterval ? this.#tolerance : 0;
    const before = this.#tat;
    const start = Math.max(now, before - tolerance);
    const wait = start - now;
    const limit = Math.min(limitMs, this.#maxWait ?? Number.POSITIVE_INFINITY);
    if (wait > limit) return { ok: false, waitedMs: 0, refusal: 'over-deadline', wouldWaitMs: Math.round(wait) };
    if (wait > 0 && this.#count.waiting >= this.#maxWaiters) {
      return { ok: false, waitedMs: 0, refusal: 'too-many-waiting', wouldWaitMs: Math.round(wait) };
    }
    const next = Math.max(before, start) + interval;
    this.#tat = next;
    return {
      ok: true,
      waitMs: wait,
      // Give the slot back if nobody reserved after it; otherwise it is simply lost (a small undershoot).
      cancel: () => {
        if (this.#tat === next) this.#tat = before;
      },
    };
  }
}
