/**
 * One line of the console's transaction list, as `GET /api/v1/transactions` and the live stream give
 * it (docs/api.md, "Transaction summary"): built from a `relay` or `reject` record, the same way for
 * the bus (live) and the index (history), so both show the same thing.
 */
import type { AuditRecord, RelayRecord } from '../audit/records.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';

export interface TransactionSummary {
  readonly id: string;
  readonly time: string;
  readonly type: string;
  /** A relay's outcome; `refused` for a reject record. */
  readonly outcome: string;
  readonly class: string | null;
  readonly from: string | null;
  readonly to: readonly string[];
  readonly messageId: string | null;
  readonly subject: string | null;
  /** The SMTP user the client logged in as (what a console user's scope is about). */
  readonly user: string | null;
  readonly client: string | null;
  readonly upstream: string | null;
  readonly upstreamReply: SmtpReply | null;
  readonly clientReply: SmtpReply | null;
  readonly totalMs: number | null;
  /** The mailtrail instance that wrote the record, when the record names one. */
  readonly instance: string | null;
  /** The spool's part, when the record has one (records of a spool). */
  readonly spool?: unknown;
}

/** True for the record types the list shows. */
export function isListed(record: AuditRecord | { type: string }): boolean {
  return record.type === 'relay' || record.type === 'reject' || record.type === 'delivery' || record.type === 'spool';
}

/** The summary of a listed record. Tolerant: a record of a newer writer may lack fields. */
export function summarise(record: AuditRecord): TransactionSummary {
  const r = record as unknown as Partial<Omit<RelayRecord, 'type'>> & { type: string; instance?: unknown; spool?: unknown };
  const reject = record.type === 'reject' ? record : null;
  const relay = reject === null;
  const reply = (x: unknown): SmtpReply | null => {
    if (x === null || typeof x !== 'object') return null;
    const { code, enhanced, text } = x as SmtpReply;
    return { code, enhanced: enhanced ?? null, text: text ?? '' };
  };
  const summary: TransactionSummary = {
    id: String(r.id),
    time: String(r.time),
    type: r.type,
    outcome: relay ? String(r.outcome ?? 'unknown') : 'refused',
    class: reject ? (reject.class ?? null) : (r.failure?.class ?? null),
    from: r.from ?? null,
    to: reject ? (reject.to ? [reject.to] : []) : (r.rcpt ?? []).map((x) => x.to),
    messageId: r.message?.messageId ?? null,
    subject: r.message?.subject ?? null,
    user: r.client?.user ?? null,
    client: r.client?.ip ?? null,
    upstream: r.upstream?.name ?? null,
    upstreamReply: reply(r.upstreamReply),
    clientReply: reply(r.clientReply),
    totalMs: r.timing?.totalMs ?? null,
    instance: typeof r.instance === 'string' ? r.instance : null,
  };
  return r.spool === undefined ? summary : { ...summary, spool: r.spool };
}
