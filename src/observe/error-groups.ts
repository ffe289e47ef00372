import { LRUCache } from 'lru-cache';
import type { RelayRecord } from '../audit/records.js';
import { errorFingerprint, errorReply } from './error-fingerprint.js';
import type { RelayBus } from './relay-events.js';

/** One group of "the same error", as GET /api/errors shows it. */
export interface ErrorGroup {
  /** The fingerprint key, the same one `mailtrail report` groups by. */
  readonly fingerprint: string;
  readonly class: string;
  readonly upstream: string | null;
  /** The reply with what varies per message masked. */
  readonly normalized: string;
  readonly count: number;
  readonly firstSeen: string;
  readonly lastSeen: string;
  /** The latest occurrence: its transaction id and the upstream's reply (or error when none came). */
  readonly sample: {
    readonly id: string;
    readonly reply: RelayRecord['rcpt'][number]['reply'];
    readonly error: { readonly code: string | null; readonly cause: string | null } | null;
  };
}

/**
 * Live error groups (Sentry-style) from relay failures, bounded: the least recently seen group is
 * forgotten first once `max` groups exist, so a flood of distinct replies cannot grow memory.
 */
export class ErrorGroups {
  #groups: LRUCache<string, ErrorGroup>;
  #unsubscribe: () => void;

  constructor(bus: RelayBus, max = 500) {
    this.#groups = new LRUCache({ max });
    this.#unsubscribe = bus.subscribe('relay', (r) => this.#add(r));
  }

  /** Most recently seen first. */
  list(): ErrorGroup[] {
    return [...this.#groups.values()].sort((a, b) => b.lastSeen.localeCompare(a.lastSeen));
  }

  close(): void {
    this.#unsubscribe();
  }

  #add(record: RelayRecord): void {
    const fp = errorFingerprint(record);
    if (!fp) return;
    const before = this.#groups.get(fp.key);
    const detail = record.failure?.detail;
    const reply = errorReply(record);
    this.#groups.set(fp.key, {
      fingerprint: fp.key,
      class: fp.class,
      upstream: fp.upstream,
      normalized: fp.normalized,
      count: (before?.count ?? 0) + 1,
      firstSeen: before?.firstSeen ?? record.time,
      lastSeen: record.time,
      sample: {
        id: record.id,
        reply,
        error: reply ? null : { code: detail?.code ?? null, cause: detail?.cause ?? null },
      },
    });
  }
}
