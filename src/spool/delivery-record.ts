/**
 * The `delivery` record (docs/audit-record.md): one delivery attempt of a spooled message, read like
 * a `relay` record's upstream parts, with the recipients of this attempt and the next step. Pure;
 * the queue manager writes it (Recorder.delivery) before it moves the message on.
 */
import { attemptEntries, failureEntry, recipientEntries, upstreamFacts, upstreamReplyOf } from '../audit/attempt-facts.js';
import {
  AUDIT_SCHEMA_VERSION,
  type Built,
  type DeliveryRecord,
  type FailureEntry,
  type NextStep,
  type RecipientEntry,
  type UpstreamFactsRecord,
} from '../audit/records.js';
import type { DeliveryOutcome } from '../classify/failure-class.js';
import type { RelayDecision } from '../routing/relay-decision.js';

export interface DeliveryRecordInput {
  readonly id: string;
  readonly spoolId: string;
  readonly attempt: number;
  /** The recipients this attempt was for (those still owed). */
  readonly to: readonly string[];
  readonly next: NextStep;
  readonly totalMs: number;
}

/** The record of an attempt the relay engine made. */
export function deliveryRecord(input: DeliveryRecordInput, decision: RelayDecision, outcome: DeliveryOutcome): Built<DeliveryRecord> {
  const deciding = decision.deciding;
  const timing = deciding.result.timing;
  return {
    v: AUDIT_SCHEMA_VERSION,
    type: 'delivery',
    time: new Date().toISOString(),
    id: input.id,
    spoolId: input.spoolId,
    attempt: input.attempt,
    route: decision.route,
    upstream: upstreamFacts(deciding),
    attempts: attemptEntries(decision),
    upstreamReply: upstreamReplyOf(deciding),
    rcpt: recipientEntries(input.to, deciding),
    outcome,
    failure: failureEntry(deciding, deciding.verdict),
    next: input.next,
    timing: {
      totalMs: Math.round(input.totalMs),
      waitMs: Math.round(timing.waitMs),
      connectMs: Math.round(timing.connectMs),
      envelopeMs: Math.round(timing.envelopeMs),
      dataMs: Math.round(timing.dataMs),
    },
    duplicateRisk: outcome === 'unknown',
  };
}

/**
 * The record of an attempt whose answer no process saw: a start-up found its dot mark set (the
 * process before stopped after the final dot went out and before its reply was recorded). Outcome
 * `unknown`, a possible duplicate whatever happens next.
 */
export function unansweredDeliveryRecord(
  input: Omit<DeliveryRecordInput, 'totalMs'>,
  upstream: UpstreamFactsRecord | null,
  since: string,
): Built<DeliveryRecord> {
  const failure: FailureEntry = {
    class: 'unknown_outcome',
    retryable: null,
    actor: 'upstream',
    scope: 'message',
    detail: {
      rule: 'spool-dot-pending',
      code: null,
      cause: null,
      timeoutType: null,
      message: `the final dot went to ${upstream?.name ?? 'the upstream'} at ${since}; mailtrail stopped before its answer was recorded`,
    },
  };
  const rcpt: RecipientEntry[] = input.to.map((to) => ({ to, status: 'unknown', reply: null }));
  return {
    v: AUDIT_SCHEMA_VERSION,
    type: 'delivery',
    time: new Date().toISOString(),
    id: input.id,
    spoolId: input.spoolId,
    attempt: input.attempt,
    route: null,
    upstream,
    attempts: [],
    upstreamReply: null,
    rcpt,
    outcome: 'unknown',
    failure,
    next: input.next,
    timing: { totalMs: 0, waitMs: 0, connectMs: 0, envelopeMs: 0, dataMs: 0 },
    duplicateRisk: true,
  };
}
