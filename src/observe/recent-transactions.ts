import { LRUCache } from 'lru-cache';
import type { DeliveryRecord, RejectRecord, RelayRecord, SpoolRecord } from '../audit/records.js';
import type { RelayBus } from './relay-events.js';

export type RecentRecord = RelayRecord | RejectRecord | DeliveryRecord | SpoolRecord;
/** What befell a spooled message after its acceptance: its delivery attempts and spool events. */
export type SpoolFollowUp = DeliveryRecord | SpoolRecord;

export interface RecentTransactionsOptions {
  /** Records kept; the least recently written go first. */
  readonly max: number;
  /** How long a record stays findable (ms). */
  readonly ttl: number;
}

/** A Message-ID seen again (an app retrying after a 451) keeps at most this many transaction ids. */
const IDS_PER_MESSAGE_ID = 20;
/** A spooled message keeps at most this many of its later records (the newest): attempts and events. */
const RECORDS_PER_SPOOLED_MESSAGE = 50;

/**
 * The last relay, reject, delivery and spool records, to answer "what happened to id X / Message-ID Y" without
 * reading the trail. Bounded by count and age (lru-cache, PITFALLS §5: `max` always set; no
 * `updateAgeOnGet`, so a record that keeps being looked up still expires).
 */
export class RecentTransactions {
  #byId: LRUCache<string, RecentRecord>;
  #byMessageId: LRUCache<string, string[]>;
  #bySpoolId: LRUCache<string, string[]>;
  #unsubscribe: (() => void)[];

  constructor(bus: RelayBus, options: RecentTransactionsOptions = { max: 5_000, ttl: 3_600_000 }) {
    this.#byId = new LRUCache({ max: options.max, ttl: options.ttl });
    this.#byMessageId = new LRUCache({ max: options.max, ttl: options.ttl });
    this.#bySpoolId = new LRUCache({ max: options.max, ttl: options.ttl });
    this.#unsubscribe = [
      bus.subscribe('relay', (r) => this.#add(r)),
      bus.subscribe('reject', (r) => this.#add(r)),
      bus.subscribe('delivery', (r) => this.#add(r)),
      bus.subscribe('spool', (r) => this.#add(r)),
    ];
  }

  get(id: string): RecentRecord | undefined {
    return this.#byId.get(id);
  }

  /** Every recent transaction of that Message-ID, oldest first; angle brackets are optional. */
  byMessageId(messageId: string): RecentRecord[] {
    const ids = this.#byMessageId.get(messageIdKey(messageId)) ?? [];
    return ids.map((id) => this.#byId.get(id)).filter((r): r is RecentRecord => r !== undefined);
  }

  /** The delivery attempts and spool events of the spooled message `spoolId` still known, oldest first. */
  spoolFollowUp(spoolId: string): SpoolFollowUp[] {
    const ids = this.#bySpoolId.get(spoolId) ?? [];
    return ids.map((id) => this.#byId.get(id)).filter((r): r is SpoolFollowUp => r !== undefined && (r.type === 'delivery' || r.type === 'spool'));
  }

  close(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
  }

  #add(record: RecentRecord): void {
    this.#byId.set(record.id, record);
    if ((record.type === 'delivery' || record.type === 'spool') && record.spoolId !== null) {
      const ids = [...(this.#bySpoolId.get(record.spoolId) ?? []), record.id].slice(-RECORDS_PER_SPOOLED_MESSAGE);
      this.#bySpoolId.set(record.spoolId, ids);
      return;
    }
    const messageId = record.type === 'relay' ? record.message.messageId : null;
    if (!messageId) return;
    const key = messageIdKey(messageId);
    const ids = [...(this.#byMessageId.get(key) ?? []), record.id].slice(-IDS_PER_MESSAGE_ID);
    this.#byMessageId.set(key, ids);
  }
}

function messageIdKey(messageId: string): string {
  return messageId.trim().replace(/^<(.*)>$/, '$1');
}
