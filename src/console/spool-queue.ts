/**
 * The console's queue endpoints (docs/api.md, "Queue") on the running relay's spool: the same
 * QueueAdmin `mailtrail queue` talks to over the control socket, so an action from the browser, a
 * script or the command line goes through one path, never races a delivery, and writes the same
 * `spool` record, naming the console user (or `api` for a bearer token) and their address.
 */
import type { SpoolActor } from '../audit/records.js';
import { QueueActionError, type QueueAdmin } from '../spool/queue-admin.js';
import type { SpoolEntry as StoredEntry } from '../spool/spool-entry.js';
import type { QueueAction, QueueActionResult, QueueActor, SpoolControl, SpoolEntry, SpoolFilter } from './queue.js';
import { ERR } from '../error-codes.js';

export class SpoolQueue implements SpoolControl {
  readonly #admin: QueueAdmin;
  readonly #parked: () => ReadonlyMap<string, number>;

  /** `parked`: the entries held back per parked upstream, as the queue manager knows them. */
  constructor(admin: QueueAdmin, parked: () => ReadonlyMap<string, number> = () => new Map()) {
    this.#admin = admin;
    this.#parked = parked;
  }

  /** In acceptance order (the queue's own), `cursor` being the last id of the previous page. */
  async list(filter: SpoolFilter, page: { readonly limit: number; readonly cursor: string | null }): Promise<{ items: SpoolEntry[]; next: string | null }> {
    const state = filter.state === 'queued' || filter.state === 'delivering' || filter.state === 'held' ? filter.state : null;
    if (filter.state !== null && state === null) return { items: [], next: null };
    const items: SpoolEntry[] = [];
    let more = false;
    for await (const entry of this.#admin.list({ state, query: filter.q })) {
      // ULIDs sort by acceptance: the ids of the next page are those after the cursor.
      if (page.cursor !== null && entry.id <= page.cursor) continue;
      if (filter.users !== null && (entry.client.user === null || !filter.users.includes(entry.client.user))) continue;
      if (items.length === page.limit) {
        more = true;
        break;
      }
      items.push(view(entry));
    }
    return { items, next: more ? items[items.length - 1]!.id : null };
  }

  async show(id: string): Promise<SpoolEntry | null> {
    try {
      return view(await this.#admin.show(id));
    } catch (err) {
      if (err instanceof QueueActionError && err.code === ERR.SPOOL_ENTRY) return null;
      throw err;
    }
  }

  async act(action: QueueAction, ids: readonly string[], by: QueueActor): Promise<QueueActionResult[]> {
    const actor: SpoolActor = { channel: by.channel, user: by.user, address: by.address };
    const results: QueueActionResult[] = [];
    // One at a time: each action writes its record before the next one starts, in the order asked.
    for (const id of ids) {
      try {
        const done = await this.#admin.act({ id, action, by: actor, reason: null });
        results.push({ id, ok: true, message: done.note });
      } catch (err) {
        if (!(err instanceof QueueActionError)) throw err;
        results.push({ id, ok: false, code: err.code === ERR.SPOOL_ENTRY ? 'not_found' : err.code, message: err.message });
      }
    }
    return results;
  }

  parked(): ReadonlyMap<string, number> {
    return this.#parked();
  }
}

/** What the console shows of an entry: `user` for the scope, then what a listing needs. */
function view(entry: StoredEntry): SpoolEntry {
  return {
    id: entry.id,
    user: entry.client.user,
    state: entry.state,
    mode: entry.mode,
    reason: entry.reason,
    acceptedAt: entry.acceptedAt,
    from: entry.from,
    to: entry.rcpt.filter((r) => r.state === 'pending').map((r) => r.to),
    done: entry.rcpt.filter((r) => r.state !== 'pending').map((r) => ({ to: r.to, state: r.state })),
    messageId: entry.message.messageId,
    headerFrom: entry.message.headerFrom,
    size: entry.message.size,
    client: { ip: entry.client.ip, user: entry.client.user },
    attempts: entry.attempts,
    nextAttemptAt: entry.nextAttemptAt,
    lastAttempt: entry.lastAttempt,
    held: entry.held,
  };
}
