import type { UpstreamRateLimitConfig } from '../config/types.js';
import type { Slowdown } from './pacing.js';

export interface ThrottleClock {
  now(): number;
}

/**
 * Slows mailtrail down towards an upstream that answered with a throttling reply (SES "Maximum
 * sending rate exceeded", "421 4.7.0 Try again later"...): every message to it then starts at least
 * `delayMs` after the previous one. The first throttling reply sets `backoff.initial`; another one
 * after that delay has passed doubles it, up to `backoff.max` (a burst of concurrent messages that
 * were all refused together counts once). Each message the upstream takes again halves it (at most
 * once per delay period), so throttling that persists slows down fast while occasional throttling
 * settles near `initial`; and without traffic the delay halves every `backoff.decay`. Below
 * `initial` it is gone. Each change is reported through `onChange`.
 */
export class AdaptiveThrottle implements Slowdown {
  readonly upstream: string;
  #backoff: UpstreamRateLimitConfig['backoff'];
  #onChange: (delayMs: number) => void;
  #clock: ThrottleClock;
  #delayMs = 0;
  #raisedAt = Number.NEGATIVE_INFINITY;
  #changedAt = Number.NEGATIVE_INFINITY;
  #decayTimer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(upstream: string, backoff: UpstreamRateLimitConfig['backoff'], onChange: (delayMs: number) => void, clock: ThrottleClock = performance) {
    this.upstream = upstream;
    this.#backoff = backoff;
    this.#onChange = onChange;
    this.#clock = clock;
  }

  /** The spacing currently added between messages to this upstream (0 = none). */
  get delayMs(): number {
    return this.#delayMs;
  }

  /** The upstream just answered with a throttling reply. */
  throttled(): void {
    const { initial, max } = this.#backoff;
    if (initial === 0 || this.#closed) return;
    const now = this.#clock.now();
    if (this.#delayMs > 0 && now - this.#raisedAt < this.#delayMs) return;
    const next = this.#delayMs === 0 ? Math.min(initial, max) : Math.min(max, this.#delayMs * 2);
    this.#raisedAt = now;
    this.#changedAt = now;
    this.#scheduleDecay();
    this.#set(next);
  }

  /**
   * The upstream took a message (or gave a verdict on it): ease off one step. Not within one delay
   * period of the last change, so messages sent before a slow-down cannot undo it at once.
   */
  succeeded(): void {
    if (this.#delayMs === 0 || this.#closed) return;
    const now = this.#clock.now();
    if (now - this.#changedAt < this.#delayMs) return;
    this.#changedAt = now;
    this.#halve();
  }

  close(): void {
    this.#closed = true;
    if (this.#decayTimer !== null) clearTimeout(this.#decayTimer);
    this.#decayTimer = null;
  }

  #scheduleDecay(): void {
    if (this.#decayTimer !== null) clearTimeout(this.#decayTimer);
    this.#decayTimer = setTimeout(() => {
      this.#decayTimer = null;
      if (this.#closed) return;
      this.#halve();
      if (this.#delayMs > 0) this.#scheduleDecay();
    }, this.#backoff.decay);
    this.#decayTimer.unref();
  }

  #halve(): void {
    const half = Math.round(this.#delayMs / 2);
    this.#set(half < this.#backoff.initial ? 0 : half);
  }

  #set(delayMs: number): void {
    if (delayMs === this.#delayMs) return;
    this.#delayMs = delayMs;
    this.#onChange(delayMs);
  }
}
