import type { StopSignal } from './deadline.js';

/** The right to keep one connection to an upstream open; given back when the connection closes. */
export interface ConnectionLease {
  release(): void;
}

/**
 * How many connections to one upstream may be open beyond this instance: with `pool.shared` and
 * `state.redis`, the fleet's leases in Redis (redis-leases.ts) bound the whole fleet to
 * `pool.maxConnections`; otherwise each pool bounds only itself and a lease costs nothing.
 */
export interface ConnectionLeases {
  /**
   * A lease for one more open connection. Waits while the fleet holds them all, at most `maxWaitMs`
   * (then rejects with EPOOLWAIT) or until `signal` stops (rejects with its reason).
   */
  acquire(signal: StopSignal, maxWaitMs: number): ConnectionLease | Promise<ConnectionLease>;
  /**
   * `closeIdle` closes one idle connection of the pool and says whether it had one: called when
   * another instance waits for a lease this instance holds only for an idle connection.
   */
  watch(closeIdle: () => boolean): void;
  close(): void;
}

const NO_LEASE: ConnectionLease = { release: () => undefined };

/** Each instance's pool bounds only itself (no `pool.shared`, or no `state.redis`). */
export const UNLEASED: ConnectionLeases = {
  acquire: () => NO_LEASE,
  watch: () => undefined,
  close: () => undefined,
};
