/**
 * The operator's actions (queue-admin.ts) carried out by the queue manager, so an action never races
 * a delivery: each waits for an attempt in flight on its entry, then writes its `spool` record and
 * changes the entry (docs/spool.md, "Operating the queue").
 */
import { ERR } from '../error-codes.js';
import { ACTION_EVENTS, noSuchMessage, QueueActionError, type QueueActionRequest, type QueueActionResult, type QueueActions } from './queue-admin.js';
import type { QueueManager } from './queue-manager.js';
import type { SpoolEntry } from './spool-entry.js';

export class ManagerQueueActions implements QueueActions {
  readonly #queue: QueueManager;
  readonly #store: { get(id: string): Promise<SpoolEntry | null> };

  constructor(queue: QueueManager, store: { get(id: string): Promise<SpoolEntry | null> }) {
    this.#queue = queue;
    this.#store = store;
  }

  async act(request: QueueActionRequest): Promise<QueueActionResult> {
    const { id, action, by } = request;
    const before = await this.#store.get(id);
    if (before === null) throw noSuchMessage(id);
    // A held message stays held until released: retry does not release it behind the holder's back.
    if (action === 'retry' && before.state === 'held') throw new QueueActionError(ERR.QUEUE_STATE, `${id} is held: release it to deliver it`);
    const reason = request.reason ?? undefined;
    let done;
    try {
      done =
        action === 'retry'
          ? await this.#queue.retryNow(id, by)
          : action === 'hold'
            ? await this.#queue.hold(id, by, reason)
            : action === 'release'
              ? await this.#queue.release(id, by)
              : action === 'delete'
                ? await this.#queue.delete(id, by, reason)
                : await this.#queue.bounce(id, by, reason);
    } catch (err) {
      if ((err as { code?: string }).code === ERR.SPOOL_ENTRY) throw noSuchMessage(id);
      throw err;
    }
    if (done.code === ERR.AUDIT_WRITE) {
      throw new QueueActionError(ERR.AUDIT_WRITE, 'the audit trail could not record it, so nothing was done');
    }
    const ended = done.state === 'deleted' || done.state === 'bounced';
    const event = ACTION_EVENTS[action];
    const note = !done.changed
      ? (done.why ?? 'unchanged')
      : done.dsn !== null
        ? `${event}; DSN ${done.dsn} queued for ${before.from || '<>'}`
        : action === 'bounce'
          ? `${event}; no DSN`
          : event;
    return { id, action, changed: done.changed, note, record: done.record, entry: ended ? null : await this.#store.get(id), dsn: done.dsn };
  }
}
