/**
 * The relay's own parts built one by one, as the composition root (src/app.ts) builds them, for tests
 * of a single part: pools, stop signals, upstream channels. Everything made through one `RelayParts`
 * is released by its `close()` (pools closed, timers cleared), so a test file calls it in afterEach.
 *
 * @example
 * const parts = new RelayParts();
 * const pool = parts.pool(upstreamConfig({ port: upstream.port }));
 * const lease = await pool.acquire(parts.signal());
 * // ...
 * parts.close();
 */
import type { UpstreamConfig } from '../../src/config/types.js';
import { AdaptiveThrottle } from '../../src/routing/adaptive-throttle.js';
import { CircuitBreaker, type BreakerTransition } from '../../src/routing/circuit-breaker.js';
import { EgressRateLimiter } from '../../src/routing/rate-limiter.js';
import type { UpstreamChannel } from '../../src/routing/router.js';
import { ConnectionPool } from '../../src/upstream/connection-pool.js';
import { Deadline, stopReason } from '../../src/upstream/deadline.js';

const EHLO_NAME = 'mailtrail.test';

/** An upstream channel whose parts are this process's own, so a test can drive them directly. */
export interface LocalChannel extends UpstreamChannel {
  readonly breaker: CircuitBreaker;
  readonly limiter: EgressRateLimiter;
  readonly throttle: AdaptiveThrottle;
}

export class RelayParts {
  #pools: ConnectionPool[] = [];
  #signals: Deadline[] = [];
  #channels: UpstreamChannel[] = [];

  /** A pool for `upstream`, closed by close(). */
  pool(upstream: UpstreamConfig): ConnectionPool {
    const pool = new ConnectionPool(upstream, EHLO_NAME);
    this.#pools.push(pool);
    return pool;
  }

  /** A signal that stops with EDEADLINE after `ms` (by default not within a test); `stop()` it to end a wait. */
  signal(ms = 60_000): Deadline {
    const s = Deadline.after(ms, () => stopReason(`Relay deadline of ${ms} ms reached`, 'EDEADLINE'));
    this.#signals.push(s);
    return s;
  }

  /** One upstream entry: its own pool, breaker, pacing and adaptive slow-down. */
  channel(upstream: UpstreamConfig, opts: { onBreakerChange?: (t: BreakerTransition) => void; maxWaiters?: number } = {}): LocalChannel {
    const throttle = new AdaptiveThrottle(upstream.name, upstream.rateLimit.backoff, () => undefined);
    const channel: LocalChannel = {
      upstream,
      pool: this.pool(upstream),
      breaker: new CircuitBreaker(upstream.name, upstream.breaker, opts.onBreakerChange ?? (() => undefined)),
      limiter: new EgressRateLimiter(upstream.name, upstream.rateLimit, opts.maxWaiters ?? 100, throttle),
      throttle,
    };
    this.#channels.push(channel);
    return channel;
  }

  close(): void {
    for (const p of this.#pools.splice(0)) p.close();
    for (const s of this.#signals.splice(0)) s.dispose();
    for (const c of this.#channels.splice(0)) {
      c.breaker.close();
      c.throttle.close();
    }
  }
}
