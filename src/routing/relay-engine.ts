import { breakerEvidence, type BreakerAdmission } from './circuit-breaker.js';
import { classify } from '../classify/classify.js';
import type { RouteKey } from './route-table.js';
import type { Route, Router, UpstreamChannel } from './router.js';
import { breakerSkip, parkedSkip, rateLimitSkip, skipKind } from './skipped-attempt.js';
import type { BeforeFinalDot, ReplayableBody } from '../upstream/tracked-body.js';
import type { UpstreamConfig } from '../config/types.js';
import { failureFacts, runAttempt, type AttemptResult } from '../upstream/upstream-attempt.js';
import { abortError, type UpstreamEnvelope } from '../upstream/upstream-connection.js';
import { Deadline, stopReason, type StopSignal } from '../upstream/deadline.js';
import type { ClassifiedAttempt, RelayDecision } from './relay-decision.js';
import { ERR } from '../error-codes.js';

/** What a delivery from the spool adds to a relay; pass-through passes none of it. */
export interface RelayOptions {
  /**
   * Why this upstream must not be tried for this message (the spool parked it), or null to try it.
   * A skipped upstream is recorded like an open breaker's (rule `spool-parked`, code EPARKED).
   */
  readonly skip?: (upstream: UpstreamConfig) => string | null;
  /** Awaited after the last body byte and before the final dot of each attempt (docs/spool.md). */
  readonly beforeFinalDot?: (upstream: UpstreamConfig) => Promise<void>;
}

/**
 * Relays one buffered message along its route's ordered upstreams. It moves on to the next upstream
 * only when the classifier says the attempt failed before the body was handed over with an
 * infrastructure or service class; after the final dot went out, or after a verdict on the message
 * or its recipients, it stops: the first upstream may have the message, and trying another would
 * send it twice. An upstream whose breaker is open is skipped without a connection attempt; one whose
 * sending rate would not let the message start within its deadline is skipped too. All of it happens
 * within one overall deadline.
 */
export class RelayEngine {
  #router: Router;
  #deadlineMs: number;

  constructor(router: Router, deadlineMs: number) {
    this.#router = router;
    this.#deadlineMs = deadlineMs;
  }

  /** The upstreams (names, in order) of the route `key` chooses: what relay() would try. */
  upstreamsOf(key?: RouteKey): string[] {
    return this.#router.select(key).channels.map((c) => c.upstream.name);
  }

  /** `key` chooses the route (AUTH user, MAIL FROM, client address); without it, the default route. */
  async relay(envelope: UpstreamEnvelope, body: ReplayableBody, outer?: StopSignal, key?: RouteKey, options?: RelayOptions): Promise<RelayDecision> {
    const route = this.#router.select(key);
    const endsAt = performance.now() + this.#deadlineMs;
    const overall = deadline(this.#deadlineMs, outer);
    const attempts: ClassifiedAttempt[] = [];
    try {
      for (const [i, channel] of route.channels.entries()) {
        const skip = options?.skip?.(channel.upstream) ?? null;
        const hook = options?.beforeFinalDot;
        const classified =
          skip !== null
            ? parkedSkip(channel.upstream, skip)
            : await this.#try(channel, envelope, body, overall, endsAt, i < route.channels.length - 1, hook ? () => hook(channel.upstream) : null);
        attempts.push(classified);
        if (!classified.verdict.mayFailOver || overall.stopped) break;
      }
    } finally {
      overall.dispose();
    }
    return { route: route.name, attempts, deciding: decidingAttempt(attempts, route) };
  }

  /**
   * One upstream of the route: breaker, pacing, then the attempt itself; the breaker hears the
   * outcome. With another upstream after this one, a message waits for a free connection at most
   * `pool.maxWait` (a hung or saturated upstream then hands its traffic on instead of holding it).
   */
  async #try(
    channel: UpstreamChannel,
    envelope: UpstreamEnvelope,
    body: ReplayableBody,
    overall: StopSignal,
    endsAt: number,
    another: boolean,
    beforeFinalDot: BeforeFinalDot | null,
  ): Promise<ClassifiedAttempt> {
    const { upstream, breaker, limiter, throttle } = channel;
    const admission: BreakerAdmission = await breaker.admit();
    if (admission === 'skip') return breakerSkip(upstream, breaker.retryInMs);
    const probe = admission === 'probe';
    const startedAt = new Date();
    const ticket = await limiter.take(pacingBudget(endsAt - performance.now()), overall);
    if (!ticket.ok) {
      breaker.record('neutral', probe);
      // Stopped while waiting (deadline, shutdown, client gone): classified like any stopped attempt.
      if (ticket.refusal === 'aborted') return stoppedWhileWaiting(upstream, startedAt, ticket.waitedMs, overall);
      return rateLimitSkip(upstream, startedAt, ticket.waitedMs, rateLimitText(ticket.refusal, ticket.wouldWaitMs));
    }
    let classified: ClassifiedAttempt | null = null;
    try {
      const attemptSignal = deadline(upstream.timeouts.total, overall);
      let result: AttemptResult;
      try {
        result = await runAttempt(channel.pool, envelope, body, attemptSignal, another ? upstream.pool.maxWait : Number.POSITIVE_INFINITY, beforeFinalDot);
      } finally {
        attemptSignal.dispose();
      }
      classified = { result: withPacingWait(result, startedAt, ticket.waitedMs), verdict: classify(result.facts) };
      return classified;
    } finally {
      // Always heard, even on an unexpected throw: a half-open breaker must never wait for a lost probe.
      const verdict = classified?.verdict;
      const evidence = verdict ? breakerEvidence(verdict, overall.stopped) : 'neutral';
      breaker.record(evidence, probe, verdict ? evidenceText(classified!) : '');
      if (verdict?.failure?.class === 'throttled') throttle.throttled();
      else if (evidence === 'success') throttle.succeeded();
    }
  }
}

/**
 * How long a message may wait for its sending slot: half of what is left of its deadline, so the
 * send itself keeps the other half. A slot taken just before the deadline would start a message the
 * deadline then cuts off after the final dot (unknown outcome, and a duplicate when the client
 * retries), and leave no time for the route's next upstream.
 */
function pacingBudget(remainingMs: number): number {
  return Math.max(0, remainingMs) / 2;
}

/** The attempt that decides the record and the reply: the last real try, else the most telling skip. */
function decidingAttempt(attempts: readonly ClassifiedAttempt[], route: Route): ClassifiedAttempt {
  if (attempts.length === 0) throw new Error(`route ${route.name} has no upstreams`);
  const real = attempts.filter((a) => skipKind(a) === null);
  const rate = attempts.filter((a) => skipKind(a) === 'rate');
  return real.at(-1) ?? rate.at(-1) ?? attempts.at(-1)!;
}

/** The wait for a sending slot counts as waiting, like the wait for a pooled connection. */
function withPacingWait(result: AttemptResult, startedAt: Date, waitedMs: number): AttemptResult {
  if (waitedMs <= 0) return result;
  return {
    ...result,
    startedAt,
    ms: result.ms + waitedMs,
    timing: { ...result.timing, waitMs: result.timing.waitMs + waitedMs },
  };
}

function rateLimitText(refusal: string, wouldWaitMs: number): string {
  if (refusal === 'too-many-waiting') return 'too many messages already waiting for this upstream';
  return `next sending slot in ${wouldWaitMs} ms, past this message's deadline`;
}

function stoppedWhileWaiting(upstream: UpstreamChannel['upstream'], startedAt: Date, waitedMs: number, signal: StopSignal): ClassifiedAttempt {
  const facts = failureFacts(abortError(signal), 'connecting');
  const result: AttemptResult = {
    upstream,
    facts,
    startedAt,
    ms: waitedMs,
    tls: null,
    reusedConnection: null,
    timing: { waitMs: waitedMs, connectMs: 0, envelopeMs: 0, dataMs: 0 },
  };
  return { result, verdict: classify(facts) };
}

/** "connect ECONNREFUSED": what the breaker's transition reason names as the last failure. */
function evidenceText(attempt: ClassifiedAttempt): string {
  const f = attempt.result.facts;
  const cls = attempt.verdict.failure?.class ?? 'delivered';
  const detail = f.reply ? `${f.reply.code}${f.reply.enhanced ? ` ${f.reply.enhanced}` : ''}` : (f.cause ?? f.errorCode);
  return detail ? `${cls} ${detail}` : cls;
}

/** Stops after `ms` (reason code EDEADLINE) or when `parent` stops (with its reason). */
function deadline(ms: number, parent?: StopSignal): Deadline {
  return Deadline.after(ms, () => stopReason(`Relay deadline of ${ms} ms reached`, ERR.DEADLINE), parent ?? null);
}
