/**
 * The control protocol of a running relay (docs/spool.md, "Operating the queue"), spoken on the data
 * folder's lock socket (data-dir-lock.ts): the client writes one request, a line of JSON; the relay
 * answers with lines of JSON and closes. A listing streams one `{"entry": ...}` line per message; the
 * last line is always `{"ok": true, ...}` or `{"ok": false, "error": {"code", "message"}}`.
 *
 * The socket is the authentication: it is the owner's alone (0600), so only the user the relay runs
 * as (and root) can connect. `user` is who the client says it runs as, for the records.
 */
import { z } from 'zod';
import type { QueueErrorCode } from './queue-admin.js';
import { QUEUE_ACTIONS } from './queue-admin.js';
import { SPOOL_STATES } from './spool-entry.js';

export const CONTROL_PROTOCOL_VERSION = 1;

/** A request line longer than this is refused (a request is a few hundred bytes). */
export const MAX_REQUEST_BYTES = 16 * 1024;

const ID = z.string().regex(/^[0-9A-HJKMNP-TV-Z]{26}$/, 'not a mailtrail id (26 characters of Crockford base32)');
const user = z.string().max(256).nullable();
const reason = z.string().max(1000).nullable().default(null);

export const controlRequest = z.discriminatedUnion('op', [
  z.strictObject({
    v: z.literal(CONTROL_PROTOCOL_VERSION),
    op: z.literal('list'),
    state: z.enum(SPOOL_STATES).nullable().default(null),
    query: z.string().max(256).nullable().default(null),
  }),
  z.strictObject({ v: z.literal(CONTROL_PROTOCOL_VERSION), op: z.literal('show'), id: ID }),
  z.strictObject({ v: z.literal(CONTROL_PROTOCOL_VERSION), op: z.literal('act'), action: z.enum(QUEUE_ACTIONS), id: ID, user, reason }),
  z.strictObject({ v: z.literal(CONTROL_PROTOCOL_VERSION), op: z.literal('retry-all'), user, reason }),
]);

export type ControlRequest = z.input<typeof controlRequest>;
export type ParsedControlRequest = z.output<typeof controlRequest>;

export interface ControlError {
  readonly code: QueueErrorCode;
  readonly message: string;
}

/** The last line of every answer. */
export type ControlEnd = ({ readonly ok: true } & Record<string, unknown>) | { readonly ok: false; readonly error: ControlError };
