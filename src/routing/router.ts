import type { RouteConfig, UpstreamConfig } from '../config/types.js';
import { isInfrastructureClass } from '../classify/failure-class.js';
import type { EventPublisher } from '../event-bus.js';
import type { Logger } from '../logger.js';
import { ConnectionPool } from '../upstream/connection-pool.js';
import { upstreamLogin, type UpstreamLogin } from '../upstream/upstream-login.js';
import type { BreakerState, UpstreamBreaker } from './circuit-breaker.js';
import type { SendingRate, Slowdown } from './pacing.js';
import { localUpstreamState, type UpstreamStateFactory } from './upstream-state.js';
import { DEFAULT_ROUTE, RouteTable, type RouteKey } from './route-table.js';
import type { ProbeResult, RoutingEvents } from './routing-events.js';

/**
 * Everything mailtrail keeps per upstream entry. The pool is per entry, and credentials belong to the
 * entry, so two entries for one host with different credentials never share a connection; the
 * breaker, the rate and the adaptive slow-down are per entry too (a provider's limits are per account).
 */
export interface UpstreamChannel {
  readonly upstream: UpstreamConfig;
  readonly pool: ConnectionPool;
  readonly breaker: UpstreamBreaker;
  readonly limiter: SendingRate;
  readonly throttle: Slowdown;
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

export interface RouterOptions {
  readonly upstreams: readonly UpstreamConfig[];
  readonly routes: readonly RouteConfig[];
  /** EHLO name for the upstream connections. */
  readonly hostname: string;
  /** Messages that may wait for one upstream's sending slot at once (each is one client transaction). */
  readonly maxWaiters: number;
  /** Where breaker and pacing changes are published (metrics, readiness, the breaker's alert records). */
  readonly events: EventPublisher<RoutingEvents>;
  readonly log: Logger;
  /** Where each upstream's rate, slow-down, breaker and leases live; default this process. */
  readonly state?: UpstreamStateFactory;
  /**
   * How each upstream logs in, by name (the composition root builds them: an OAuth2 login's token cache
   * publishes on the bus); an upstream missing here gets the login its `auth` asks for.
   */
  readonly logins?: ReadonlyMap<string, UpstreamLogin | null>;
}

/**
 * Chooses the route of a message (RouteTable) and hands the relay engine that route's upstreams,
 * each with its pool, breaker and pacing. The router owns the upstreams' health: the engine reports
 * each try to the breaker, the health probes report to `recordProbe`, and every breaker and pacing
 * change is published from here. Built once in the composition root.
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

  /**
   * Per upstream entry: its pool (credentials are the entry's, so entries never share connections),
   * circuit breaker, sending rate and adaptive slow-down (this process's, or the fleet's: `state.redis`);
   * then the routes over them.
   */
  static build(options: RouterOptions): Router {
    const { events, log } = options;
    const build = options.state ?? localUpstreamState;
    const channels = options.upstreams.map((upstream) => {
      const name = upstream.name;
      const state = build(upstream, {
        maxWaiters: options.maxWaiters,
        onThrottle: (delayMs) => {
          log.info({ upstream: name, delayMs }, 'upstream pacing changed after throttling replies');
          events.publish('upstream-throttle', { upstream: name, delayMs });
        },
        onBreaker: (t) => {
          log[t.state === 'closed' ? 'info' : 'warn']({ upstream: name, state: t.state, reason: t.reason }, 'upstream circuit breaker changed state');
          events.publish('upstream-state', { upstream: name, from: t.from, state: t.state, reason: t.reason });
        },
      });
      return {
        upstream,
        pool: new ConnectionPool(
          upstream,
          options.hostname,
          options.logins?.has(name) ? (options.logins.get(name) ?? null) : upstreamLogin(upstream),
          state.leases,
        ),
        breaker: state.breaker,
        limiter: state.limiter,
        throttle: state.throttle,
      };
    });
    return new Router(new RouteTable(options.routes, options.upstreams), channels);
  }

  /**
   * What a health probe found counts for the upstream's breaker: a pass is life (it may close a
   * half-open breaker), a failure of an infrastructure class is a failure; anything else (a quota or
   * credentials refusal) says nothing about the upstream being down.
   */
  recordProbe(probe: ProbeResult): void {
    const breaker = this.#channels.get(probe.upstream)?.breaker;
    if (!breaker) return;
    if (probe.ok) breaker.recordProbe(true);
    else if (probe.class !== null && isInfrastructureClass(probe.class)) breaker.recordProbe(false, probe.class);
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
