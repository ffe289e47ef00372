/**
 * The queue actions done on the spool store itself (queue-admin.ts, QueueActions), for a relay whose
 * entries no queue manager delivers. It never races an attempt: an entry `delivering` is refused with
 * EQUEUEBUSY, and each change is checked and made within the store's per-entry order (spool-store.ts),
 * so no lease can slip between the check and the change. An action that ends the message (delete,
 * bounce) first holds it, which keeps any lease off it, then writes the end record, then removes it.
 *
 * Records come first, as for every end (docs/spool.md, "Durability"): the trail never lacks what was
 * done, and an action whose record cannot be written does nothing (EAUDITWRITE).
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Built, SpoolActor, SpoolRecord } from '../audit/records.js';
import { ERR } from '../error-codes.js';
import type { Logger } from '../logger.js';
import { buildDsn, type DsnRecipient } from './dsn.js';
import {
  ACTION_EVENTS,
  noSuchMessage,
  QueueActionError,
  type QueueAction,
  type QueueActionRequest,
  type QueueActionResult,
  type QueueActions,
} from './queue-admin.js';
import type { SpoolEntry } from './spool-entry.js';
import { spoolRecord } from './spool-records.js';
import { SpoolError, type SpoolStore } from './spool-store.js';

export interface StoreQueueActionsOptions {
  readonly store: SpoolStore;
  /** Writes the `spool` record; false (or a throw) when it is not in the trail. */
  readonly recorder: { spool(record: Built<SpoolRecord>): boolean };
  readonly ids: { next(time?: number): string };
  readonly log: Logger;
  /** mailtrail's host name (config `hostname`): the DSN's Reporting-MTA. */
  readonly hostname: string;
  /** spool.dsn: a bounce sends the sender a delivery status notification. */
  readonly dsn: boolean;
  /** spool.maxAge (ms): the DSN says until when the message would have been tried. */
  readonly maxAge: number;
  readonly now?: () => number;
}

/** The header block of a message is read up to this many bytes (the DSN returns at most 64 KiB of it). */
const HEADER_READ = 256 * 1024;

/** The record each action writes, and its usual reason. */
/** The record's reason for each action, when the operator gave none. */
const REASONS: Readonly<Record<QueueAction, string>> = {
  retry: 'made due at once by an operator',
  hold: 'held by an operator',
  release: 'released by an operator: due at once',
  delete: 'deleted by an operator, without a bounce',
  bounce: 'bounced by an operator: given up as undeliverable',
};

export class StoreQueueActions implements QueueActions {
  readonly #o: StoreQueueActionsOptions;
  readonly #now: () => number;

  constructor(options: StoreQueueActionsOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  async act(request: QueueActionRequest): Promise<QueueActionResult> {
    const { id, action } = request;
    if (this.#o.store.summary(id) === undefined) throw noSuchMessage(id);
    try {
      switch (action) {
        case 'retry':
          return await this.#change(request, (e) => {
            if (e.state === 'held')
              throw new QueueActionError(ERR.QUEUE_STATE, `message ${id} is held: release it (mailtrail queue release ${id}) and it is due at once`);
            return { ...e, nextAttemptAt: new Date(this.#now()).toISOString() };
          });
        case 'hold':
          return await this.#change(request, (e) => (e.state === 'held' ? 'already held' : this.#held(e, request, null)));
        case 'release':
          return await this.#change(request, (e) =>
            e.state !== 'held' ? 'not held' : { ...e, state: 'queued', held: null, nextAttemptAt: new Date(this.#now()).toISOString() },
          );
        case 'delete':
        case 'bounce':
          return await this.#end(request);
      }
    } catch (err) {
      if (err instanceof SpoolError && err.code === ERR.SPOOL_ENTRY) throw noSuchMessage(id);
      throw err;
    }
  }

  /**
   * A change of state: checked, recorded and written within the entry's order. `change` returns the
   * new entry, or a note when the entry already is as asked (nothing written).
   */
  async #change(request: QueueActionRequest, change: (e: SpoolEntry) => SpoolEntry | string): Promise<QueueActionResult> {
    const done: { note: string | null; record: string | null } = { note: null, record: null };
    const entry = await this.#o.store.update(request.id, (e) => {
      if (e.state === 'delivering') throw busy(request.id);
      const next = change(e);
      if (typeof next === 'string') {
        done.note = next;
        return e;
      }
      done.record = this.#record(request, null);
      return next;
    });
    const event = ACTION_EVENTS[request.action];
    return { id: request.id, action: request.action, changed: done.record !== null, note: done.note ?? event, record: done.record, entry, dsn: null };
  }

  /** Delete or bounce: held (no lease can take it now), the DSN queued for a bounce, the end record, then the files go. */
  async #end(request: QueueActionRequest): Promise<QueueActionResult> {
    const { id, action } = request;
    let original: SpoolEntry | null = null;
    const before = await this.#o.store.update(id, (e) => {
      if (e.state === 'delivering') throw busy(id);
      original = e;
      return e.state === 'held' ? e : this.#held(e, request, `being ${action === 'delete' ? 'deleted' : 'bounced'} by an operator`);
    });
    let dsn: { id: string; note: string | null } = { id: '', note: null };
    if (action === 'bounce') dsn = await this.#queueDsn(before);
    const dsnId = dsn.id === '' ? null : dsn.id;
    let record: string;
    try {
      record = this.#record(request, dsnId, dsn.note);
    } catch (err) {
      // Nothing ended: the DSN queued for it goes, and the message is as it was before.
      if (dsnId !== null) await this.#o.store.remove(dsnId).catch((e: unknown) => this.#o.log.error({ err: e, id: dsnId }, 'could not take back a DSN'));
      const restore = original as SpoolEntry | null;
      if (restore !== null && restore.state !== 'held') {
        await this.#o.store
          .update(id, (e) => ({ ...e, state: restore.state, held: restore.held, nextAttemptAt: restore.nextAttemptAt }))
          .catch((e: unknown) => this.#o.log.error({ err: e, id }, 'a message an operator could not end is left held'));
      }
      throw err;
    }
    if (dsnId !== null) await this.#o.store.markRecorded(dsnId).catch((err: unknown) => this.#o.log.warn({ err, id: dsnId }, 'DSN not marked recorded'));
    await this.#o.store.remove(id);
    const event = ACTION_EVENTS[action];
    const note = dsnId !== null ? `${event}; DSN ${dsnId} queued for ${before.from}` : dsn.note !== null ? `${event}; ${dsn.note}` : event;
    return { id, action, changed: true, note, record, entry: null, dsn: dsnId };
  }

  #held(e: SpoolEntry, request: QueueActionRequest, why: string | null): SpoolEntry {
    return {
      ...e,
      state: 'held',
      nextAttemptAt: null,
      held: { since: new Date(this.#now()).toISOString(), reason: why ?? request.reason ?? REASONS.hold, by: who(request.by) },
    };
  }

  /** Writes the action's `spool` record; throws EAUDITWRITE when it is not in the trail. */
  #record(request: QueueActionRequest, dsn: string | null, dsnNote: string | null = null): string {
    const event = ACTION_EVENTS[request.action];
    const reason = REASONS[request.action];
    const id = this.#o.ids.next(this.#now());
    const why = [request.reason ?? reason, dsnNote].filter((s) => s !== null).join('; ');
    let written: boolean;
    try {
      written = this.#o.recorder.spool(spoolRecord({ id, spoolId: request.id, event, reason: why, by: request.by, dsn, at: this.#now() }));
    } catch (err) {
      throw new QueueActionError(ERR.AUDIT_WRITE, `the audit trail could not record it, so nothing was done (${(err as Error).message})`);
    }
    if (!written) throw new QueueActionError(ERR.AUDIT_WRITE, 'the audit trail could not record it, so nothing was done');
    return id;
  }

  /**
   * The bounce's DSN (RFC 3464), queued in the spool from `<>` to the sender, through the same route
   * as the message (its client). Resolves with its id, or a note on why none was sent.
   */
  async #queueDsn(entry: SpoolEntry): Promise<{ id: string; note: string | null }> {
    if (!this.#o.dsn) return { id: '', note: 'no DSN (spool.dsn is off)' };
    const now = this.#now();
    const last = entry.lastAttempt;
    const recipients: DsnRecipient[] = entry.rcpt
      .filter((r) => r.state !== 'bounced')
      .map((r) => ({
        address: r.to,
        status: r.state === 'delivered' ? 'delivered' : 'failed',
        reply: null,
        remoteMta: null,
        lastAttemptAt: last === null ? null : new Date(last.at),
        class: null,
      }));
    const id = this.#o.ids.next(now);
    const arrivedAt = new Date(entry.acceptedAt);
    const built = await buildDsn({
      id,
      spoolId: entry.id,
      reportingHost: this.#o.hostname,
      from: entry.from,
      recipients,
      originalHeaders: await headerBlock(this.#o.store.bodyPath(entry.id)),
      arrivedAt,
      expiresAt: new Date(arrivedAt.getTime() + this.#o.maxAge),
      reportedAt: new Date(now),
    });
    if (built.dsn === null) return { id: '', note: `no DSN (${built.reason})` };
    const raw = built.dsn.raw;
    await this.#o.store.accept({
      id,
      acceptance: { mode: 'spool', reason: `delivery status notification for ${entry.id}` },
      from: '',
      to: [built.dsn.envelope.to],
      use8BitMime: false,
      message: {
        size: raw.length,
        sha256: createHash('sha256').update(raw).digest('hex'),
        messageId: built.dsn.messageId,
        headerFrom: `MAILER-DAEMON@${this.#o.hostname}`,
      },
      client: entry.client,
      body: raw,
    });
    return { id, note: null };
  }
}

function busy(id: string): QueueActionError {
  return new QueueActionError(ERR.QUEUE_BUSY, `message ${id} is being delivered right now: nothing was changed; try again when the attempt ends`);
}

/** How a meta's `held.by` names the operator: the user, else the channel. */
function who(by: SpoolActor): string {
  return by.user ?? by.channel;
}

/** The message's header block (up to the first empty line), read from the start of its body file. */
async function headerBlock(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(HEADER_READ);
    const { bytesRead } = await handle.read(buffer, 0, HEADER_READ, 0);
    const head = buffer.subarray(0, bytesRead);
    const end = head.indexOf('\r\n\r\n');
    if (end !== -1) return head.subarray(0, end + 2);
    const lf = head.indexOf('\n\n');
    return lf === -1 ? head : head.subarray(0, lf + 1);
  } finally {
    await handle.close();
  }
}
