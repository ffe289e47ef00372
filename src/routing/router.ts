import type { UpstreamConfig } from '../config/types.js';
import type { AdaptiveThrottle } from './adaptive-throttle.js';
import type { BreakerState, CircuitBreaker } from './circuit-breaker.js';
import type { ConnectionPool } from '../upstream/connection-pool.js';
import type { EgressRateLimiter } from './rate-limiter.js';
import { DEFAULT_ROUTE, type RouteKey, type RouteTable } from './route-table.js';

/**
 * Everything mailtrail keeps per upstream entry. The pool is per entry, and credentials belong to the
 * entry, so two entries for one host with different credentials never share a connection; the
 * breaker, the rate and the adaptive slow-down are per entry too (a provider's limits are per account).
 */
export interface UpstreamChannel {
  readonly upstream: UpstreamConfig;
  readonly pool: ConnectionPool;
  readonly breaker: CircuitBreaker;
  readonly limiter: EgressRateLimiter;
  readonly throttle: AdaptiveThrottle;
}

export interface Route {
  readonly name: string;
  /** Tried in this order. */
  readonly channels: readonly UpstreamChannel[];
}

export interface UpstreamHealth {
  readonly upstream: string;
  readonly state: BreakerState;
  /** Spacing the adaptive throttle currently adds between messages, 0 = none. */
  readonly throttleDelayMs: number;
}

/**
 * Chooses the route of a message (RouteTable) and hands the relay engine that route's upstreams,
 * each with its pool, breaker and pacing. Built once in the composition root.
 */
export class Router {
  #table: RouteTable;
  #channels: ReadonlyMap<string, UpstreamChannel>;
  #routes: ReadonlyMap<string, Route>;

  constructor(table: RouteTable, channels: readonly UpstreamChannel[]) {
    this.#table = table;
    this.#channels = new Map(channels.map((c) => [c.upstream.name, c]));
    this.#routes = new Map(table.plans.map((plan) => [plan.name, { name: plan.name, channels: plan.upstreams.map((n) => this.#channel(n)) }]));
  }

  /** Every upstream entry in config order. */
  get channels(): readonly UpstreamChannel[] {
    return [...this.#channels.values()];
  }

  /** The route for this message; without a key, the default route. */
  select(key?: RouteKey): Route {
    const name = key === undefined ? DEFAULT_ROUTE : this.#table.select(key).name;
    return this.#routes.get(name)!;
  }

  channel(upstream: string): UpstreamChannel | undefined {
    return this.#channels.get(upstream);
  }

  /** Breaker state and slow-down of each upstream, for readiness and metrics. */
  health(): UpstreamHealth[] {
    return this.channels.map((c) => ({ upstream: c.upstream.name, state: c.breaker.state, throttleDelayMs: c.throttle.delayMs }));
  }

  /** Closes pools and stops breaker and throttle timers. */
  close(): void {
    for (const c of this.#channels.values()) {
      c.pool.close();
      c.breaker.close();
      c.throttle.close();
    }
  }

  #channel(name: string): UpstreamChannel {
    const channel = this.#channels.get(name);
    // Config validation refuses routes naming unknown upstreams; reaching this is a wiring bug.
    if (channel === undefined) throw new Error(`route names an upstream that has no channel: ${name}`);
    return channel;
  }
}
