/**
 * Console sessions, kept on the server (docs/console.md, "Sessions"): the cookie carries a random
 * 256-bit id and nothing else. A session ends when unused for `console.sessionIdle`, at most
 * SESSION_MAX_AGE after login, on logout, or when the process stops (sessions are in memory: a
 * restart logs everybody out). Ids are kept as their SHA-256, so a heap dump does not hold cookies.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Scope } from './search/sql-query.js';

export interface ConsoleSession {
  readonly user: string;
  readonly scope: Scope;
  /** What a state-changing request must send back in `X-CSRF-Token`. */
  readonly csrf: string;
  readonly createdAt: number;
  lastSeen: number;
}

/** However active, a session ends this long after its login. */
export const SESSION_MAX_AGE_MS = 12 * 3_600_000;
/** Sessions kept at once; past it, the least recently used go first. */
const MAX_SESSIONS = 10_000;

export class SessionStore {
  readonly #sessions = new Map<string, ConsoleSession>();
  readonly #idleMs: number;
  readonly #now: () => number;

  constructor(idleMs: number, now: () => number = Date.now) {
    this.#idleMs = idleMs;
    this.#now = now;
  }

  /** A new session; returns the id for the cookie. */
  create(user: string, scope: Scope): { id: string; session: ConsoleSession } {
    const id = randomBytes(32).toString('base64url');
    const now = this.#now();
    const session: ConsoleSession = { user, scope, csrf: randomBytes(32).toString('base64url'), createdAt: now, lastSeen: now };
    if (this.#sessions.size >= MAX_SESSIONS) this.#evict();
    this.#sessions.set(digest(id), session);
    return { id, session };
  }

  /** The live session of `id`; `touch` counts this as use (idle time starts again). */
  get(id: string, touch: boolean): ConsoleSession | null {
    const key = digest(id);
    const session = this.#sessions.get(key);
    if (!session) return null;
    const now = this.#now();
    if (now - session.lastSeen > this.#idleMs || now - session.createdAt > SESSION_MAX_AGE_MS) {
      this.#sessions.delete(key);
      return null;
    }
    if (touch) {
      session.lastSeen = now;
      // Map order = least recently used first.
      this.#sessions.delete(key);
      this.#sessions.set(key, session);
    }
    return session;
  }

  end(id: string): void {
    this.#sessions.delete(digest(id));
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** Drops the expired sessions, then the least recently used while still full. */
  #evict(): void {
    const now = this.#now();
    for (const [key, s] of this.#sessions) {
      if (now - s.lastSeen > this.#idleMs || now - s.createdAt > SESSION_MAX_AGE_MS) this.#sessions.delete(key);
    }
    for (const key of this.#sessions.keys()) {
      if (this.#sessions.size < MAX_SESSIONS) break;
      this.#sessions.delete(key);
    }
  }
}

function digest(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}
