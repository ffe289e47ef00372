import { createHash } from 'node:crypto';
import { clientBlock } from '../client-address.js';
import type { AuthLockoutConfig } from '../config/types.js';
import type { LockoutStore } from './lockout-store.js';

/**
 * Lockout after repeated failed AUTH (docs/config.md, "Password guessing"). Failures are counted per
 * client address and per username over `window`; at `failures` the address, or the username, is
 * locked for `lockout`, doubled on each repeat up to `maxLockout`. A locked attempt is refused
 * without a password check, the right password included.
 *
 * Nothing depends on whether the username exists: unknown names are counted and locked like known
 * ones, so neither the answers nor their timing tell which names exist (the caller also pads every
 * refusal to the same delay). Addresses of `clients.networks` are not exempt. One exception keeps an
 * application working while someone guesses its password from elsewhere: an address that logged in
 * as a user lately ("proven") is not held by that user's lock, only by its own address's.
 *
 * The state is in a LockoutStore (this process's, or the fleet's on Redis: a guesser spreading its
 * attempts over the instances is counted once), keyed by the address block (IPv6 /64) and by a
 * digest of the username, so a 10 KB username costs a fixed-size key.
 */

export type LockScope = 'address' | 'user';

/** A lockout this attempt started. */
export interface LockoutStarted {
  readonly scope: LockScope;
  /** 1 for the first lockout of this address or username, 2 for the one after it... */
  readonly level: number;
  readonly durationMs: number;
}

export type AuthVerdict =
  | { readonly kind: 'accepted' }
  /** Wrong credentials, not locked. */
  | { readonly kind: 'failed' }
  /** Locked: refused unheard (`started` empty), or this failure started the lockout. */
  | { readonly kind: 'locked'; readonly started: readonly LockoutStarted[] };

/** For metrics, alerts and the log. */
export type AuthEvent =
  | { readonly kind: 'failure' }
  | { readonly kind: 'refused' }
  | {
      readonly kind: 'lockout';
      readonly scope: LockScope;
      readonly address: string;
      readonly level: number;
      readonly durationMs: number;
      readonly failures: number;
      readonly windowMs: number;
    };

/** What the lockout's events are published as (metrics, the built-in alert). */
export interface AuthEvents {
  /** A client AUTH failed, was refused because locked, or started a lockout. */
  auth: [AuthEvent];
}

/** How long a successful login makes an address "proven" for its user. */
const PROVEN_FOR_MS = 7 * 24 * 3_600_000;
/** Beyond this many doublings the lockout is at maxLockout anyway. */
const MAX_DOUBLINGS = 30;

const ACCEPTED: AuthVerdict = { kind: 'accepted' };
const FAILED: AuthVerdict = { kind: 'failed' };
const REFUSED: AuthVerdict = { kind: 'locked', started: [] };

export class AuthLockout {
  readonly #config: AuthLockoutConfig | null;
  readonly #store: LockoutStore | null;
  readonly #onEvent: (event: AuthEvent) => void;
  readonly #now: () => number;

  /** `config` null: no lockout (failures are still reported). The store is needed only with a config. */
  constructor(config: AuthLockoutConfig | null, store: LockoutStore | null, onEvent: (event: AuthEvent) => void, now: () => number = Date.now) {
    if (config !== null && store === null) throw new Error('an AUTH lockout needs a store');
    this.#config = config;
    this.#store = store;
    this.#onEvent = onEvent;
    this.#now = now;
  }

  /**
   * One AUTH attempt from `address` naming `username`: refused unheard while either is locked,
   * else `verify` decides; a failure counts toward both locks.
   */
  async attempt(address: string, username: string, verify: () => Promise<boolean>): Promise<AuthVerdict> {
    const config = this.#config;
    const store = this.#store;
    if (config === null || store === null) {
      if (await verify()) return ACCEPTED;
      this.#onEvent({ kind: 'failure' });
      return FAILED;
    }
    const subjects = [
      { scope: 'address' as const, key: `a:${clientBlock(address)}` },
      { scope: 'user' as const, key: `u:${digest(username)}` },
    ];
    const pair = `${subjects[1]!.key}@${subjects[0]!.key}`;
    const proven = (await store.read('proven', pair)) !== null;
    const holding = subjects.filter((s) => s.scope === 'address' || !proven);
    const now = this.#now();
    for (const subject of holding) {
      if (Number((await store.read('lock', subject.key)) ?? 0) > now) {
        this.#onEvent({ kind: 'refused' });
        return REFUSED;
      }
    }
    if (await verify()) {
      await store.write('proven', pair, '1', PROVEN_FOR_MS);
      return ACCEPTED;
    }
    this.#onEvent({ kind: 'failure' });
    const started: LockoutStarted[] = [];
    for (const subject of subjects) {
      const lockout = await this.#count(store, config, subject.key, now);
      if (lockout === null) continue;
      this.#onEvent({ kind: 'lockout', scope: subject.scope, address, ...lockout, failures: config.failures, windowMs: config.window });
      // A proven address is not held by its user's lock: for it, that lockout changes nothing.
      if (holding.includes(subject)) started.push({ scope: subject.scope, ...lockout });
    }
    return started.length > 0 ? { kind: 'locked', started } : FAILED;
  }

  /**
   * Counts one failure of `key`; at the limit, locks it and returns the lockout. Safe against a burst
   * of concurrent failures (40 connections guessing at once) with a store whose commands are each
   * atomic but not together: a failure that finds the key locked does not count, and only the
   * failure that takes the count to the limit starts the lockout, so a burst starts one, not one per
   * failure beyond the limit.
   */
  async #count(store: LockoutStore, config: AuthLockoutConfig, key: string, now: number): Promise<{ level: number; durationMs: number } | null> {
    if (Number((await store.read('lock', key)) ?? 0) > now) return null;
    const count = await store.increment('failures', key, config.window);
    if (count.before >= config.failures || count.after < config.failures) return null;
    const level = Number((await store.read('level', key)) ?? 0) + 1;
    const durationMs = Math.min(config.maxLockout, config.lockout * 2 ** Math.min(level - 1, MAX_DOUBLINGS));
    await store.write('lock', key, String(now + durationMs), durationMs);
    // The level is forgotten once maxLockout has passed after the lockout ended without another.
    await store.write('level', key, String(level), durationMs + config.maxLockout);
    // Last, once the lock is in place: after the lockout the count starts again, from a higher level.
    await store.remove('failures', key);
    return { level, durationMs };
  }
}

/** A fixed-size key for any username (a client may send kilobytes). */
function digest(username: string): string {
  return createHash('sha256').update(username, 'utf8').digest('base64url');
}
