import type { SmtpReply } from '../smtp/smtp-reply.js';

/**
 * One delivery event of a spooled message, as the applications' webhooks receive it
 * (docs/spool.md, "Delivery events"). The body is the contract: fields are added, never renamed or
 * removed, and `v` changes if one ever must.
 */

/** What happened to the message. */
export const DELIVERY_EVENT_TYPES = [
  /** Accepted into the spool. */
  'queued',
  /** Every recipient that is still open was delivered (`envelope.recipients` says who, if some bounced before). */
  'delivered',
  /** An attempt failed for now; `nextAttemptAt` says when the next one is. */
  'deferred',
  /** Refused for good (some or all recipients); a DSN may have gone to the sender. */
  'bounced',
  /** Not delivered within spool.maxAge: given up. */
  'expired',
  /** Held: by an operator, or after an unknown outcome (`reason` says which). */
  'held',
] as const;
export type DeliveryEventType = (typeof DELIVERY_EVENT_TYPES)[number];

/** Where one recipient stands after the event. */
export type RecipientState = 'queued' | 'delivered' | 'deferred' | 'bounced' | 'expired' | 'held';

export interface EventRecipient {
  readonly address: string;
  readonly status: RecipientState;
  /** The upstream's answer for this recipient, when there was one (RCPT or after the final dot). */
  readonly reply: SmtpReply | null;
}

/** What the queue manager knows when something happens to a message. */
export interface DeliveryEventInput {
  readonly type: DeliveryEventType;
  /**
   * The event's id (a ULID). Pass the id of the trail record that reports the same thing (the
   * `delivery` or `spool` record), so an event emitted again after a crash keeps its id and the
   * receiver drops it as a duplicate; a fresh id is made when absent.
   */
  readonly id?: string;
  /** The mailtrail id of the message. */
  readonly spoolId: string;
  /** The message's Message-ID header, with its angle brackets; null when it had none. */
  readonly messageId: string | null;
  /** MAIL FROM, without angle brackets; '' for the null sender. */
  readonly from: string;
  readonly recipients: readonly EventRecipient[];
  /** The delivery attempt this event reports (1, 2, ...); 0 when no attempt was made (queued, held by an operator). */
  readonly attempt: number;
  /** The upstream (config name) the attempt went to; null without an attempt. */
  readonly upstream: string | null;
  /** The upstream's reply that decided the event (the final dot's, or the refusal); null when none. */
  readonly reply: SmtpReply | null;
  /** The failure class (docs/failures.md); null for queued and delivered. */
  readonly class: string | null;
  /** deferred: when the next attempt is due; null otherwise. */
  readonly nextAttemptAt: Date | null;
  /** held (and anything else worth a sentence): why, in words; null when the type says it all. */
  readonly reason: string | null;
  /** When it happened; now when absent. */
  readonly time?: Date;
}

/** The JSON body POSTed to each endpoint. */
export interface DeliveryEventBody {
  readonly v: 1;
  readonly id: string;
  readonly type: DeliveryEventType;
  /** RFC 3339, UTC. */
  readonly time: string;
  /** mailtrail's host name, to tell several instances apart. */
  readonly host: string;
  readonly spoolId: string;
  readonly messageId: string | null;
  readonly envelope: { readonly from: string; readonly recipients: readonly EventRecipient[] };
  readonly attempt: number;
  readonly upstream: string | null;
  readonly reply: SmtpReply | null;
  readonly class: string | null;
  readonly nextAttemptAt: string | null;
  readonly reason: string | null;
}

export function eventBody(input: DeliveryEventInput, id: string, time: Date, host: string): DeliveryEventBody {
  return {
    v: 1,
    id,
    type: input.type,
    time: time.toISOString(),
    host,
    spoolId: input.spoolId,
    messageId: input.messageId,
    envelope: {
      from: input.from,
      recipients: input.recipients.map((r) => ({ address: r.address, status: r.status, reply: r.reply === null ? null : replyOf(r.reply) })),
    },
    attempt: input.attempt,
    upstream: input.upstream,
    reply: input.reply === null ? null : replyOf(input.reply),
    class: input.class,
    nextAttemptAt: input.nextAttemptAt === null ? null : input.nextAttemptAt.toISOString(),
    reason: input.reason,
  };
}

/** Only the reply's three fields, whatever else the caller's object carries. */
function replyOf(reply: SmtpReply): SmtpReply {
  return { code: reply.code, enhanced: reply.enhanced, text: reply.text };
}
