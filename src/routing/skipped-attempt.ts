import type { UpstreamConfig } from '../config/types.js';
import type { ClassifiedAttempt } from './relay-decision.js';
import type { UpstreamFacts, Verdict } from '../classify/upstream-facts.js';
import { ERR } from '../error-codes.js';

/**
 * An upstream that mailtrail did not even try: its breaker is open. Recorded in `attempts[]` like
 * any try (phase `connecting`, ms 0, error EBREAKEROPEN) so the trail shows why the next upstream got
 * the message. Class `upstream_unavailable`; when every upstream of the route is open the client gets
 * 451 4.4.1 (RFC 3463 X.4.1 "no answer from host") at once instead of waiting on timeouts.
 */
export function breakerSkip(upstream: UpstreamConfig, retryInMs: number): ClassifiedAttempt {
  const facts = skipFacts(ERR.BREAKER_OPEN, `circuit breaker open; next try in ${retryInMs} ms`);
  const verdict: Verdict = {
    outcome: 'deferred',
    failure: { class: 'upstream_unavailable', retryable: true, actor: 'upstream', scope: 'connection', rule: 'breaker-open' },
    mayFailOver: true,
  };
  return { result: skipResult(upstream, facts, new Date(), 0), verdict };
}

/**
 * An upstream the spool has parked for the message's account-wide failure (`upstream_auth`, `quota`,
 * `tls`; docs/spool.md, "Parking"): not tried, recorded like an open breaker (code EPARKED, rule
 * `spool-parked`) so the trail shows why the route's next upstream got the message. Only deliveries
 * from the spool skip parked upstreams; pass-through traffic still tries them.
 */
export function parkedSkip(upstream: UpstreamConfig, why: string): ClassifiedAttempt {
  const facts = skipFacts(ERR.PARKED, why);
  const verdict: Verdict = {
    outcome: 'deferred',
    failure: { class: 'upstream_unavailable', retryable: true, actor: 'operator', scope: 'connection', rule: 'spool-parked' },
    mayFailOver: true,
  };
  return { result: skipResult(upstream, facts, new Date(), 0), verdict };
}

/**
 * An upstream whose configured sending rate (or adaptive slow-down) would make the message wait past
 * its relay deadline or `rateLimit.maxWait`. Class `throttled` with actor `operator` (our own limit:
 * the traffic exceeds the plan the operator configured, the provider said nothing), 451 4.7.0.
 */
export function rateLimitSkip(upstream: UpstreamConfig, startedAt: Date, waitedMs: number, why: string): ClassifiedAttempt {
  const facts = skipFacts(ERR.RATE_LIMIT, why);
  const verdict: Verdict = {
    outcome: 'deferred',
    failure: { class: 'throttled', retryable: true, actor: 'operator', scope: 'account', rule: 'egress-rate-limit' },
    mayFailOver: true,
  };
  return { result: skipResult(upstream, facts, startedAt, waitedMs), verdict };
}

/** Which kind of skip an attempt is, or null for a real try. */
export function skipKind(attempt: ClassifiedAttempt): 'breaker' | 'parked' | 'rate' | null {
  const code = attempt.result.facts.errorCode;
  if (code === ERR.BREAKER_OPEN) return 'breaker';
  if (code === ERR.PARKED) return 'parked';
  if (code === ERR.RATE_LIMIT) return 'rate';
  return null;
}

function skipFacts(errorCode: string, message: string): UpstreamFacts {
  return {
    ok: false,
    phase: 'connecting',
    reply: null,
    replyPhase: null,
    errorCode,
    cause: null,
    timeoutType: null,
    syscall: null,
    message,
    accepted: [],
    rejected: [],
  };
}

function skipResult(upstream: UpstreamConfig, facts: UpstreamFacts, startedAt: Date, waitedMs: number): ClassifiedAttempt['result'] {
  return {
    upstream,
    facts,
    startedAt,
    ms: waitedMs,
    tls: null,
    reusedConnection: null,
    timing: { waitMs: waitedMs, connectMs: 0, envelopeMs: 0, dataMs: 0 },
  };
}
