/**
 * The `spool` record (docs/audit-record.md): a spooled message's end or change of state without an
 * attempt, or an upstream's queue parked or unparked. Pure; the caller writes it (Recorder.spool)
 * before acting on it (docs/spool.md: the end record first, then the files go).
 */
import { AUDIT_SCHEMA_VERSION, type Built, type SpoolActor, type SpoolEvent, type SpoolRecord } from '../audit/records.js';

export interface SpoolRecordInput {
  /** This record's own id. */
  readonly id: string;
  /** The message (the accepting transaction's id); null for an event about an upstream. */
  readonly spoolId: string | null;
  readonly event: SpoolEvent;
  /** The upstream of a `parked` / `unparked` event. */
  readonly upstream?: string | null;
  readonly reason?: string | null;
  /** The operator; absent or null for mailtrail itself. */
  readonly by?: SpoolActor | null;
  /** The spool id of the delivery status notification queued for the sender. */
  readonly dsn?: string | null;
  /** When (ms); now by default. */
  readonly at?: number;
}

export function spoolRecord(input: SpoolRecordInput): Built<SpoolRecord> {
  return {
    v: AUDIT_SCHEMA_VERSION,
    type: 'spool',
    time: new Date(input.at ?? Date.now()).toISOString(),
    id: input.id,
    spoolId: input.spoolId,
    event: input.event,
    upstream: input.upstream ?? null,
    reason: input.reason ?? null,
    by: input.by ?? null,
    dsn: input.dsn == null ? null : { id: input.dsn },
  };
}
