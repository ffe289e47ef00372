import { describe, expect, it } from 'vitest';
import { classTraits, UPSTREAM_FAILURE_CLASSES } from '../../src/classify/failure-class.js';
import type { UpstreamFacts, Verdict } from '../../src/classify/upstream-facts.js';
import { relayReply } from '../../src/reply/relay-reply.js';

const FACTS: UpstreamFacts = {
  ok: false,
  phase: 'envelope',
  reply: null,
  replyPhase: null,
  errorCode: null,
  cause: null,
  timeoutType: null,
  syscall: null,
  message: null,
  accepted: [],
  rejected: [],
};
const POLICY = { unknownOutcomeReply: { code: 451 as const } };

function verdictFor(cls: (typeof UPSTREAM_FAILURE_CLASSES)[number], rule = 'some-rule'): Verdict {
  const outcome = cls === 'unknown_outcome' ? 'unknown' : classTraits(cls).retryable === false ? 'rejected' : 'deferred';
  return { outcome, failure: { class: cls, ...classTraits(cls), rule }, mayFailOver: false };
}

describe('the reply to a relayed transaction', () => {
  it('is a 5xx exactly for the outcomes that end the mail, and a 4xx for the rest, for every class', () => {
    for (const cls of UPSTREAM_FAILURE_CLASSES) {
      const verdict = verdictFor(cls);
      const first = Math.floor(relayReply(verdict, FACTS, POLICY).code / 100);
      expect({ cls, first }).toEqual({ cls, first: verdict.outcome === 'rejected' ? 5 : 4 });
    }
  });

  it('is never 421 or 535, whatever the upstream said', () => {
    for (const code of [421, 535]) {
      for (const cls of UPSTREAM_FAILURE_CLASSES) {
        const facts = { ...FACTS, reply: { code, enhanced: `${String(code)[0]}.7.0`, text: 'no' } };
        expect(relayReply(verdictFor(cls), facts, POLICY).code).not.toBe(code);
      }
    }
  });

  it('names the upstream queue id in the 250 of a delivery', () => {
    const facts = { ...FACTS, ok: true, phase: 'done' as const, reply: { code: 250, enhanced: '2.0.0', text: 'Ok: queued as 4XyZ12' } };
    expect(relayReply({ outcome: 'delivered', failure: null, mayFailOver: false }, facts, POLICY)).toEqual({
      code: 250,
      enhanced: '2.0.0',
      text: 'Ok: relayed as 4XyZ12',
    });
  });

  it('answers 451 4.4.1 when every upstream was skipped for an open circuit breaker', () => {
    expect(relayReply(verdictFor('upstream_unavailable', 'breaker-open'), FACTS, POLICY)).toMatchObject({ code: 451, enhanced: '4.4.1' });
  });

  it('answers an unknown outcome with 250 only when the operator chose it', () => {
    const verdict = verdictFor('unknown_outcome', 'no-reply-after-dot');
    expect(relayReply(verdict, { ...FACTS, phase: 'sent' }, POLICY).code).toBe(451);
    expect(relayReply(verdict, { ...FACTS, phase: 'sent' }, { unknownOutcomeReply: { code: 250 } }).code).toBe(250);
  });
});
