import type { UpstreamConfig } from '../config/types.js';
import type { RedisLink } from '../state/redis-link.js';
import { UNLEASED, type ConnectionLeases } from '../upstream/connection-leases.js';
import { RedisLeases } from '../upstream/redis-leases.js';
import { AdaptiveThrottle } from './adaptive-throttle.js';
import { CircuitBreaker, type BreakerTransition, type UpstreamBreaker } from './circuit-breaker.js';
import type { SendingRate, Slowdown } from './pacing.js';
import { EgressRateLimiter } from './rate-limiter.js';
import { RedisSendingRate, RedisSlowdown } from './redis-pacing.js';
import { SharedBreaker } from './shared-breaker.js';

/** What the router hands each upstream's state: where its changes are reported, and the waiting bound. */
export interface UpstreamStateHooks {
  /** Messages that may wait for this upstream's sending slot at once (each is one client transaction). */
  readonly maxWaiters: number;
  /** The adaptive slow-down changed (0 = back to the configured pace). */
  readonly onThrottle: (delayMs: number) => void;
  readonly onBreaker: (transition: BreakerTransition) => void;
}

/** The state kept per upstream entry beside its pool: sending rate, slow-down, breaker, connection leases. */
export interface UpstreamState {
  readonly limiter: SendingRate;
  readonly throttle: Slowdown;
  readonly breaker: UpstreamBreaker;
  readonly leases: ConnectionLeases;
}

/** Builds the state of one upstream entry; chosen once in the composition root (local, or shared through Redis). */
export type UpstreamStateFactory = (upstream: UpstreamConfig, hooks: UpstreamStateHooks) => UpstreamState;

/** Everything in this process, as for a single instance. */
export const localUpstreamState: UpstreamStateFactory = (upstream, hooks) => {
  const throttle = new AdaptiveThrottle(upstream.name, upstream.rateLimit.backoff, hooks.onThrottle);
  return {
    limiter: new EgressRateLimiter(upstream.name, upstream.rateLimit, hooks.maxWaiters, throttle),
    throttle,
    breaker: new CircuitBreaker(upstream.name, upstream.breaker, hooks.onBreaker),
    leases: UNLEASED,
  };
};

/**
 * Shared by the fleet through Redis (docs/fleet.md): the rate and slow-down per upstream entry, its
 * breaker's openings and half-open trial, and with `pool.shared` its connection leases.
 */
export function sharedUpstreamState(link: RedisLink): UpstreamStateFactory {
  return (upstream, hooks) => {
    const throttle = new RedisSlowdown(link, upstream.name, upstream.rateLimit.backoff, hooks.onThrottle);
    return {
      limiter: new RedisSendingRate(link, upstream.name, upstream.rateLimit, hooks.maxWaiters, throttle),
      throttle,
      breaker: new SharedBreaker(link, upstream, hooks.onBreaker),
      leases: upstream.pool.shared ? new RedisLeases(link, upstream.name, upstream.pool.maxConnections) : UNLEASED,
    };
  };
}
