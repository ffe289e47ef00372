import { classify } from './classify.js';
import type { ConnectionPool } from './connection-pool.js';
import type { ReplayableBody } from './tracked-body.js';
import { runAttempt, type AttemptResult } from './upstream-attempt.js';
import type { UpstreamEnvelope } from './upstream-connection.js';
import type { Verdict } from './upstream-facts.js';

export interface ClassifiedAttempt {
  readonly result: AttemptResult;
  readonly verdict: Verdict;
}

export interface RelayDecision {
  /** Every try, in order; the last one decided. Never empty. */
  readonly attempts: readonly ClassifiedAttempt[];
  readonly deciding: ClassifiedAttempt;
}

/**
 * Relays one buffered message along an ordered list of upstreams. It moves on to the next upstream
 * only when the classifier says the attempt failed before the body was handed over with an
 * infrastructure or service class; after the final dot went out, or after a verdict on the message
 * or its recipients, it stops: the first upstream may have the message, and trying another would
 * send it twice.
 */
export class RelayEngine {
  #pools: readonly ConnectionPool[];
  #deadlineMs: number;

  constructor(pools: readonly ConnectionPool[], deadlineMs: number) {
    if (pools.length === 0) throw new Error('RelayEngine needs at least one upstream');
    this.#pools = pools;
    this.#deadlineMs = deadlineMs;
  }

  get pools(): readonly ConnectionPool[] {
    return this.#pools;
  }

  async relay(envelope: UpstreamEnvelope, body: ReplayableBody, outer?: AbortSignal): Promise<RelayDecision> {
    const overall = deadline(this.#deadlineMs, outer);
    const attempts: ClassifiedAttempt[] = [];
    try {
      for (const pool of this.#pools) {
        const attemptSignal = deadline(pool.upstream.timeouts.total, overall.signal);
        let result: AttemptResult;
        try {
          result = await runAttempt(pool, envelope, body, attemptSignal.signal);
        } finally {
          attemptSignal.dispose();
        }
        const classified = { result, verdict: classify(result.facts) };
        attempts.push(classified);
        if (!classified.verdict.mayFailOver || overall.signal.aborted) break;
      }
    } finally {
      overall.dispose();
    }
    return { attempts, deciding: attempts[attempts.length - 1]! };
  }
}

interface Deadline {
  readonly signal: AbortSignal;
  dispose(): void;
}

/** An AbortSignal that fires after `ms` (reason code EDEADLINE) or when `parent` fires (its reason). */
function deadline(ms: number, parent?: AbortSignal): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(Object.assign(new Error(`Relay deadline of ${ms} ms reached`), { code: 'EDEADLINE' })),
    ms,
  );
  const onParent = (): void => controller.abort(parent?.reason);
  if (parent?.aborted) onParent();
  else parent?.addEventListener('abort', onParent, { once: true });
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onParent);
    },
  };
}
