import { LUA_NOW, type LuaScript, type RedisLink } from '../state/redis-link.js';
import { ERR } from '../error-codes.js';
import type { ConnectionLease, ConnectionLeases } from './connection-leases.js';
import { abortError } from './upstream-connection.js';
import type { StopSignal } from './deadline.js';

/**
 * KEYS: leases (a sorted set: member = lease, score = expiry on the server's clock). ARGV: lease,
 * ttl, max. Drops expired leases, then adds this one if fewer than `max` are held. 1 = granted.
 */
const ACQUIRE: LuaScript = {
  name: 'mt_lease_acquire',
  keys: 1,
  lua: `
${LUA_NOW}
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1`,
};

/** KEYS: leases. ARGV: ttl, lease... Extends (or, after Redis lost them, puts back) this process's leases. */
const RENEW: LuaScript = {
  name: 'mt_lease_renew',
  keys: 1,
  lua: `
${LUA_NOW}
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 0`,
};

/** Between two asks for a lease while the fleet holds them all. */
const POLL_MS = 50;
/** How often a waiting instance asks the others to close an idle connection. */
const WANTED_EVERY_MS = 500;

/**
 * Connection leases of one upstream for the whole fleet (`pool.shared`), as KumoMTA bounds
 * connections across its nodes: a sorted set in Redis holds one member per open connection, scored
 * with its expiry. An instance adds one before it opens a connection (only while fewer than
 * `maxConnections` are held), renews its own every third of `state.leaseTtl` while they are open,
 * and removes one when its connection closes; an instance that dies stops renewing, and its leases
 * expire after `state.leaseTtl`. A Lua script, not a counter library: the bound is on things held
 * (with expiry per member), not on events per window.
 *
 * An instance that waits for a lease publishes that it does; the others close one idle connection
 * each, if they have one, so connections kept open for reuse do not starve the instances that have
 * mail to send. While Redis is unreachable each instance may open 1/`state.expectedInstances` of
 * the connections; those leases are put into Redis at the next renewal once it is back.
 */
export class RedisLeases implements ConnectionLeases {
  readonly upstream: string;
  #link: RedisLink;
  #max: number;
  #share: number;
  #held = new Set<string>();
  #next = 0;
  #renewal: NodeJS.Timeout;
  #closeIdle: (() => boolean) | null = null;
  #lastWanted = 0;

  constructor(link: RedisLink, upstream: string, maxConnections: number) {
    this.upstream = upstream;
    this.#link = link;
    this.#max = maxConnections;
    this.#share = Math.max(1, Math.floor(maxConnections / link.config.expectedInstances));
    this.#renewal = setInterval(() => this.#renew(), Math.floor(link.config.leaseTtl / 3));
    this.#renewal.unref();
    link.subscribe(this.#wantedChannel(), (owner) => {
      if (owner !== link.owner) this.#closeIdle?.();
    });
  }

  /** Leases this process holds now. */
  get held(): number {
    return this.#held.size;
  }

  watch(closeIdle: () => boolean): void {
    this.#closeIdle = closeIdle;
  }

  async acquire(signal: StopSignal, maxWaitMs: number): Promise<ConnectionLease> {
    const until = performance.now() + maxWaitMs;
    const member = `${this.#link.owner}/${(this.#next += 1)}`;
    for (;;) {
      if (signal.stopped) throw abortError(signal);
      const granted = await this.#link.run(
        'leases',
        async () => (await this.#link.eval(ACQUIRE, [this.#key()], [member, this.#link.config.leaseTtl, this.#max])) === 1,
        () => this.#held.size < this.#share,
      );
      if (granted) {
        this.#held.add(member);
        return { release: () => this.#release(member) };
      }
      const left = until - performance.now();
      if (left <= 0) {
        throw Object.assign(
          new Error(`No connection lease for ${this.upstream} within ${Math.round(maxWaitMs)} ms: the fleet holds pool.maxConnections (${this.#max})`),
          {
            code: ERR.POOL_WAIT,
          },
        );
      }
      this.#askForIdle();
      await pause(Math.min(left, POLL_MS * (0.5 + Math.random())), signal);
    }
  }

  close(): void {
    clearInterval(this.#renewal);
  }

  #release(member: string): void {
    if (!this.#held.delete(member)) return;
    this.#link.send('leases', () => this.#link.client.zrem(this.#key(), member));
  }

  #renew(): void {
    if (this.#held.size === 0) return;
    this.#link.send('leases', () => this.#link.eval(RENEW, [this.#key()], [this.#link.config.leaseTtl, ...this.#held]));
  }

  #askForIdle(): void {
    const now = performance.now();
    if (now - this.#lastWanted < WANTED_EVERY_MS) return;
    this.#lastWanted = now;
    this.#link.publish('leases', this.#wantedChannel(), this.#link.owner);
  }

  #key(): string {
    return `upstream:${this.upstream}:leases`;
  }

  #wantedChannel(): string {
    return `upstream:${this.upstream}:lease-wanted`;
  }
}

/** Waits `ms`, or until `signal` stops (then resolves too: the caller checks the signal). */
function pause(ms: number, signal: StopSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      detach();
      resolve();
    }, ms);
    const detach = signal.onStop(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
