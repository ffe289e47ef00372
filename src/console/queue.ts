/**
 * What the console needs of the spool (the queue of messages mailtrail holds for a later try): list
 * its entries, show one, act on some. The spool implements it and the composition root passes it in;
 * without a spool the queue endpoints answer 404 `no_spool` (docs/api.md, "Queue").
 */

import type { QueueAction } from '../spool/queue-admin.js';

// The spool's own list of actions (spool/queue-admin.ts): the console offers exactly those.
export { QUEUE_ACTIONS, type QueueAction } from '../spool/queue-admin.js';

/** One spooled message, as the spool describes it; `user` is what a console user's scope is about. */
export interface SpoolEntry {
  readonly id: string;
  /** The SMTP user the client logged in as (null: relayed by network). */
  readonly user: string | null;
  readonly [field: string]: unknown;
}

export interface SpoolFilter {
  /** The spool's own state names (queued, held, ...); null = any. */
  readonly state: string | null;
  /** Free text as the spool understands it; null = none. */
  readonly q: string | null;
  /** Only the entries of these SMTP users; null = all (the console passes a scoped user's scope). */
  readonly users: readonly string[] | null;
}

/** Who acted, for the spool's audit record (`spool` record `by`). */
export interface QueueActor {
  /** `console`: a logged-in console user; `api`: a script with the bearer token. */
  readonly channel: 'console' | 'api';
  readonly user: string;
  readonly address: string;
}

export interface QueueActionResult {
  readonly id: string;
  readonly ok: boolean;
  /** Why not, when not: `not_found`, or the spool's own code. */
  readonly code?: string;
  readonly message?: string;
}

export interface SpoolControl {
  list(filter: SpoolFilter, page: { readonly limit: number; readonly cursor: string | null }): Promise<{ items: SpoolEntry[]; next: string | null }>;
  show(id: string): Promise<SpoolEntry | null>;
  /** Acts on each id; writes one audit record per action naming `by`. */
  act(action: QueueAction, ids: readonly string[], by: QueueActor): Promise<QueueActionResult[]>;
  /** Entries parked per upstream (for `GET /api/v1/upstreams`). */
  parked(): ReadonlyMap<string, number>;
}
