import { LRUCache } from 'lru-cache';
import type { DeliveryRecord, RelayRecord } from '../audit/records.js';
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
  /** The latest occurrence: its record's id (a relay, or a delivery from the spool) and the upstream's reply (or error when none came). */
  readonly sample: {
    readonly id: string;
    /** The spooled message a delivery attempt was of; null for a relay. */
    readonly spoolId: string | null;
    readonly reply: RelayRecord['rcpt'][number]['reply'];
    readonly error: { readonly code: string | null; readonly cause: string | null } | null;
  };
}

/**
 * Live error groups (Sentry-style) from relay failures and failed delivery attempts from the spool, bounded: the least recently seen group is
 * forgotten first once `max` groups exist, so a flood of distinct replies cannot grow memory.
 */
export class ErrorGroups {
  #groups: LRUCache<string, ErrorGroup>;
  #unsubscribe: () => void;

  constructor(bus: RelayBus, max = 500) {
    this.#groups = new LRUCache({ max });
    const off = [bus.subscribe('relay', (r) => this.#add(r)), bus.subscribe('delivery', (r) => this.#add(r))];
    this.#unsubscribe = () => off.forEach((f) => f());
  }

  /** Most recently seen first. */
  list(): ErrorGroup[] {
    return [...this.#groups.values()].sort((a, b) => b.lastSeen.localeCompare(a.lastSeen));
  }

  close(): void {
    this.#unsubscribe();
  }

  #add(record: RelayRecord | DeliveryRecord): void {
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
        spoolId: record.type === 'delivery' ? record.spoolId : null,
        reply,
        error: reply ? null : { code: detail?.code ?? null, cause: detail?.cause ?? null },
      },
    });
  }
}
