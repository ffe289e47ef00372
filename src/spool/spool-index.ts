/**
 * The spool's index in memory: one small summary per entry, never a body and never the whole meta
 * (docs/spool.md, "In memory"). About 200 bytes an entry, so 100,000 queued messages take some 20 MB
 * (bench/spool-scale.mjs measures it); anything more about an entry is read from its meta file.
 */
import type { SpoolEntry, SpoolState } from './spool-entry.js';

/** What the index knows of an entry: enough to list, count and pick the due ones. */
export interface SpoolSummary {
  readonly id: string;
  readonly state: SpoolState;
  /** When it was accepted (ms since the epoch). */
  readonly acceptedAt: number;
  /** When a `queued` entry is due (ms); null when it waits for an operator. */
  readonly nextAttemptAt: number | null;
  readonly attempts: number;
  /** Bytes of the body. */
  readonly size: number;
  /** Recipients still to deliver. */
  readonly pending: number;
  /** Its `dotPendingSince` is set: an attempt's final dot may have gone out without an answer. */
  readonly dotPending: boolean;
  /** Its acceptance record is known to be in the trail. */
  readonly recorded: boolean;
}

/** Entries by state, their bytes, and the oldest still in the spool. */
export interface SpoolCounts {
  readonly queued: number;
  readonly delivering: number;
  readonly held: number;
  readonly total: number;
  readonly bytes: number;
  /** When the oldest entry was accepted (ms); null when the spool is empty. */
  readonly oldestAcceptedAt: number | null;
}

export function summaryOf(entry: SpoolEntry): SpoolSummary {
  return {
    id: entry.id,
    state: entry.state,
    acceptedAt: Date.parse(entry.acceptedAt),
    nextAttemptAt: entry.nextAttemptAt === null ? null : Date.parse(entry.nextAttemptAt),
    attempts: entry.attempts,
    size: entry.message.size,
    pending: entry.rcpt.reduce((n, r) => (r.state === 'pending' ? n + 1 : n), 0),
    dotPending: entry.dotPendingSince !== null,
    recorded: entry.recorded,
  };
}

export class SpoolIndex {
  /** In the order entries were added: acceptance order at run time, id (= time) order from start-up. */
  readonly #entries = new Map<string, SpoolSummary>();
  #byState: Record<SpoolState, number> = { queued: 0, delivering: 0, held: 0 };
  #bytes = 0;

  get size(): number {
    return this.#entries.size;
  }

  get(id: string): SpoolSummary | undefined {
    return this.#entries.get(id);
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** Adds or replaces the entry's summary. */
  set(summary: SpoolSummary): void {
    this.delete(summary.id);
    this.#entries.set(summary.id, summary);
    this.#byState[summary.state] += 1;
    this.#bytes += summary.size;
  }

  delete(id: string): boolean {
    const old = this.#entries.get(id);
    if (old === undefined) return false;
    this.#entries.delete(id);
    this.#byState[old.state] -= 1;
    this.#bytes -= old.size;
    return true;
  }

  values(): IterableIterator<SpoolSummary> {
    return this.#entries.values();
  }

  /** One pass over the index (for a metrics scrape, not per message). */
  counts(): SpoolCounts {
    let oldest: number | null = null;
    for (const s of this.#entries.values()) if (oldest === null || s.acceptedAt < oldest) oldest = s.acceptedAt;
    return { ...this.#byState, total: this.#entries.size, bytes: this.#bytes, oldestAcceptedAt: oldest };
  }

  /**
   * Up to `limit` `queued` entries due at `now`, the earliest due first (ties: the earliest
   * accepted). One pass over the index, keeping the `limit` earliest in a small sorted list: O(n log
   * limit), no sort of the whole spool however much of it is due.
   */
  due(now: number, limit: number, skip?: (s: SpoolSummary) => boolean): SpoolSummary[] {
    const picked: SpoolSummary[] = [];
    if (limit <= 0) return picked;
    for (const s of this.#entries.values()) {
      if (s.state !== 'queued' || s.nextAttemptAt === null || s.nextAttemptAt > now) continue;
      if (picked.length === limit && !earlier(s, picked[limit - 1]!)) continue;
      if (skip?.(s)) continue;
      let lo = 0;
      let hi = picked.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (earlier(s, picked[mid]!)) hi = mid;
        else lo = mid + 1;
      }
      picked.splice(lo, 0, s);
      if (picked.length > limit) picked.pop();
    }
    return picked;
  }

  /** When the next `queued` entry falls due (ms), or null when none waits for a time. */
  nextDueAt(): number | null {
    let next: number | null = null;
    for (const s of this.#entries.values()) {
      if (s.state === 'queued' && s.nextAttemptAt !== null && (next === null || s.nextAttemptAt < next)) next = s.nextAttemptAt;
    }
    return next;
  }
}

function earlier(a: SpoolSummary, b: SpoolSummary): boolean {
  return a.nextAttemptAt! < b.nextAttemptAt! || (a.nextAttemptAt === b.nextAttemptAt && a.acceptedAt < b.acceptedAt);
}
