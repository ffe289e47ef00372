import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { RelayRecord } from '../audit/records.js';

/**
 * The `duplicateOf` link (docs/audit-record.md): after a transaction whose outcome was `unknown` (the
 * upstream may have the message) or `deferred` (the app will retry), a later message with the same
 * SHA-256 and the same envelope (MAIL FROM and the set of RCPT TO, compared case-insensitively)
 * within `audit.duplicateWindow` names the earlier record's id. Retries of a retry all name the
 * first record, so `mailtrail lookup <that id>` shows the whole story.
 *
 * Bounded: an LRU of at most `max` envelopes, each forgotten `window` ms after it was remembered.
 * A lookup does not extend the window (lru-cache's updateAgeOnGet stays off). Keys are SHA-256
 * digests, so the cache holds no addresses. Costs nothing while nothing is remembered.
 */
/**
 * Where the `duplicateOf` links are remembered: this process (DuplicateTracker), or the fleet's Redis
 * (redis-duplicates.ts), so a retry that lands on another instance still names the first record.
 */
export interface DuplicateLinks {
  /** The id of an earlier unknown/deferred record of this message and envelope, or null. */
  earlier(sha256: string, from: string, to: readonly string[]): string | null | Promise<string | null>;
  /** A record was written: remember it when a later identical message would be a retry of it. */
  written(record: DuplicateCandidate): void;
}

export type DuplicateCandidate = Pick<RelayRecord, 'id' | 'outcome' | 'from' | 'rcpt' | 'message'>;

export class DuplicateTracker implements DuplicateLinks {
  #cache: LRUCache<string, string>;

  constructor(opts: { window: number; max?: number; now?: () => number }) {
    this.#cache = new LRUCache<string, string>({
      max: opts.max ?? 100_000,
      ttl: opts.window,
      updateAgeOnGet: false,
      // An injected clock (tests) is read every time; lru-cache otherwise caches "now" for 1 ms.
      ...(opts.now ? { perf: { now: opts.now }, ttlResolution: 0 } : {}),
    });
  }

  /** The id of an earlier unknown/deferred record of this message and envelope, or null. */
  earlier(sha256: string, from: string, to: readonly string[]): string | null {
    if (this.#cache.size === 0 || sha256 === '') return null;
    return this.#cache.get(envelopeKey(sha256, from, to)) ?? null;
  }

  /** A record was written: remember it when a later identical message would be a retry of it. */
  written(record: DuplicateCandidate): void {
    const key = retryKey(record);
    // The first record stays the reference; a retry does not move the window forward.
    if (key !== null && !this.#cache.has(key)) this.#cache.set(key, record.id);
  }

  get size(): number {
    return this.#cache.size;
  }
}

/** The key a later retry of this record would be found under; null when no retry of it is expected. */
export function retryKey(record: DuplicateCandidate): string | null {
  if ((record.outcome !== 'unknown' && record.outcome !== 'deferred') || record.message.sha256 === '') return null;
  return envelopeKey(
    record.message.sha256,
    record.from,
    record.rcpt.map((r) => r.to),
  );
}

/** SHA-256 of the message, sender and recipient set (case-insensitive): holds no address. */
export function envelopeKey(sha256: string, from: string, to: readonly string[]): string {
  const rcpt = to.map((a) => a.toLowerCase()).sort();
  return createHash('sha256')
    .update(`${sha256}\0${from.toLowerCase()}\0${rcpt.join('\0')}`, 'utf8')
    .digest('base64');
}
