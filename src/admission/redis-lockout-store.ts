import type { RedisLink } from '../state/redis-link.js';
import { MemoryLockoutStore, type LockoutKind, type LockoutStore } from './lockout-store.js';

/**
 * The AUTH lockout's state shared by the fleet on Redis: plain commands (INCR with PEXPIRE NX, GET,
 * SET PX, DEL), each atomic, which is all AuthLockout asks of a store (auth-lockout.ts). No counter
 * library: the lockout's own rules (levels, proven addresses, one lockout per burst) sit above four
 * primitive operations that map one to one onto Redis commands.
 *
 * While Redis is unreachable a MemoryLockoutStore stands in, counting each failure as
 * `state.expectedInstances` failures: an instance locks after its share of `failures`.
 */
export class RedisLockoutStore implements LockoutStore {
  #link: RedisLink;
  #local: MemoryLockoutStore;

  constructor(link: RedisLink, maxTracked: number) {
    this.#link = link;
    this.#local = new MemoryLockoutStore(maxTracked, Date.now, link.config.expectedInstances);
  }

  increment(kind: LockoutKind, key: string, ttlMs: number): Promise<{ before: number; after: number }> {
    return this.#link.run(
      'auth_lockout',
      async () => {
        const k = keyOf(kind, key);
        const replies = await this.#link.client.multi().incr(k).pexpire(k, ttlMs, 'NX').exec();
        const [err, after] = replies?.[0] ?? [new Error('transaction discarded'), 0];
        if (err) throw err;
        return { before: Number(after) - 1, after: Number(after) };
      },
      () => this.#local.increment(kind, key, ttlMs),
    );
  }

  read(kind: LockoutKind, key: string): Promise<string | null> {
    return this.#link.run(
      'auth_lockout',
      () => this.#link.client.get(keyOf(kind, key)),
      () => this.#local.read(kind, key),
    );
  }

  write(kind: LockoutKind, key: string, value: string, ttlMs: number): Promise<void> {
    return this.#link.run(
      'auth_lockout',
      async () => void (await this.#link.client.set(keyOf(kind, key), value, 'PX', Math.max(1, Math.round(ttlMs)))),
      () => this.#local.write(kind, key, value, ttlMs),
    );
  }

  remove(kind: LockoutKind, key: string): Promise<void> {
    return this.#link.run(
      'auth_lockout',
      async () => void (await this.#link.client.del(keyOf(kind, key))),
      () => this.#local.remove(kind, key),
    );
  }
}

function keyOf(kind: LockoutKind, key: string): string {
  return `lockout:${kind}:${key}`;
}
