import type { AttemptEntry, RelayRecord } from '../../audit/records.js';
import { normalizeReplyText } from '../error-fingerprint.js';
import { isProviderSideClass } from '../../classify/failure-class.js';
import { ERR } from '../../error-codes.js';

/**
 * How one try at an upstream counts for alert rules:
 * - `success`: the upstream took the message (delivered, or partial);
 * - `failure`: an upstream-side or account/config failure (the operator or the provider must act);
 * - `neutral`: a verdict about this message or its recipients (the upstream works; the sender or
 *   the recipient is the problem), which ends a failure streak but is not a delivery.
 */
export type AttemptKind = 'success' | 'failure' | 'neutral';

export interface AttemptFact {
  readonly upstream: string;
  readonly kind: AttemptKind;
  readonly class: string | null;
  /** The reply or error that decided the attempt, for alert texts. */
  readonly evidence: string | null;
  /**
   * The deciding rule's advice to the operator (the record's `failure.detail.hint`), where the class's
   * usual remedy would mislead. Only the try that decided the record has one: the record keeps the rule
   * of that try alone.
   */
  readonly hint: string | null;
  /**
   * Not a try but a skip: `breaker` (open circuit breaker, no connection made) or `local` (our own
   * limits: egress pacing, or every pooled connection busy). Neither says anything new about the
   * upstream.
   */
  readonly skip: 'breaker' | 'local' | null;
}

/**
 * Every try in a relay record, failed-over ones included: a primary that fails before a backup
 * delivers must still count against the primary.
 */
export function attemptFacts(record: RelayRecord): AttemptFact[] {
  const last = record.attempts.length - 1;
  return record.attempts.map((a, i) => ({
    upstream: a.upstream,
    kind: attemptKind(record, a, i === last),
    class: a.class,
    evidence: evidenceOf(a),
    hint: i === last ? (record.failure?.detail.hint ?? null) : null,
    skip: skipOf(a.error?.code),
  }));
}

/** A failure as alert texts show it: its class, the reply or error behind it, and the rule's advice. */
export interface FailureSeen {
  readonly class: string;
  readonly evidence: string | null;
  readonly hint: string | null;
}

function skipOf(code: string | null | undefined): AttemptFact['skip'] {
  if (code === ERR.BREAKER_OPEN) return 'breaker';
  return code === ERR.RATE_LIMIT || code === ERR.POOL_WAIT ? 'local' : null;
}

function attemptKind(record: RelayRecord, attempt: AttemptEntry, deciding: boolean): AttemptKind {
  if (deciding && (record.outcome === 'delivered' || record.outcome === 'partial')) return 'success';
  return attempt.class !== null && isProviderSideClass(attempt.class) ? 'failure' : 'neutral';
}

function evidenceOf(a: AttemptEntry): string | null {
  return evidence(a.reply, a.error);
}

/**
 * The reply (code, enhanced code, text) or the error codes behind a failure, for alert texts. The
 * text is masked like the error fingerprint's (addresses, ids, numbers): alerts leave the machine
 * for chat rooms and mailboxes, and must not carry recipients' addresses.
 */
export function evidence(
  reply: { readonly code: number; readonly enhanced: string | null; readonly text: string } | null,
  error: { readonly code: string | null; readonly cause: string | null } | null,
): string | null {
  if (reply) return `${reply.code}${reply.enhanced ? ` ${reply.enhanced}` : ''} ${normalizeReplyText(reply.text)}`.trim();
  if (error) return [error.code, error.cause].filter(Boolean).join(' ') || null;
  return null;
}

/** Per series; beyond it the oldest samples go, so a window at very high volume holds the latest ones. */
const MAX_SAMPLES = 10_000;

/** Append-only time series with cheap removal from the front. */
class Series<T extends { readonly at: number }> {
  #items: T[] = [];
  #head = 0;

  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length - this.#head > MAX_SAMPLES) this.#head += 1;
    this.#compact();
  }

  /** Drops samples older than `since`. */
  prune(since: number): void {
    while (this.#head < this.#items.length && this.#items[this.#head]!.at < since) this.#head += 1;
    this.#compact();
  }

  since(since: number): T[] {
    const out: T[] = [];
    for (let i = this.#items.length - 1; i >= this.#head && this.#items[i]!.at >= since; i--) out.push(this.#items[i]!);
    return out;
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** What alert rules need to know about one upstream. Times are `Date.now()` milliseconds. */
export class UpstreamStats {
  consecutiveFailures = 0;
  /** First failure after the last success (or since start); null when the last try succeeded. */
  failingSince: number | null = null;
  lastFailure: FailureSeen | null = null;
  #attempts = new Series<{ at: number; failed: boolean }>();
  #latency = new Series<{ at: number; ms: number }>();

  /**
   * One try in a relay record. A `local` skip is our own pacing or a full pool: ignored. A breaker skip still
   * counts as a failure (the upstream cannot take mail), but the last failure shown stays the real
   * one that opened the breaker (`connect ECONNREFUSED`, not `EBREAKEROPEN`).
   */
  addAttempt(fact: AttemptFact, at: number): void {
    if (fact.skip === 'local') return;
    this.#attempts.push({ at, failed: fact.kind === 'failure' });
    if (fact.kind === 'failure') {
      this.consecutiveFailures += 1;
      this.failingSince ??= at;
      if (fact.skip === null || this.lastFailure === null) this.lastFailure = { class: fact.class ?? 'internal', evidence: fact.evidence, hint: fact.hint };
    } else {
      this.consecutiveFailures = 0;
      if (fact.kind === 'success') this.failingSince = null;
    }
  }

  /**
   * A health probe (connect, EHLO, STARTTLS, AUTH; no mail). A failed probe extends the failure
   * streak, so an upstream that died while no mail flows still alerts; it is not traffic, so it
   * counts in neither the failure rate nor "no delivery since". A passing probe ends the streak
   * only when the streak's last failure is one a probe can disprove (`clears`): it says nothing
   * about throttling or quota, which show only when mail is sent.
   */
  addProbe(failure: FailureSeen | null, clears: (cls: string) => boolean): void {
    if (failure) {
      this.consecutiveFailures += 1;
      this.lastFailure = failure;
    } else if (this.lastFailure === null || clears(this.lastFailure.class)) {
      this.consecutiveFailures = 0;
    }
  }

  addLatency(ms: number, at: number): void {
    this.#latency.push({ at, ms });
  }

  failureRate(window: number, now: number): { failed: number; total: number } {
    const samples = this.#attempts.since(now - window);
    return { failed: samples.filter((s) => s.failed).length, total: samples.length };
  }

  /** Nearest-rank p95 of the relay times in the window. */
  p95(window: number, now: number): { p95: number; count: number } {
    const values = this.#latency
      .since(now - window)
      .map((s) => s.ms)
      .sort((a, b) => a - b);
    if (values.length === 0) return { p95: 0, count: 0 };
    return { p95: values[Math.ceil(values.length * 0.95) - 1]!, count: values.length };
  }

  prune(longestWindow: number, now: number): void {
    this.#attempts.prune(now - longestWindow);
    this.#latency.prune(now - longestWindow);
  }
}
