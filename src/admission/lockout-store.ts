import { LRUCache } from 'lru-cache';

/**
 * The four kinds of state an AUTH lockout keeps, each under its own bound: failure counts, locks,
 * lock levels (how many times a subject was locked lately) and the addresses a user logged in from.
 * Kept apart so that a flood of one kind (failure counts for random usernames) cannot push out
 * another (the locks themselves).
 */
export type LockoutKind = 'failures' | 'lock' | 'level' | 'proven';

/**
 * Where the lockout keeps its state: counters and marks that expire, keyed by subject. In memory
 * (MemoryLockoutStore), or shared by the fleet on Redis (RedisLockoutStore), where each method is
 * one or two commands (noted), the kind a key prefix. Asynchronous for that reason. Values are
 * strings, as Redis keeps them.
 */
export interface LockoutStore {
  /**
   * Adds one failure to the counter and returns it before and after. A counter this call creates
   * expires `ttlMs` later; later calls do not extend it, so it counts over a fixed window from its
   * first increment. One failure usually adds 1; a store standing in for the fleet's while Redis is
   * unreachable counts each as `state.expectedInstances`, so one instance locks at its share.
   * Redis: INCR, then PEXPIRE key ttl NX.
   */
  increment(kind: LockoutKind, key: string, ttlMs: number): Promise<{ readonly before: number; readonly after: number }>;
  /** The value, or null when absent or expired. Redis: GET. */
  read(kind: LockoutKind, key: string): Promise<string | null>;
  /** Sets the value for `ttlMs`. Redis: SET key value PX ttl. */
  write(kind: LockoutKind, key: string, value: string, ttlMs: number): Promise<void>;
  /** Redis: DEL. */
  remove(kind: LockoutKind, key: string): Promise<void>;
}

interface Entry {
  value: string;
  expiresAt: number;
}

const KINDS: readonly LockoutKind[] = ['failures', 'lock', 'level', 'proven'];

/**
 * The lockout state of one instance, in bounded LRUs (`maxTracked` entries per kind): an attacker
 * rotating usernames or addresses costs bounded memory, and pushes out the least recently used
 * entries of that kind only. Expiry is checked on read against `now`, so no timers.
 */
export class MemoryLockoutStore implements LockoutStore {
  readonly #entries: ReadonlyMap<LockoutKind, LRUCache<string, Entry>>;
  readonly #now: () => number;
  readonly #weight: number;

  /** `weight`: what one increment adds (the fleet's instance count, for a stand-in; see LockoutStore.increment). */
  constructor(maxTracked: number, now: () => number = Date.now, weight = 1) {
    this.#entries = new Map(KINDS.map((kind) => [kind, new LRUCache<string, Entry>({ max: maxTracked })]));
    this.#now = now;
    this.#weight = weight;
  }

  /** Entries held, expired ones not yet dropped included (for tests of the bound). */
  get size(): number {
    let n = 0;
    for (const cache of this.#entries.values()) n += cache.size;
    return n;
  }

  async increment(kind: LockoutKind, key: string, ttlMs: number): Promise<{ before: number; after: number }> {
    const entry = this.#live(kind, key);
    if (entry === undefined) {
      this.#cache(kind).set(key, { value: String(this.#weight), expiresAt: this.#now() + ttlMs });
      return { before: 0, after: this.#weight };
    }
    const before = Number(entry.value);
    entry.value = String(before + this.#weight);
    return { before, after: before + this.#weight };
  }

  async read(kind: LockoutKind, key: string): Promise<string | null> {
    return this.#live(kind, key)?.value ?? null;
  }

  async write(kind: LockoutKind, key: string, value: string, ttlMs: number): Promise<void> {
    this.#cache(kind).set(key, { value, expiresAt: this.#now() + ttlMs });
  }

  async remove(kind: LockoutKind, key: string): Promise<void> {
    this.#cache(kind).delete(key);
  }

  #live(kind: LockoutKind, key: string): Entry | undefined {
    const cache = this.#cache(kind);
    const entry = cache.get(key);
    if (entry === undefined || entry.expiresAt > this.#now()) return entry;
    cache.delete(key);
    return undefined;
  }

  #cache(kind: LockoutKind): LRUCache<string, Entry> {
    return this.#entries.get(kind)!;
  }
}
