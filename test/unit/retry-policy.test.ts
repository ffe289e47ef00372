import { describe, expect, it } from 'vitest';
import { backoff, nextAction, type AttemptSummary, type RetrySettings } from '../../src/spool/retry-policy.js';

const MIN = 60_000;
const settings: RetrySettings = { first: 5 * MIN, max: 60 * MIN, maxAge: 5 * 24 * 60 * MIN, unknownOutcome: 'hold' };
const T0 = Date.parse('2026-03-01T10:00:00Z');

function attempt(over: Partial<AttemptSummary>): AttemptSummary {
  return { attempt: 1, outcome: 'deferred', class: 'upstream_unavailable', stillPending: 1, bounced: 0, acceptedAt: T0, now: T0 + MIN, ...over };
}

describe('the retry policy', () => {
  const cases: [string, Partial<AttemptSummary>, Partial<RetrySettings>, ReturnType<typeof nextAction>][] = [
    [
      'a delivery to every recipient ends the message delivered',
      { outcome: 'delivered', class: null, stillPending: 0 },
      {},
      { action: 'end', end: 'delivered' },
    ],
    [
      'a permanent refusal ends it bounced',
      { outcome: 'rejected', class: 'recipient_rejected', stillPending: 0, bounced: 1 },
      {},
      { action: 'end', end: 'bounced' },
    ],
    [
      'a partial acceptance whose refusals were all permanent ends it bounced (the accepted are done)',
      { outcome: 'partial', class: 'recipient_rejected', stillPending: 0, bounced: 1 },
      {},
      { action: 'end', end: 'bounced' },
    ],
    [
      'a partial acceptance with a recipient refused for now retries that recipient',
      { outcome: 'partial', class: 'recipient_deferred', stillPending: 1 },
      {},
      { action: 'retry', at: T0 + MIN + 5 * MIN, possibleDuplicate: false },
    ],
    [
      'a transient 451 retries after retry.first',
      { outcome: 'deferred', class: 'upstream_unavailable' },
      {},
      { action: 'retry', at: T0 + MIN + 5 * MIN, possibleDuplicate: false },
    ],
    ['the third attempt waits four times retry.first', { attempt: 3 }, {}, { action: 'retry', at: T0 + MIN + 20 * MIN, possibleDuplicate: false }],
    ['the pause never passes retry.max', { attempt: 12 }, {}, { action: 'retry', at: T0 + MIN + 60 * MIN, possibleDuplicate: false }],
    [
      'the pause never passes the expiry',
      { attempt: 12, now: T0 + settings.maxAge - 10 * MIN },
      {},
      { action: 'retry', at: T0 + settings.maxAge, possibleDuplicate: false },
    ],
    [
      'a 535 parks the upstream, the message stays queued',
      { class: 'upstream_auth' },
      {},
      { action: 'park', at: T0 + MIN + 5 * MIN, possibleDuplicate: false },
    ],
    ['a quota refusal parks', { class: 'quota' }, {}, { action: 'park', at: T0 + MIN + 5 * MIN, possibleDuplicate: false }],
    ['a TLS failure parks', { class: 'tls' }, {}, { action: 'park', at: T0 + MIN + 5 * MIN, possibleDuplicate: false }],
    [
      'an unknown outcome is held by default',
      { outcome: 'unknown', class: 'unknown_outcome' },
      {},
      { action: 'hold', reason: 'unknown outcome: the final dot got no answer; the upstream may have the message' },
    ],
    [
      'an unknown outcome past the expiry expires (spool.maxAge holds in every state)',
      { outcome: 'unknown', class: 'unknown_outcome', now: T0 + settings.maxAge + 1 },
      {},
      { action: 'end', end: 'expired' },
    ],
    [
      'an unknown outcome is sent again under resend, as a possible duplicate',
      { outcome: 'unknown', class: 'unknown_outcome' },
      { unknownOutcome: 'resend' },
      { action: 'retry', at: T0 + MIN + 5 * MIN, possibleDuplicate: true },
    ],
    ['a failure at the expiry ends the message expired', { now: T0 + settings.maxAge }, {}, { action: 'end', end: 'expired' }],
    ['a parking class at the expiry expires too', { class: 'upstream_auth', now: T0 + settings.maxAge + 1 }, {}, { action: 'end', end: 'expired' }],
  ];

  for (const [name, a, s, expected] of cases) {
    it(name, () => {
      // random() = 1 is the top of the jitter range: the whole pause.
      expect(nextAction(attempt(a), { ...settings, ...s }, () => 1)).toEqual(expected);
    });
  }

  it('jitters each pause between half and all of it', () => {
    expect(backoff(1, settings, () => 0)).toBe(2.5 * MIN);
    expect(backoff(1, settings, () => 0.5)).toBe(3.75 * MIN);
    expect(backoff(1, settings, () => 1)).toBe(5 * MIN);
  });

  it('doubles the pause per attempt up to retry.max', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoff(n, settings, () => 1) / MIN)).toEqual([5, 10, 20, 40, 60, 60]);
  });

  it('survives an absurd attempt count', () => {
    expect(backoff(10_000, settings, () => 1)).toBe(60 * MIN);
  });
});
