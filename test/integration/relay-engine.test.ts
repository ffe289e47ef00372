import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RouteConfig } from '../../src/config/types.js';
import type { BreakerTransition } from '../../src/routing/circuit-breaker.js';
import type { RelayDecision } from '../../src/routing/relay-decision.js';
import { RelayEngine } from '../../src/routing/relay-engine.js';
import { RouteTable } from '../../src/routing/route-table.js';
import { Router } from '../../src/routing/router.js';
import { stopReason, type StopSignal } from '../../src/upstream/deadline.js';
import { startFakeUpstream, waitFor, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, upstreamConfig, type UpstreamSpec } from '../helpers/relay-harness.js';
import { RelayParts } from '../helpers/relay-parts.js';
import { relayReply } from '../../src/reply/relay-reply.js';
import type { ClassifiedAttempt } from '../../src/routing/relay-decision.js';

/** What the client would be told if this attempt decided the record. */
function replyTo(attempt: ClassifiedAttempt) {
  return relayReply(attempt.verdict, attempt.result.facts, { unknownOutcomeReply: { code: 451 } });
}

const ENVELOPE = { from: 'app@example.com', to: ['ana@example.org'], use8BitMime: false, size: 0 };

const codes = (d: RelayDecision) => d.attempts.map((a) => a.result.facts.errorCode);
const names = (d: RelayDecision) => d.attempts.map((a) => a.result.upstream.name);

describe('the relay engine', () => {
  let primary: FakeUpstream;
  let secondary: FakeUpstream;
  const parts = new RelayParts();
  let transitions: BreakerTransition[] = [];

  beforeEach(async () => {
    [primary, secondary] = await Promise.all([startFakeUpstream(), startFakeUpstream()]);
    transitions = [];
  });
  afterEach(async () => {
    parts.close();
    await Promise.all([primary.close(), secondary.close()]);
  });

  /** An engine over primary then secondary (each spec may override), with `deadlineMs` overall. */
  function engine(
    opts: { primary?: Partial<UpstreamSpec>; secondary?: Partial<UpstreamSpec>; deadlineMs?: number; routes?: RouteConfig[]; maxWaiters?: number } = {},
  ) {
    const channel = (spec: UpstreamSpec) =>
      parts.channel(upstreamConfig({ breaker: null, ...spec }), { onBreakerChange: (t) => transitions.push(t), maxWaiters: opts.maxWaiters });
    const channels = [
      channel({ name: 'primary', port: primary.port, ...opts.primary }),
      channel({ name: 'secondary', port: secondary.port, ...opts.secondary }),
    ];
    const router = new Router(
      new RouteTable(
        opts.routes ?? [],
        channels.map((c) => c.upstream),
      ),
      channels,
    );
    const relayEngine = new RelayEngine(router, opts.deadlineMs ?? 20_000);
    const body = simpleMessage();
    return {
      channels: { primary: channels[0]!, secondary: channels[1]! },
      relay: (outer?: StopSignal, key?: Parameters<RelayEngine['relay']>[3]) => relayEngine.relay({ ...ENVELOPE, size: body.length }, body, outer, key),
    };
  }

  describe('fails over only before the body went out', () => {
    it('moves on to the next upstream when the verdict allows it, and the last real try decides', async () => {
      const e = engine();
      await primary.refuse();
      const d = await e.relay();
      expect(d.route).toBe('default');
      expect(names(d)).toEqual(['primary', 'secondary']);
      expect(d.attempts[0]!.verdict).toMatchObject({ mayFailOver: true, failure: { class: 'connect' } });
      expect(d.attempts[0]!.result.facts.phase).toBe('connecting');
      expect(d.deciding).toBe(d.attempts[1]);
      expect(d.deciding.verdict.outcome).toBe('delivered');
      expect(secondary.messages).toHaveLength(1);
    });

    it('moves on after a 421 at MAIL FROM: nothing of the message reached the upstream', async () => {
      const e = engine();
      await primary.setFaults({ mailFrom: { code: 421, text: '4.3.2 Service not available, closing transmission channel' } });
      const d = await e.relay();
      expect(names(d)).toEqual(['primary', 'secondary']);
      expect(d.deciding.verdict.outcome).toBe('delivered');
    });

    it('does not move on when the connection dropped after the final dot: the outcome is unknown', async () => {
      const e = engine();
      await primary.setFaults({ data: 'drop-after-dot' });
      const d = await e.relay();
      expect(names(d)).toEqual(['primary']);
      expect(d.deciding.verdict).toMatchObject({ outcome: 'unknown', mayFailOver: false, failure: { class: 'unknown_outcome' } });
      expect(secondary.connections).toBe(0);
    });

    it('does not move on after a verdict on the message', async () => {
      const e = engine();
      await primary.setFaults({ data: { code: 554, text: '5.7.1 Message rejected as spam' } });
      const d = await e.relay();
      expect(names(d)).toEqual(['primary']);
      expect(d.deciding.verdict).toMatchObject({ outcome: 'rejected', failure: { class: 'content_rejected' } });
      expect(replyTo(d.deciding)).toMatchObject({ code: 554 });
      expect(secondary.connections).toBe(0);
    });

    it('does not move on after a verdict on the recipients', async () => {
      const e = engine();
      await primary.setFaults({ rcpt: () => ({ code: 550, text: '5.1.1 User unknown' }) });
      const d = await e.relay();
      expect(names(d)).toEqual(['primary']);
      expect(d.deciding.verdict).toMatchObject({ outcome: 'rejected', failure: { class: 'recipient_rejected' } });
      expect(secondary.connections).toBe(0);
    });

    it('answers with the last upstream’s failure when every upstream failed before the body', async () => {
      const e = engine();
      await Promise.all([primary.refuse(), secondary.setFaults({ mailFrom: { code: 451, text: '4.3.0 Local problem' } })]);
      const d = await e.relay();
      expect(names(d)).toEqual(['primary', 'secondary']);
      expect(d.deciding).toBe(d.attempts[1]);
      expect(d.deciding.result.facts.reply).toMatchObject({ code: 451 });
    });

    it('moves on when one upstream’s own time limit (timeouts.total) ends its try', async () => {
      const e = engine({ primary: { timeouts: { total: 500 } } });
      await primary.setFaults({ delayMs: { mailFrom: 8_000 } });
      const d = await e.relay();
      expect(names(d)).toEqual(['primary', 'secondary']);
      expect(d.attempts[0]!.result.facts).toMatchObject({ errorCode: 'EDEADLINE', reply: null });
      expect(d.deciding.verdict.outcome).toBe('delivered');
    });

    it('takes the route the key chooses, and only its upstreams', async () => {
      const routes: RouteConfig[] = [{ name: 'alerts', match: { users: null, senders: ['@alerts.example.com'], networks: null }, upstreams: ['secondary'] }];
      const e = engine({ routes });
      const d = await e.relay(undefined, { user: null, from: 'ops@alerts.example.com', ip: '127.0.0.1' });
      expect(d.route).toBe('alerts');
      expect(names(d)).toEqual(['secondary']);
      expect(primary.connections).toBe(0);
    });
  });

  describe('skips upstreams without connecting', () => {
    it('skips an upstream whose breaker is open with an EBREAKEROPEN attempt and sends to the next', async () => {
      const e = engine({ primary: { breaker: { failures: 1, cooldown: 60_000 } } });
      e.channels.primary.breaker.record('failure', false, 'connect ECONNREFUSED');
      expect(e.channels.primary.breaker.state).toBe('open');
      const d = await e.relay();
      expect(codes(d)).toEqual(['EBREAKEROPEN', null]);
      expect(d.attempts[0]!.result).toMatchObject({ ms: 0, reusedConnection: null, facts: { phase: 'connecting', reply: null } });
      expect(d.attempts[0]!.result.facts.message).toMatch(/^circuit breaker open; next try in \d+ ms$/);
      expect(d.attempts[0]!.verdict).toMatchObject({ failure: { class: 'upstream_unavailable' } });
      expect(replyTo(d.attempts[0]!)).toMatchObject({ code: 451, enhanced: '4.4.1' });
      expect(d.deciding).toBe(d.attempts[1]);
      expect(primary.connections).toBe(0);
    });

    it('skips an upstream whose next sending slot lies past its rate limit’s maxWait with an ERATELIMIT attempt', async () => {
      const e = engine({ primary: { rateLimit: { messagesPerSecond: 0.1, maxWait: 50 } } });
      expect(e.channels.primary.limiter.reserve(Number.POSITIVE_INFINITY).ok).toBe(true);
      const d = await e.relay();
      expect(codes(d)).toEqual(['ERATELIMIT', null]);
      expect(d.attempts[0]!.result.facts.message).toMatch(/^next sending slot in \d+ ms, past this message's deadline$/);
      expect(d.attempts[0]!.verdict).toMatchObject({ failure: { class: 'throttled', actor: 'operator' } });
      expect(replyTo(d.attempts[0]!)).toMatchObject({ code: 451, enhanced: '4.7.0' });
      expect(primary.connections).toBe(0);
      expect(secondary.messages).toHaveLength(1);
    });

    it('waits for a sending slot at most half of what is left of the deadline', async () => {
      // The next slot is 2 s away: within the 3 s deadline, but past half of it.
      const e = engine({ primary: { rateLimit: { messagesPerSecond: 0.5 } }, deadlineMs: 3_000 });
      e.channels.primary.limiter.reserve(Number.POSITIVE_INFINITY);
      const d = await e.relay();
      expect(codes(d)).toEqual(['ERATELIMIT', null]);
      expect(primary.connections).toBe(0);
    });

    it('skips an upstream when too many messages already wait for its slots', async () => {
      const e = engine({ primary: { rateLimit: { messagesPerSecond: 1 } }, maxWaiters: 0 });
      e.channels.primary.limiter.reserve(Number.POSITIVE_INFINITY);
      const d = await e.relay();
      expect(codes(d)).toEqual(['ERATELIMIT', null]);
      expect(d.attempts[0]!.result.facts.message).toBe('too many messages already waiting for this upstream');
    });

    it('counts the wait for a sending slot as waiting time of the try that follows', async () => {
      const e = engine({ primary: { rateLimit: { messagesPerSecond: 5 } } });
      e.channels.primary.limiter.reserve(Number.POSITIVE_INFINITY);
      const d = await e.relay();
      expect(names(d)).toEqual(['primary']);
      expect(d.deciding.result.timing.waitMs).toBeGreaterThan(0);
      expect(d.deciding.result.ms).toBeGreaterThanOrEqual(d.deciding.result.timing.waitMs);
    });
  });

  describe('chooses the deciding attempt', () => {
    const decidingCode = (d: RelayDecision): string | null => d.deciding.result.facts.errorCode;

    it('the last real try over a later skip', async () => {
      const e = engine({ secondary: { breaker: { failures: 1 } } });
      e.channels.secondary.breaker.record('failure', false);
      await primary.refuse();
      const d = await e.relay();
      expect(codes(d)).toEqual([expect.stringMatching(/^E/), 'EBREAKEROPEN']);
      expect(d.deciding).toBe(d.attempts[0]);
      expect(d.deciding.verdict.failure?.class).toBe('connect');
    });

    it('a rate skip over a breaker skip that came after it, when nothing was tried', async () => {
      const e = engine({ primary: { rateLimit: { messagesPerSecond: 0.1, maxWait: 10 } }, secondary: { breaker: { failures: 1 } } });
      e.channels.primary.limiter.reserve(Number.POSITIVE_INFINITY);
      e.channels.secondary.breaker.record('failure', false);
      const d = await e.relay();
      expect(codes(d)).toEqual(['ERATELIMIT', 'EBREAKEROPEN']);
      expect(decidingCode(d)).toBe('ERATELIMIT');
      expect(replyTo(d.deciding)).toMatchObject({ code: 451, enhanced: '4.7.0' });
    });

    it('the last breaker skip when every upstream is open', async () => {
      const e = engine({ primary: { breaker: { failures: 1 } }, secondary: { breaker: { failures: 1 } } });
      e.channels.primary.breaker.record('failure', false);
      e.channels.secondary.breaker.record('failure', false);
      const d = await e.relay();
      expect(codes(d)).toEqual(['EBREAKEROPEN', 'EBREAKEROPEN']);
      expect(d.deciding).toBe(d.attempts[1]);
      expect(replyTo(d.deciding)).toMatchObject({ code: 451, enhanced: '4.4.1' });
      expect(primary.connections + secondary.connections).toBe(0);
    });
  });

  describe('tells each upstream’s breaker and slow-down how its try went', () => {
    it('counts an infrastructure failure: a one-failure breaker opens and the next message skips it', async () => {
      const e = engine({ primary: { breaker: { failures: 1, cooldown: 60_000 } } });
      await primary.refuse();
      await e.relay();
      expect(transitions).toMatchObject([{ from: 'closed', state: 'open', reason: expect.stringMatching(/connect ECONNREFUSED/) }]);
      const d = await e.relay();
      expect(codes(d)[0]).toBe('EBREAKEROPEN');
    });

    it('lets a half-open breaker’s one trial be decided by the message it let through', async () => {
      const e = engine({ primary: { breaker: { failures: 1, cooldown: 50 } } });
      e.channels.primary.breaker.record('failure', false);
      await waitFor(() => e.channels.primary.breaker.state === 'half-open', 5_000);
      const d = await e.relay();
      expect(names(d)).toEqual(['primary']);
      expect(e.channels.primary.breaker.state).toBe('closed');
      expect(transitions.at(-1)).toMatchObject({ from: 'half-open', state: 'closed' });
    });

    it('slows down towards an upstream that answered with a throttling reply, and moves the message on', async () => {
      const e = engine({ primary: { rateLimit: { backoff: { initial: 200 } } } });
      await primary.setFaults({ mailFrom: { code: 421, text: '4.7.0 Too many messages, slow down' } });
      const d = await e.relay();
      expect(d.attempts[0]!.verdict.failure?.class).toBe('throttled');
      expect(e.channels.primary.throttle.delayMs).toBe(200);
      expect(d.deciding.verdict.outcome).toBe('delivered');
      expect(e.channels.secondary.throttle.delayMs).toBe(0);
    });
  });

  describe('waits for a pooled connection', () => {
    it('at most pool.maxWait when another upstream follows, then moves on with EPOOLWAIT', async () => {
      const e = engine({ primary: { pool: { maxConnections: 1, maxWait: 30 } } });
      const lease = await e.channels.primary.pool.acquire(parts.signal());
      const d = await e.relay();
      expect(codes(d)).toEqual(['EPOOLWAIT', null]);
      expect(d.deciding.verdict.outcome).toBe('delivered');
      e.channels.primary.pool.release(lease.connection, true);
    });

    it('on the last upstream of the route, past pool.maxWait for as long as the deadline allows', async () => {
      const routes: RouteConfig[] = [{ name: 'only-primary', match: { users: null, senders: ['@example.com'], networks: null }, upstreams: ['primary'] }];
      const e = engine({ primary: { pool: { maxConnections: 1, maxWait: 30 } }, routes });
      const lease = await e.channels.primary.pool.acquire(parts.signal());
      const relayed = e.relay(undefined, { user: null, from: 'app@example.com', ip: '127.0.0.1' });
      await waitFor(() => e.channels.primary.pool.pending === 2, 5_000);
      // Well past pool.maxWait, the message is still waiting for the busy connection.
      await new Promise((r) => setTimeout(r, 150));
      e.channels.primary.pool.release(lease.connection, true);
      const d = await relayed;
      expect(names(d)).toEqual(['primary']);
      expect(d.deciding.verdict.outcome).toBe('delivered');
      expect(d.deciding.result.timing.waitMs).toBeGreaterThanOrEqual(100);
    });
  });

  describe('works within one overall deadline', () => {
    it('stops at the deadline: the try running then ends with EDEADLINE and the next upstream is not tried', async () => {
      const e = engine({ deadlineMs: 500 });
      await primary.setFaults({ delayMs: { mailFrom: 8_000 } });
      const d = await e.relay();
      expect(names(d)).toEqual(['primary']);
      expect(d.deciding.result.facts).toMatchObject({ errorCode: 'EDEADLINE', reply: null });
      expect(d.deciding.verdict).toMatchObject({ outcome: 'deferred', failure: { class: 'timeout' } });
      expect(secondary.connections).toBe(0);
    });

    it('stops when the signal above it stops (shutdown), with that signal’s reason', async () => {
      const e = engine();
      await primary.setFaults({ delayMs: { mailFrom: 10_000 } });
      const outer = parts.signal();
      const relayed = e.relay(outer);
      await primary.waitFor(() => primary.transactions === 1, 5_000);
      outer.stop(stopReason('mailtrail is shutting down', 'ESHUTDOWN'));
      const d = await relayed;
      expect(codes(d)).toEqual(['ESHUTDOWN']);
      expect(secondary.connections).toBe(0);
    });

    it('records a message stopped while waiting for its sending slot as a stopped try, not a rate skip', async () => {
      const e = engine({ primary: { rateLimit: { messagesPerSecond: 0.2 } } });
      e.channels.primary.limiter.reserve(Number.POSITIVE_INFINITY);
      const outer = parts.signal();
      const relayed = e.relay(outer);
      await waitFor(() => e.channels.primary.limiter.waiting === 1, 5_000);
      outer.stop(stopReason('mailtrail is shutting down', 'ESHUTDOWN'));
      const d = await relayed;
      expect(codes(d)).toEqual(['ESHUTDOWN']);
      expect(d.deciding.result.facts.phase).toBe('connecting');
      expect(primary.connections + secondary.connections).toBe(0);
    });
  });
});
