/**
 * Operating the queue (docs/spool.md, "Operating the queue"): what an operator may see and do with
 * the spooled messages, whatever the channel (the `mailtrail queue` command over the control socket,
 * later the web console and the API). Listing and showing read the spool; every action goes through
 * QueueActions, which writes a `spool` record naming the action, the message, when, and who did it
 * from where (`by`), and never races a delivery in flight.
 */
import type { SpoolActor, SpoolEvent } from '../audit/records.js';
import { ERR } from '../error-codes.js';
import { SPOOL_STATES, type SpoolEntry, type SpoolState } from './spool-entry.js';

export const QUEUE_ACTIONS = ['retry', 'hold', 'release', 'delete', 'bounce'] as const;
/**
 * `retry`: a queued message is due at once. `hold`: kept for the operator, never tried meanwhile.
 * `release`: a held message is queued again, due at once. `delete`: ended without delivery and
 * without a bounce. `bounce`: ended now as undeliverable, with a delivery status notification to the
 * sender (spool.dsn), as if it had expired.
 */
export type QueueAction = (typeof QUEUE_ACTIONS)[number];

/** The `spool` record's event each action writes when it changes something. */
export const ACTION_EVENTS: Readonly<Record<QueueAction, SpoolEvent>> = {
  retry: 'retry-now',
  hold: 'held',
  release: 'released',
  delete: 'deleted',
  bounce: 'bounced',
};

export interface QueueActionRequest {
  readonly id: string;
  readonly action: QueueAction;
  readonly by: SpoolActor;
  /** The operator's own words for the record's `reason`; null for the action's usual reason. */
  readonly reason: string | null;
}

export interface QueueActionResult {
  readonly id: string;
  readonly action: QueueAction;
  /** False when the message already was as asked (hold of a held one): nothing written. */
  readonly changed: boolean;
  /** What happened, in words ("held", "already held", "deleted", "bounced; DSN 01J... queued"). */
  readonly note: string;
  /** The id of the `spool` record written; null when nothing changed. */
  readonly record: string | null;
  /** The entry after the action; null once the message ended (delete, bounce). */
  readonly entry: SpoolEntry | null;
  /** The delivery status notification queued for the sender (bounce); null when none. */
  readonly dsn: string | null;
}

/**
 * What acting on an entry needs: the queue manager provides it (manager-queue-actions.ts: its actions
 * wait for an attempt in flight to end instead of racing it: a hold or a delete that comes during an
 * attempt applies once the attempt's outcome is recorded). A relay that does not deliver from its spool
 * uses StoreQueueActions, on the store directly, for entries no attempt is delivering. Either way, each action that changes something writes its `spool` record
 * (`retry-now`, `held`, `released`, `deleted`, `bounced`) with `by`, the end records before the files
 * go, and rejects with QueueActionError: ESPOOLENTRY (no such message), EQUEUESTATE (the action does
 * not apply), EQUEUEBUSY (an attempt holds it), EAUDITWRITE (the record could not be written: nothing
 * was done).
 */
export interface QueueActions {
  act(request: QueueActionRequest): Promise<QueueActionResult>;
}

/** What the admin reads: the spool store of the running relay, or the spool folder read-only. */
export interface SpoolReader {
  /** Every entry's id and state, in acceptance order. */
  summaries(): Iterable<{ readonly id: string; readonly state: SpoolState }> | AsyncIterable<{ readonly id: string; readonly state: SpoolState }>;
  /** The entry as its meta has it now; null when gone. */
  get(id: string): Promise<SpoolEntry | null>;
}

export type QueueErrorCode =
  typeof ERR.SPOOL_ENTRY | typeof ERR.QUEUE_STATE | typeof ERR.QUEUE_BUSY | typeof ERR.AUDIT_WRITE | typeof ERR.CONTROL | typeof ERR.SPOOL_WRITE;

/** An action refused or failed; nothing was changed unless the message says otherwise. */
export class QueueActionError extends Error {
  readonly code: QueueErrorCode;

  constructor(code: QueueErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export interface QueueFilter {
  /** Only entries in this state. */
  readonly state?: SpoolState | null;
  /**
   * Only entries where this text appears (any case) in the id, the sender, a recipient, the
   * Message-ID or the From header.
   */
  readonly query?: string | null;
}

/**
 * One message of `mailtrail queue list`, shaped like a line of Postfix's `postqueue -j` (its field
 * names and types, so tools written for it read this too), with mailtrail's own facts after them.
 */
export interface QueueRow {
  /** mailtrail's state of the entry: queued, delivering or held. */
  readonly queue_name: SpoolState;
  readonly queue_id: string;
  /** When it was accepted (Unix seconds). */
  readonly arrival_time: number;
  readonly message_size: number;
  /** Always false: a bounce ends the message at once (Postfix marks it for the queue manager). */
  readonly forced_expire: false;
  /** The envelope sender; "" for the null sender. */
  readonly sender: string;
  /** The recipients still to deliver, each with why its delivery is late (the last attempt's reply). */
  readonly recipients: readonly { readonly address: string; readonly delay_reason?: string }[];
  readonly message_id: string | null;
  readonly attempts: number;
  /** When it is due next (Unix seconds); null when it waits for an operator. */
  readonly next_attempt_time: number | null;
  /** Why and since when it is held, and by whom; null when not held. */
  readonly held: SpoolEntry['held'];
}

const MAX_QUERY = 256;
/** `retryAll` changes this many entries at once. */
const RETRY_ALL_AT_ONCE = 32;

export class QueueAdmin {
  readonly #reader: SpoolReader;
  readonly #actions: QueueActions | null;

  /** `actions` null: read-only (the spool folder of a relay that is not running). */
  constructor(reader: SpoolReader, actions: QueueActions | null) {
    this.#reader = reader;
    this.#actions = actions;
  }

  /** The entries that match, in acceptance order, read one at a time (a large spool is never held in memory whole). */
  async *list(filter: QueueFilter = {}): AsyncGenerator<SpoolEntry> {
    const state = filter.state ?? null;
    const query = filter.query ? filter.query.slice(0, MAX_QUERY).toLowerCase() : null;
    for await (const summary of this.#reader.summaries()) {
      if (state !== null && summary.state !== state) continue;
      const entry = await this.#reader.get(summary.id);
      if (entry === null) continue;
      if (state !== null && entry.state !== state) continue;
      if (query !== null && !matches(entry, query)) continue;
      yield entry;
    }
  }

  /** The entry; rejects with ESPOOLENTRY when the spool does not have it. */
  async show(id: string): Promise<SpoolEntry> {
    const entry = await this.#reader.get(id);
    if (entry === null) throw noSuchMessage(id);
    return entry;
  }

  retry(id: string, by: SpoolActor, reason: string | null = null): Promise<QueueActionResult> {
    return this.act({ id, action: 'retry', by, reason });
  }

  hold(id: string, by: SpoolActor, reason: string | null = null): Promise<QueueActionResult> {
    return this.act({ id, action: 'hold', by, reason });
  }

  release(id: string, by: SpoolActor, reason: string | null = null): Promise<QueueActionResult> {
    return this.act({ id, action: 'release', by, reason });
  }

  delete(id: string, by: SpoolActor, reason: string | null = null): Promise<QueueActionResult> {
    return this.act({ id, action: 'delete', by, reason });
  }

  bounce(id: string, by: SpoolActor, reason: string | null = null): Promise<QueueActionResult> {
    return this.act({ id, action: 'bounce', by, reason });
  }

  /**
   * Every `queued` message due at once (Postfix's `postqueue -f`), one `retry-now` record each.
   * Held messages stay held, and those an attempt is delivering are left to it. Resolves with how
   * many were made due, and how many were skipped (ended or taken meanwhile).
   */
  async retryAll(by: SpoolActor, reason: string | null = null): Promise<{ readonly retried: number; readonly skipped: number }> {
    const ids: string[] = [];
    for await (const s of this.#reader.summaries()) if (s.state === 'queued') ids.push(s.id);
    let retried = 0;
    let skipped = 0;
    const one = async (id: string): Promise<void> => {
      try {
        if ((await this.act({ id, action: 'retry', by, reason })).changed) retried += 1;
      } catch (err) {
        const code = (err as QueueActionError).code;
        if (code !== ERR.SPOOL_ENTRY && code !== ERR.QUEUE_STATE && code !== ERR.QUEUE_BUSY) throw err;
        skipped += 1;
      }
    };
    // A few at a time: each change is flushed, and changes in flight together share the folder's fsync.
    for (let i = 0; i < ids.length; i += RETRY_ALL_AT_ONCE) await Promise.all(ids.slice(i, i + RETRY_ALL_AT_ONCE).map(one));
    return { retried, skipped };
  }

  act(request: QueueActionRequest): Promise<QueueActionResult> {
    if (this.#actions === null) {
      return Promise.reject(new QueueActionError(ERR.CONTROL, 'the relay is not running: actions on the queue need it (list and show work without it)'));
    }
    return this.#actions.act(request);
  }
}

/** A `queue list --json` line (postqueue -j's shape; see QueueRow). */
export function queueRow(entry: SpoolEntry): QueueRow {
  const delay = entry.lastAttempt?.reply ?? undefined;
  return {
    queue_name: entry.state,
    queue_id: entry.id,
    arrival_time: Math.floor(Date.parse(entry.acceptedAt) / 1000),
    message_size: entry.message.size,
    forced_expire: false,
    sender: entry.from,
    recipients: entry.rcpt.filter((r) => r.state === 'pending').map((r) => (delay === undefined ? { address: r.to } : { address: r.to, delay_reason: delay })),
    message_id: entry.message.messageId,
    attempts: entry.attempts,
    next_attempt_time: entry.nextAttemptAt === null ? null : Math.floor(Date.parse(entry.nextAttemptAt) / 1000),
    held: entry.held,
  };
}

export function isSpoolState(value: string): value is SpoolState {
  return (SPOOL_STATES as readonly string[]).includes(value);
}

export function noSuchMessage(id: string): QueueActionError {
  return new QueueActionError(ERR.SPOOL_ENTRY, `no message ${id} in the spool (it ended, or never was: mailtrail lookup ${id} tells its story)`);
}

function matches(entry: SpoolEntry, query: string): boolean {
  const has = (s: string | null): boolean => s !== null && s.toLowerCase().includes(query);
  return has(entry.id) || has(entry.from) || entry.rcpt.some((r) => has(r.to)) || has(entry.message.messageId) || has(entry.message.headerFrom);
}
