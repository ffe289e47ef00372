import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { UpstreamConfig } from '../config/types.js';
import { abortError, connectionOptions, UpstreamConnection } from './upstream-connection.js';
import { UNLEASED, type ConnectionLease, type ConnectionLeases } from './connection-leases.js';
import type { StopSignal } from './deadline.js';
import { ERR } from '../error-codes.js';
import { upstreamLogin, type UpstreamLogin } from './upstream-login.js';

/** Longest a closing connection keeps its fleet lease while its socket is not closed yet. */
const LEASE_RELEASE_WAIT_MS = 5_000;

/** A connection handed out by the pool, with the facts the audit record needs. */
export interface Lease {
  readonly connection: UpstreamConnection;
  readonly reused: boolean;
  /** Time spent waiting for a free slot (pool full). */
  readonly waitMs: number;
  /** DNS + TCP + TLS + greeting + EHLO + AUTH; 0 when reused. */
  readonly connectMs: number;
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * Connections to one upstream with one set of credentials. Bounded (maxConnections), FIFO for waiters,
 * each connection recycled after maxMessages or idleTimeout. Unlike nodemailer's pool it never
 * re-sends on its own: the relay engine decides about retries, because only it knows whether the
 * body already went out (a silent requeue after the final dot is how duplicates happen).
 */
export class ConnectionPool {
  readonly upstream: UpstreamConfig;
  #options: SMTPConnection.Options;
  #login: UpstreamLogin | null;
  #idle: UpstreamConnection[] = [];
  /** The fleet's lease each open connection holds (`pool.shared`). */
  #leases = new Map<UpstreamConnection, ConnectionLease>();
  #leasing: ConnectionLeases;
  #busy = 0;
  #waiters: Waiter[] = [];
  #sweeper: NodeJS.Timeout;
  #closed = false;

  /**
   * `login`: how connections log in; by default the one `upstream.auth` asks for (upstream-login.ts).
   * `leases`: the fleet's connection leases (`pool.shared`); by default none needed.
   */
  constructor(upstream: UpstreamConfig, ehloName: string, login: UpstreamLogin | null = upstreamLogin(upstream), leases: ConnectionLeases = UNLEASED) {
    this.upstream = upstream;
    this.#options = connectionOptions(upstream, ehloName);
    this.#login = login;
    this.#leasing = leases;
    leases.watch(() => this.#closeOneIdle());
    this.#sweeper = setInterval(() => this.#sweepIdle(), Math.max(1000, upstream.pool.idleTimeout / 2));
    this.#sweeper.unref();
  }

  /** Number of connections in use plus waiting callers: the pool's load. */
  get pending(): number {
    return this.#busy + this.#waiters.length;
  }

  /**
   * A connection, reused or new. Waits for a free slot while the pool is full, at most `maxWaitMs`
   * (then rejects with EPOOLWAIT, so the message can move to the next upstream of its route).
   */
  async acquire(signal: StopSignal, maxWaitMs = Number.POSITIVE_INFINITY): Promise<Lease> {
    const started = performance.now();
    if (this.#closed) throw Object.assign(new Error('Upstream pool is closed'), { code: ERR.SHUTDOWN });
    // A freed slot is handed straight to the first waiter (busy count unchanged), so a caller arriving
    // in between cannot overtake it and push the pool past maxConnections.
    if (this.#busy >= this.upstream.pool.maxConnections) await this.#waitForSlot(signal, maxWaitMs);
    else this.#busy += 1;
    const waitMs = performance.now() - started;
    const idle = this.#takeIdle();
    if (idle) return { connection: idle, reused: true, waitMs, connectMs: 0 };
    let lease: ConnectionLease;
    try {
      // A new connection needs the fleet's lease too (pool.shared); waiting for it counts as waiting for a slot.
      lease = await this.#leasing.acquire(signal, maxWaitMs - waitMs);
    } catch (err) {
      this.#freeSlot();
      throw err;
    }
    const connectStart = performance.now();
    try {
      const connection = await UpstreamConnection.open(this.#options, this.#login, signal);
      this.#leases.set(connection, lease);
      return { connection, reused: false, waitMs: connectStart - started, connectMs: performance.now() - connectStart };
    } catch (err) {
      lease.release();
      this.#freeSlot();
      throw err;
    }
  }

  /**
   * Opens a fresh connection in place of `dead`, a reused one that turned out dead (outside the idle
   * list; the caller releases it as usual). The fresh one takes over the dead one's lease.
   */
  async reopen(dead: UpstreamConnection, signal: StopSignal): Promise<Omit<Lease, 'waitMs'>> {
    const lease = this.#leases.get(dead);
    this.#leases.delete(dead);
    const connectStart = performance.now();
    try {
      const connection = await UpstreamConnection.open(this.#options, this.#login, signal);
      if (lease) this.#leases.set(connection, lease);
      return { connection, reused: false, connectMs: performance.now() - connectStart };
    } catch (err) {
      lease?.release();
      throw err;
    }
  }

  /**
   * A connection for a health probe: opened as the pool's are (same options, same login, so the same
   * token cache), never pooled and outside the pool's slots. The caller closes it.
   */
  openUnpooled(signal: StopSignal): Promise<UpstreamConnection> {
    return UpstreamConnection.open(this.#options, this.#login, signal);
  }

  /** Gives a connection back. `reusable` false (or a dead/worn connection) closes it. */
  release(connection: UpstreamConnection, reusable: boolean): void {
    const worn = connection.messages >= this.upstream.pool.maxMessages;
    if (reusable && connection.alive && !worn && !this.#closed) {
      connection.idleSince = Date.now();
      this.#idle.push(connection);
    } else {
      this.#discard(connection);
    }
    this.#freeSlot();
  }

  /** Closes idle connections and refuses new work; busy connections close when released. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    if (this.#login?.kind === 'xoauth2') this.#login.tokens.close();
    for (const c of this.#idle.splice(0)) this.#discard(c);
    this.#leasing.close();
    for (const w of this.#waiters.splice(0)) {
      w.reject(Object.assign(new Error('Upstream pool is closed'), { code: ERR.SHUTDOWN }));
    }
  }

  #takeIdle(): UpstreamConnection | null {
    // LIFO: the most recently used connection is the least likely to have been dropped by the server.
    // One idle past pool.idleTimeout is closed here, not only by the next sweep: docs/config.md promises
    // it is closed after that long, and the server may already have dropped it.
    const cutoff = Date.now() - this.upstream.pool.idleTimeout;
    for (let c = this.#idle.pop(); c; c = this.#idle.pop()) {
      if (c.alive && c.idleSince > cutoff) return c;
      this.#discard(c);
    }
    return null;
  }

  /**
   * Closes a connection (if still open) and gives its lease back once the socket is closed: until
   * then the upstream still counts it (a provider's limit is on connections open at its end).
   */
  #discard(connection: UpstreamConnection): void {
    if (connection.alive) connection.quit();
    const lease = this.#leases.get(connection);
    this.#leases.delete(connection);
    if (lease === undefined) return;
    // A QUIT the upstream never answers: its socket timeout closes it; the lease does not wait past this.
    const timer = setTimeout(() => lease.release(), LEASE_RELEASE_WAIT_MS);
    timer.unref();
    connection.onClosed(() => {
      clearTimeout(timer);
      lease.release();
    });
  }

  /** Another instance waits for a lease: the least recently used idle connection goes. */
  #closeOneIdle(): boolean {
    const oldest = this.#idle.shift();
    if (oldest === undefined) return false;
    this.#discard(oldest);
    return true;
  }

  #freeSlot(): void {
    const next = this.#waiters.shift();
    if (next) next.resolve();
    else this.#busy -= 1;
  }

  #waitForSlot(signal: StopSignal, maxWaitMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.stopped) return reject(abortError(signal));
      // However the wait ends, the stop listener and the timer go with it.
      const settle = (done: () => void): void => {
        detach();
        if (timer) clearTimeout(timer);
        done();
      };
      const giveUp = (err: Error): void =>
        settle(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(err);
        });
      const waiter: Waiter = {
        resolve: () => settle(resolve),
        // The pool closed (shutdown): close() has taken the waiter off the list already.
        reject: (err) => settle(() => reject(err)),
      };
      const detach = signal.onStop(() => giveUp(abortError(signal)));
      const timer = Number.isFinite(maxWaitMs)
        ? setTimeout(
            () => giveUp(Object.assign(new Error(`No free connection to ${this.upstream.name} within ${Math.round(maxWaitMs)} ms`), { code: ERR.POOL_WAIT })),
            maxWaitMs,
          )
        : null;
      this.#waiters.push(waiter);
    });
  }

  #sweepIdle(): void {
    const cutoff = Date.now() - this.upstream.pool.idleTimeout;
    this.#idle = this.#idle.filter((c) => {
      if (c.alive && c.idleSince > cutoff) return true;
      this.#discard(c);
      return false;
    });
  }
}
