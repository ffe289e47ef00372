/**
 * The parts of a record that tell what the upstreams did with one message: every try (`attempts`),
 * the deciding upstream, its reply, the failure, each recipient's fate. Shared by the transaction's
 * `relay` record and the spool's `delivery` record, which read the same way (docs/audit-record.md).
 * Pure.
 */
import type { RelayDecision, ClassifiedAttempt } from '../routing/relay-decision.js';
import type { Verdict } from '../classify/upstream-facts.js';
import { extractQueueId } from '../smtp/reply-text.js';
import type { AttemptEntry, DeliveryRecord, FailureEntry, RecipientEntry, UpstreamFactsRecord } from './records.js';

/** The deciding upstream, as a record names it. */
export function upstreamFacts(deciding: ClassifiedAttempt): UpstreamFactsRecord {
  const { result } = deciding;
  const reply = result.facts.reply;
  return {
    name: result.upstream.name,
    host: result.upstream.host,
    port: result.upstream.port,
    tls: result.tls,
    reusedConnection: result.reusedConnection,
    queueId: result.facts.ok && reply ? extractQueueId(reply.text) : null,
  };
}

/** The deciding upstream's reply, with the step it answered. */
export function upstreamReplyOf(deciding: ClassifiedAttempt): DeliveryRecord['upstreamReply'] {
  const f = deciding.result.facts;
  return f.reply ? { code: f.reply.code, enhanced: f.reply.enhanced, text: f.reply.text, phase: f.replyPhase } : null;
}

/** The classifier's failure with the facts behind it; null when the message went through. */
export function failureEntry(deciding: ClassifiedAttempt, verdict: Verdict): FailureEntry | null {
  const facts = deciding.result.facts;
  if (!verdict.failure) return null;
  return {
    class: verdict.failure.class,
    retryable: verdict.failure.retryable,
    actor: verdict.failure.actor,
    scope: verdict.failure.scope,
    detail: {
      rule: verdict.failure.rule,
      code: facts.errorCode,
      cause: facts.cause,
      timeoutType: facts.timeoutType,
      message: facts.message,
      ...(verdict.failure.hint === undefined ? {} : { hint: verdict.failure.hint }),
    },
  };
}

/** Every try of the route, skipped upstreams included. */
export function attemptEntries(decision: RelayDecision): AttemptEntry[] {
  return decision.attempts.map(attemptEntry);
}

function attemptEntry(a: ClassifiedAttempt): AttemptEntry {
  const f = a.result.facts;
  return {
    upstream: a.result.upstream.name,
    startedAt: a.result.startedAt.toISOString(),
    ms: Math.round(a.result.ms),
    phase: f.phase,
    reply: f.reply,
    error: f.errorCode || f.cause ? { code: f.errorCode, cause: f.cause, message: f.message } : null,
    class: a.verdict.failure?.class ?? null,
  };
}

/** Each recipient's fate from the deciding attempt: its own reply when the upstream gave one. */
export function recipientEntries(to: readonly string[], deciding: ClassifiedAttempt): RecipientEntry[] {
  const f = deciding.result.facts;
  const refused = new Map(f.rejected.map((r) => [r.recipient.toLowerCase(), r.reply]));
  const accepted = new Set(f.accepted.map((a) => a.toLowerCase()));
  const fallback = fallbackStatus(deciding.verdict);
  return to.map((addr) => {
    const key = addr.toLowerCase();
    if (refused.has(key)) {
      const reply = refused.get(key) ?? null;
      return { to: addr, status: reply && reply.code < 500 ? 'deferred' : 'rejected', reply };
    }
    if (accepted.has(key)) return { to: addr, status: 'accepted', reply: null };
    return { to: addr, status: fallback, reply: null };
  });
}

function fallbackStatus(verdict: Verdict): RecipientEntry['status'] {
  switch (verdict.outcome) {
    case 'delivered':
    case 'partial':
      return 'accepted';
    case 'unknown':
      return 'unknown';
    case 'rejected':
      return 'rejected';
    default:
      return 'deferred';
  }
}
