/**
 * Who may log in to the console, and how often they may try (docs/console.md, "Who may log in").
 * With `console.users`, a username and its password (scrypt hash or plain, as SMTP users:
 * auth/password.ts); without them, the HTTP token alone (`http.token`). Failures are counted per
 * client address and per username with the SMTP AUTH lockout (admission/auth-lockout.ts), on a store
 * of its own: guessing at the console never locks an application out of SMTP, nor the reverse.
 *
 * Logins of one client address, and logins naming one username, are checked one after the other:
 * the lockout decides before a password check whether one may happen, and counts its failure after
 * it, so a burst of logins sent at once (one per HTTP connection, nothing limits them) would all pass
 * the first step before the first scrypt check ended, and a lockout after 10 failures would have let
 * hundreds through. Queued, each attempt sees the failures of the one before; once locked, the rest
 * are refused without a check.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { AuthLockout, type AuthEvent } from '../admission/auth-lockout.js';
import { MemoryLockoutStore } from '../admission/lockout-store.js';
import { verifyNoSuchUser, verifyPassword } from '../auth/password.js';
import { clientBlock } from '../client-address.js';
import type { AuthLockoutConfig, ConsoleUserConfig } from '../config/types.js';
import type { Scope } from './search/sql-query.js';

/** The lockout when `clients.authLockout` is off: the console is never without one. */
const DEFAULT_LOCKOUT: AuthLockoutConfig = { failures: 10, window: 10 * 60_000, lockout: 5 * 60_000, maxLockout: 60 * 60_000, maxTracked: 10_000 };

/**
 * A failed login is answered this long after its check began, whatever the check took (a scrypt hash,
 * the decoy of an unknown name, a plain password's digest, a lock lookup), as SMTP AUTH does
 * (listener.ts): the time of a refusal does not tell whether the username exists, nor how its
 * password is configured.
 */
export const CONSOLE_LOGIN_FAILURE_DELAY_MS = 500;

/** The name a login with the HTTP token (no console users) is shown as. */
export const TOKEN_USER = 'admin';

export type LoginResult = { readonly kind: 'ok'; readonly user: string; readonly scope: Scope } | { readonly kind: 'failed' } | { readonly kind: 'locked' };

export class ConsoleLogin {
  readonly #users: ReadonlyMap<string, ConsoleUserConfig>;
  readonly #token: Buffer | null;
  readonly #lockout: AuthLockout;
  /** The last attempt queued per address block and per username: the next one waits for it. */
  readonly #queues = new Map<string, Promise<unknown>>();

  constructor(users: readonly ConsoleUserConfig[], token: string | null, lockout: AuthLockoutConfig | null, onEvent: (event: AuthEvent) => void) {
    this.#users = new Map(users.map((u) => [u.username, u]));
    this.#token = token === null ? null : digest(token);
    const config = lockout ?? DEFAULT_LOCKOUT;
    this.#lockout = new AuthLockout(config, new MemoryLockoutStore(config.maxTracked), onEvent);
  }

  /** True when logging in takes a username (console users are configured). */
  get usernames(): boolean {
    return this.#users.size > 0;
  }

  /** True when nothing can log in: no console users and no token. */
  get open(): boolean {
    return this.#users.size === 0 && this.#token === null;
  }

  /** One login, after those of the same address block and username that came before it. */
  async attempt(address: string, username: string, password: string): Promise<LoginResult> {
    const name = this.usernames ? username : TOKEN_USER;
    let started = 0;
    // The address first, then the username: one order for every attempt, so none waits in a cycle.
    const result = await this.#inTurn(`a:${clientBlock(address)}`, () =>
      this.#inTurn(`u:${name}`, () => {
        started = performance.now();
        return this.#attempt(address, name, username, password);
      }),
    );
    // Out of the queue: the attempts waiting behind this one need not wait for its delay.
    if (result.kind !== 'ok') await sleep(Math.max(0, CONSOLE_LOGIN_FAILURE_DELAY_MS - (performance.now() - started)));
    return result;
  }

  /** Runs `task` once the tasks queued before it under `key` have ended. */
  async #inTurn<T>(key: string, task: () => Promise<T>): Promise<T> {
    const before = this.#queues.get(key) ?? Promise.resolve();
    const mine = before.then(task, task);
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    this.#queues.set(key, settled);
    try {
      return await mine;
    } finally {
      if (this.#queues.get(key) === settled) this.#queues.delete(key);
    }
  }

  async #attempt(address: string, name: string, username: string, password: string): Promise<LoginResult> {
    let result: { user: string; scope: Scope } | null = null;
    const verdict = await this.#lockout.attempt(address, name, async () => {
      if (this.usernames) {
        const user = this.#users.get(username);
        if (!user) return verifyNoSuchUser(password);
        if (!(await verifyPassword(password, user))) return false;
        result = { user: user.username, scope: user.scope === null ? null : { users: [...user.scope.users] } };
        return true;
      }
      if (this.#token === null || !timingSafeEqual(digest(password), this.#token)) return false;
      result = { user: TOKEN_USER, scope: null };
      return true;
    });
    if (verdict.kind === 'locked') return { kind: 'locked' };
    if (verdict.kind === 'failed' || result === null) return { kind: 'failed' };
    const ok: { user: string; scope: Scope } = result;
    return { kind: 'ok', user: ok.user, scope: ok.scope };
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
