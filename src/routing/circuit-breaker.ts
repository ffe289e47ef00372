import type { UpstreamBreakerConfig } from '../config/types.js';
import { isInfrastructureClass } from '../classify/failure-class.js';
import type { Verdict } from '../classify/upstream-facts.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

/**
 * What one attempt says about the upstream's health. `neutral`: nothing either way (our own deadline
 * or shutdown ended it, a throttling or credential refusal: the upstream is up but says no to us).
 */
export type BreakerEvidence = 'success' | 'failure' | 'neutral';

/** `pass`: send as usual. `probe`: the one attempt that decides a half-open breaker. `skip`: do not connect. */
export type BreakerAdmission = 'pass' | 'probe' | 'skip';

export interface BreakerTransition {
  /** The state before (half-open before a failed probe's `open`). */
  readonly from: BreakerState;
  readonly state: BreakerState;
  readonly reason: string;
}

/**
 * One upstream's circuit breaker as the relay engine and the probes see it: this instance's own
 * (CircuitBreaker), or one whose openings, closings and half-open trial the fleet shares through
 * Redis (shared-breaker.ts). `admit` may have to ask Redis (for the fleet's one half-open trial).
 */
export interface UpstreamBreaker {
  readonly state: BreakerState;
  /** Milliseconds until an open breaker turns half-open; 0 when not open. */
  readonly retryInMs: number;
  /** Asked before each attempt. A `probe` admission must be followed by `record(..., true)`. */
  admit(): BreakerAdmission | Promise<BreakerAdmission>;
  record(evidence: BreakerEvidence, probe: boolean, why?: string): void;
  recordProbe(ok: boolean, why?: string): void;
  close(): void;
}

export interface BreakerClock {
  now(): number;
}

/** Ten buckets per window: a failure rate over a sliding window in constant memory, whatever the traffic. */
const WINDOW_BUCKETS = 10;

interface Bucket {
  start: number;
  ok: number;
  failed: number;
}

/**
 * One upstream's circuit breaker. Closed: every message may try it. After `failures` consecutive
 * infrastructure failures (or, with a `window`, a failure rate of `failureRate` over it) it opens:
 * the upstream is skipped without a connection attempt, so a dead provider costs no timeouts. After
 * `cooldown` it is half-open: exactly one attempt (a real message, or the health probe through
 * `recordProbe`) decides between closed and open again. A null config never skips.
 *
 * Every state change is reported through `onChange` (metrics, readiness, alert records subscribe).
 */
export class CircuitBreaker implements UpstreamBreaker {
  readonly upstream: string;
  #config: UpstreamBreakerConfig | null;
  #onChange: (transition: BreakerTransition) => void;
  #clock: BreakerClock;
  #state: BreakerState = 'closed';
  #consecutive = 0;
  #buckets: Bucket[] = [];
  #openedAt = 0;
  #cooldownTimer: NodeJS.Timeout | null = null;
  #probeInFlight = false;
  #closed = false;

  constructor(upstream: string, config: UpstreamBreakerConfig | null, onChange: (transition: BreakerTransition) => void, clock: BreakerClock = performance) {
    this.upstream = upstream;
    this.#config = config;
    this.#onChange = onChange;
    this.#clock = clock;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Milliseconds until an open breaker turns half-open; 0 when not open. */
  get retryInMs(): number {
    if (this.#state !== 'open' || this.#config === null) return 0;
    return Math.max(0, Math.round(this.#openedAt + this.#config.cooldown - this.#clock.now()));
  }

  /** Asked before each attempt. A `probe` admission must be followed by `record(..., true)`. */
  admit(): BreakerAdmission {
    if (this.#state === 'closed') return 'pass';
    if (this.#state === 'open' || this.#probeInFlight) return 'skip';
    this.#probeInFlight = true;
    return 'probe';
  }

  /** The evidence of one finished attempt; `why` names it for the transition reason ("connect ECONNREFUSED"). */
  record(evidence: BreakerEvidence, probe: boolean, why = ''): void {
    if (this.#config === null || this.#closed) return;
    if (probe) return this.#probeResult(evidence, why);
    // Attempts that started before the breaker opened prove nothing new once it has.
    if (this.#state !== 'closed' || evidence === 'neutral') return;
    this.#count(evidence === 'failure');
    const opening = this.#openingReason(why);
    if (opening !== null) this.#open(opening);
  }

  /**
   * The health probe's verdict on this upstream. Half-open: it decides, like a real message would.
   * Closed: it counts like any attempt. Open during the cooldown: ignored (the cooldown is the point).
   */
  recordProbe(ok: boolean, why = ''): void {
    if (this.#config === null || this.#closed) return;
    if (this.#state === 'half-open') return this.#decide(ok, why ? `health probe: ${why}` : 'health probe');
    if (this.#state === 'closed') this.record(ok ? 'success' : 'failure', false, why ? `health probe: ${why}` : 'health probe');
  }

  /**
   * Takes on a state another instance of the fleet decided (shared-breaker.ts): `open` for the
   * `cooldownMs` left of that instance's cooldown, or `closed` after its successful trial. The
   * change is reported through `onChange` like this breaker's own.
   */
  adopt(state: 'open' | 'closed', reason: string, cooldownMs = 0): void {
    if (this.#config === null || this.#closed) return;
    this.#probeInFlight = false;
    this.#reset();
    if (state === 'closed') {
      this.#clearTimer();
      this.#transition('closed', reason);
      return;
    }
    const left = Math.max(0, Math.min(cooldownMs, this.#config.cooldown));
    this.#startCooldown(left, this.#config.cooldown - left);
    this.#transition('open', reason);
  }

  /** A `probe` admission that will not be used after all (the fleet's trial went to another instance). */
  withdrawProbe(): void {
    this.#probeInFlight = false;
  }

  /** Stops the cooldown timer (shutdown). */
  close(): void {
    this.#closed = true;
    this.#clearTimer();
  }

  #probeResult(evidence: BreakerEvidence, why: string): void {
    // The health probe may already have decided while this message was on its way.
    if (this.#state !== 'half-open' || !this.#probeInFlight) return;
    this.#probeInFlight = false;
    if (evidence !== 'neutral') this.#decide(evidence === 'success', why);
  }

  #decide(ok: boolean, why: string): void {
    this.#probeInFlight = false;
    if (ok) {
      this.#reset();
      this.#transition('closed', why ? `half-open trial succeeded (${why})` : 'half-open trial succeeded');
    } else {
      this.#open(why ? `half-open trial failed: ${why}` : 'half-open trial failed');
    }
  }

  #open(reason: string): void {
    this.#startCooldown(this.#config!.cooldown, 0);
    this.#transition('open', reason);
  }

  /** Half-open in `ms`; `elapsed` of the cooldown already passed (on another instance). */
  #startCooldown(ms: number, elapsed: number): void {
    const cooldown = this.#config!.cooldown;
    this.#openedAt = this.#clock.now() - elapsed;
    this.#clearTimer();
    this.#cooldownTimer = setTimeout(() => {
      this.#cooldownTimer = null;
      if (this.#closed) return;
      this.#transition('half-open', `cooldown of ${cooldown} ms elapsed`);
    }, ms);
    this.#cooldownTimer.unref();
  }

  #transition(state: BreakerState, reason: string): void {
    const from = this.#state;
    this.#state = state;
    if (from !== state) this.#onChange({ from, state, reason });
  }

  #reset(): void {
    this.#consecutive = 0;
    this.#buckets = [];
  }

  #count(failed: boolean): void {
    this.#consecutive = failed ? this.#consecutive + 1 : 0;
    const window = this.#config!.window;
    if (window === null) return;
    const now = this.#clock.now();
    const width = window / WINDOW_BUCKETS;
    this.#buckets = this.#buckets.filter((b) => b.start > now - window);
    let current = this.#buckets.at(-1);
    if (current === undefined || current.start + width <= now) {
      current = { start: now, ok: 0, failed: 0 };
      this.#buckets.push(current);
    }
    if (failed) current.failed += 1;
    else current.ok += 1;
  }

  #openingReason(why: string): string | null {
    const config = this.#config!;
    const last = why ? ` (last: ${why})` : '';
    if (this.#consecutive >= config.failures) {
      return `${this.#consecutive} consecutive infrastructure failures${last}`;
    }
    if (config.window === null) return null;
    const failed = this.#buckets.reduce((n, b) => n + b.failed, 0);
    const total = this.#buckets.reduce((n, b) => n + b.ok + b.failed, 0);
    if (failed < config.failures || failed / total < config.failureRate) return null;
    return `${failed} of ${total} attempts failed within ${config.window} ms${last}`;
  }

  #clearTimer(): void {
    if (this.#cooldownTimer !== null) clearTimeout(this.#cooldownTimer);
    this.#cooldownTimer = null;
  }
}

/**
 * What a classified attempt says about the upstream's health. Only infrastructure classes count as
 * failures; any verdict the upstream gave on the message or recipients shows it alive. Throttling,
 * quota and credential refusals are neutral: the upstream is up, and the adaptive throttle or the
 * operator deals with them. An attempt cut short by our own deadline or shutdown (`endedLocally`)
 * proves nothing about the upstream.
 */
export function breakerEvidence(verdict: Verdict, endedLocally: boolean): BreakerEvidence {
  if (verdict.failure === null || verdict.outcome === 'partial') return 'success';
  if (endedLocally || verdict.outcome === 'aborted') return 'neutral';
  // A full pool says the upstream is busy (or hung: its own timeouts will tell), not that it is down.
  if (verdict.failure.rule === 'pool-busy') return 'neutral';
  const klass = verdict.failure.class;
  if (isInfrastructureClass(klass)) return 'failure';
  // The connection dropped after the final dot: each such message costs a possible duplicate. After
  // N of them in a row, sending the next messages elsewhere is safe (they are new) and saves those.
  if (klass === 'unknown_outcome') return 'failure';
  if (klass === 'throttled' || klass === 'quota' || klass === 'upstream_auth' || klass === 'internal') {
    return 'neutral';
  }
  return 'success';
}
