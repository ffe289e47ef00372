import type { Verdict } from '../classify/upstream-facts.js';
import type { AttemptResult } from '../upstream/upstream-attempt.js';

/** One upstream of a route, tried or skipped, with the classifier's verdict on it. */
export interface ClassifiedAttempt {
  readonly result: AttemptResult;
  readonly verdict: Verdict;
}

/** What the engine decided for one message: every hop of its route and the one that decides. */
export interface RelayDecision {
  /** The route the message took (`default` when no configured route matched). */
  readonly route: string;
  /** Every try, in order, including upstreams skipped without a connection. Never empty. */
  readonly attempts: readonly ClassifiedAttempt[];
  /** The last real try; only when every upstream was skipped, the last skip (a rate skip before a breaker skip). */
  readonly deciding: ClassifiedAttempt;
}
