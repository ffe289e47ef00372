import type { ClientFacts } from '../audit/records.js';
import type { IdGenerator } from '../ids.js';
import { CidrList } from './cidr-list.js';
import { MemoryTokenBuckets, type BucketSpec, type TokenBuckets } from './token-buckets.js';

/** The rate is per minute, as Postfix's anvil_rate_time_unit defaults to; so is a refusal window. */
const MINUTE_MS = 60_000;

export interface ConnectionRateOptions {
  /** New connections one address may open per minute; null = no limit. */
  readonly perMinute: number | null;
  /** Networks the limit does not apply to (by default `clients.networks`). */
  readonly exempt: readonly string[];
  /** Most addresses tracked at once (LRU); a forgotten one starts again with its whole allowance. */
  readonly maxTracked: number;
  readonly ids: IdGenerator;
  /** A window of refusals ended: one minute after its first refusal, when too many are open, or at flush(). */
  readonly onWindowEnd: (window: RefusedWindow) => void;
  /** Where the per-address buckets are kept: this process (default, `maxTracked` of them) or the fleet's Redis. */
  readonly buckets?: TokenBuckets;
  readonly clock?: { now(): number };
}

/** The connections of one address refused within one window, for its one `reject` record. */
export interface RefusedWindow {
  /** The id every refused connection's 421 carried: the id of the window's record. */
  readonly id: string;
  /** The first refused connection: its smtp-server session id and client facts. */
  readonly first: { readonly sessionId: string; readonly client: ClientFacts };
  readonly refused: number;
}

interface OpenWindow {
  readonly window: { id: string; first: RefusedWindow['first']; refused: number };
  readonly timer: NodeJS.Timeout;
}

/**
 * New connections per client address, as Postfix's smtpd_client_connection_rate_limit (anvil): a
 * client that reconnects faster than `perMinute` gets `421 4.7.0` at connect until it slows down.
 * Each address has a token bucket holding `perMinute` connections that refills at `perMinute` a
 * minute, so a burst of that size passes at once. Addresses in `exempt` are not counted, as Postfix
 * exempts $mynetworks (applications there may open one connection per message).
 *
 * A refused connection gets no record of its own (a reconnect flood would otherwise write one each):
 * the refusals of one address are counted in a window that starts with the first of them and ends a
 * minute later, and the window's single record, written when it ends, says how many there were. Every
 * 421 of the window carries that record's id.
 *
 * A connection that logs in gives its token back (`refund`): an authenticated app is not a flood, and
 * an app outside the listed networks may connect once per message too. A client without a password
 * cannot.
 *
 * The buckets are this process's, or the fleet's in Redis (one client reconnecting to each instance
 * in turn is counted once); the windows of refusals and their records are each instance's own.
 */
export class ConnectionRate {
  #opts: ConnectionRateOptions;
  #exempt: CidrList;
  #buckets: TokenBuckets;
  /** Open windows by address, oldest first (Map order), at most `maxTracked`. */
  #windows = new Map<string, OpenWindow>();

  constructor(opts: ConnectionRateOptions) {
    this.#opts = opts;
    this.#exempt = new CidrList(opts.exempt);
    this.#buckets = opts.buckets ?? new MemoryTokenBuckets(opts.maxTracked, opts.clock);
  }

  /**
   * Counts a new connection from `ip`. Null when it may go on; otherwise the id its 421 carries (the
   * refusal is counted in the address's window). `first` is called for the first refusal of a window.
   */
  async admit(ip: string, first: () => RefusedWindow['first']): Promise<string | null> {
    const bucket = this.#bucket(ip);
    if (bucket === null) return null;
    const verdict = await this.#buckets.take([bucket]);
    return verdict.ok ? null : this.#refused(ip, first);
  }

  /** A connection from `ip` logged in: it no longer counts against the address's rate. */
  refund(ip: string): void {
    const bucket = this.#bucket(ip);
    if (bucket !== null) this.#buckets.give(bucket);
  }

  /** The address's bucket; null when it is not counted. */
  #bucket(ip: string): BucketSpec | null {
    const max = this.#opts.perMinute;
    if (max === null || this.#exempt.has(ip)) return null;
    return { key: `conn:${ip}`, max, periodMs: MINUTE_MS };
  }

  /** Ends every open window now, so their records are written (at shutdown, before the trail closes). */
  flush(): void {
    for (const ip of [...this.#windows.keys()]) this.#end(ip);
  }

  #refused(ip: string, first: () => RefusedWindow['first']): string {
    const open = this.#windows.get(ip);
    if (open) {
      open.window.refused += 1;
      return open.window.id;
    }
    // Bounded like the buckets: a flood from more addresses than that ends the oldest windows early.
    if (this.#windows.size >= this.#opts.maxTracked) this.#end(this.#windows.keys().next().value!);
    const window = { id: this.#opts.ids.next(), first: first(), refused: 1 };
    const timer = setTimeout(() => this.#end(ip), MINUTE_MS);
    timer.unref();
    this.#windows.set(ip, { window, timer });
    return window.id;
  }

  #end(ip: string): void {
    const open = this.#windows.get(ip);
    if (!open) return;
    clearTimeout(open.timer);
    this.#windows.delete(ip);
    this.#opts.onWindowEnd({ ...open.window });
  }
}
