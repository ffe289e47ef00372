import { createHash } from 'node:crypto';
import type { DeliveryRecord, RelayRecord } from '../audit/records.js';

/** A record that can fail at an upstream: a relay, or a delivery attempt from the spool. */
export type FailedRecord = Pick<RelayRecord | DeliveryRecord, 'failure' | 'upstream' | 'upstreamReply' | 'outcome' | 'rcpt'>;

export interface ErrorFingerprint {
  /** Stable key: class + upstream + normalised reply text, hashed (short hex). */
  readonly key: string;
  readonly class: string;
  readonly upstream: string | null;
  /** The reply text with addresses, ids and numbers replaced by placeholders. */
  readonly normalized: string;
}

/**
 * Groups failures that are "the same error" (Sentry-style): the same class at the same upstream with
 * the same reply once the parts that vary per message are masked. Shared by the live error groups
 * (GET /api/errors) and `mailtrail report`, so both show the same groups. A delivery attempt from
 * the spool is fingerprinted like a relay: the same provider error groups with its pass-through twin.
 */
export function errorFingerprint(record: FailedRecord): ErrorFingerprint | null {
  if (!record.failure) return null;
  const reply = errorReply(record);
  const d = record.failure.detail;
  // Reply code and enhanced code are kept as they are: they are part of what makes two errors the same.
  // Without a reply: the system cause or error code, else the message (all a local refusal such as a
  // message over limits.maxMessageSize has).
  const normalized = reply
    ? `${reply.code}${reply.enhanced ? ` ${reply.enhanced}` : ''} ${normalizeReplyText(reply.text)}`
    : normalizeReplyText(d.cause ?? d.code ?? d.message ?? '');
  const upstream = record.upstream?.name ?? null;
  const key = createHash('sha256')
    .update(`${record.failure.class}\u0000${upstream ?? ''}\u0000${normalized}`)
    .digest('hex')
    .slice(0, 16);
  return { key, class: record.failure.class, upstream, normalized };
}

/**
 * The reply that says what went wrong: the deciding reply, except on a partial delivery, where that
 * is the final 250 and the error is the first refused recipient's reply. Fingerprints and the
 * samples shown beside them both use it, so a group's sample always shows its own error.
 */
export function errorReply(record: FailedRecord): RelayRecord['rcpt'][number]['reply'] {
  const refused = record.outcome === 'partial' ? record.rcpt.find((r) => r.status !== 'accepted' && r.reply)?.reply : undefined;
  return refused ?? record.upstreamReply;
}

/** Masks what varies per message: addresses, bracketed ids, hex/base32 ids, IPs, numbers. */
export function normalizeReplyText(text: string): string {
  return (
    text
      .replace(/\(id [0-9A-Z]{26}\)/g, '(id <id>)')
      .replace(/<[^<>\s]*@[^<>\s]*>/g, '<address>')
      .replace(/[^\s<>()[\]"',;:]+@[^\s<>()[\]"',;:]+/g, '<address>')
      .replace(/\b\d{1,3}(?:\.\d{1,3}){3}\b/g, '<ip>')
      .replace(/\[[0-9a-fA-F:.]+\]/g, '[<ip>]')
      .replace(/<[^<>\s]{8,}>/g, '<id>')
      // Queue ids and similar tokens: 8+ characters mixing letters and digits.
      .replace(/\b(?=[0-9A-Za-z-]*\d)(?=[0-9A-Za-z-]*[A-Za-z])[0-9A-Za-z][0-9A-Za-z-]{7,}\b/g, '<id>')
      .replace(/\b\d+\b/g, '<n>')
      .replace(/\s+/g, ' ')
      .trim()
  );
}
