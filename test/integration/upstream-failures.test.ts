import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamFaults } from '../helpers/fake-upstream.js';
import { big } from '../helpers/corpus.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { simpleMessage, startRelay, type UpstreamSpec } from '../helpers/relay-harness.js';

interface Case {
  readonly name: string;
  readonly faults?: Partial<FakeUpstreamFaults>;
  /** Options of the fake upstream itself (TLS, AUTH). */
  readonly upstream?: (pki: TestPki) => Parameters<typeof startFakeUpstream>[0];
  /** How mailtrail is configured to reach it. */
  readonly spec?: (pki: TestPki, up: FakeUpstream) => Partial<UpstreamSpec>;
  readonly refuse?: boolean;
  /** The message to send; a reset mid-body needs one bigger than the socket buffers. */
  readonly raw?: () => Buffer;
  readonly expectCode: number;
  readonly expectEnhanced?: string;
  readonly outcome: string;
  readonly cls: string;
}

const reply = (code: number, text: string) => ({ code, text });

// Every upstream-side class of docs/failures.md, reproduced end to end against a real SMTP server.
const CASES: Case[] = [
  {
    name: 'a refused connection is class connect, answered 451 4.4.1',
    refuse: true,
    expectCode: 451,
    expectEnhanced: '4.4.1',
    outcome: 'deferred',
    cls: 'connect',
  },
  {
    name: 'an upstream host that does not resolve is class dns, answered 451 4.4.3',
    spec: () => ({ host: 'no-such-host.invalid' }),
    expectCode: 451,
    expectEnhanced: '4.4.3',
    outcome: 'deferred',
    cls: 'dns',
  },
  {
    name: 'an upstream certificate from an untrusted issuer is class tls, answered 451 4.7.5',
    upstream: (pki) => ({ tls: { key: pki.untrusted.key, cert: pki.untrusted.cert } }),
    spec: (pki) => ({ tls: { mode: 'required', ca: pki.caPath, verify: true, servername: 'localhost' } }),
    expectCode: 451,
    expectEnhanced: '4.7.5',
    outcome: 'deferred',
    cls: 'tls',
  },
  {
    name: 'an expired upstream certificate is class tls',
    upstream: (pki) => ({ tls: { key: pki.expired.key, cert: pki.expired.cert } }),
    spec: (pki) => ({ tls: { mode: 'required', ca: pki.caPath, verify: true, servername: 'localhost' } }),
    expectCode: 451,
    outcome: 'deferred',
    cls: 'tls',
  },
  {
    name: 'an upstream that never offers STARTTLS while TLS is required is class tls',
    spec: () => ({ tls: { mode: 'required' } }),
    expectCode: 451,
    outcome: 'deferred',
    cls: 'tls',
  },
  {
    name: 'a greeting that never comes is class timeout, answered 451 4.4.2',
    faults: { greeting: 'hang' },
    spec: () => ({ timeouts: { greeting: 300, connect: 1000 } }),
    expectCode: 451,
    expectEnhanced: '4.4.2',
    outcome: 'deferred',
    cls: 'timeout',
  },
  {
    name: 'a 421 greeting is class upstream_unavailable and never reaches the client as 421',
    faults: { greeting: '421' },
    expectCode: 451,
    outcome: 'deferred',
    cls: 'upstream_unavailable',
  },
  {
    name: 'a 421 at MAIL FROM is class upstream_unavailable, answered 451',
    faults: { mailFrom: reply(421, '4.3.2 Service not available, closing transmission channel') },
    expectCode: 451,
    outcome: 'deferred',
    cls: 'upstream_unavailable',
  },
  {
    name: 'SES "Maximum sending rate exceeded" is class throttled, answered 451 4.7.0',
    faults: { mailFrom: reply(454, 'Throttling failure: Maximum sending rate exceeded.') },
    expectCode: 451,
    expectEnhanced: '4.7.0',
    outcome: 'deferred',
    cls: 'throttled',
  },
  {
    name: 'SES "Daily message quota exceeded" is class quota, answered 451 4.7.0',
    faults: { mailFrom: reply(454, 'Throttling failure: Daily message quota exceeded.') },
    expectCode: 451,
    expectEnhanced: '4.7.0',
    outcome: 'deferred',
    cls: 'quota',
  },
  {
    name: 'a 535 from the upstream is class upstream_auth and never reaches the client as 535',
    upstream: () => ({ auth: { user: 'relay', pass: 'right' } }),
    spec: () => ({ auth: { user: 'relay', pass: 'wrong' } }),
    expectCode: 451,
    expectEnhanced: '4.7.0',
    outcome: 'deferred',
    cls: 'upstream_auth',
  },
  {
    name: 'a 530 at MAIL FROM (mailtrail never logged in) is class upstream_auth',
    faults: { mailFrom: reply(530, '5.7.0 Authentication required') },
    expectCode: 451,
    outcome: 'deferred',
    cls: 'upstream_auth',
  },
  {
    name: 'a 5xx at MAIL FROM for an unverified identity is class sender_rejected, passed through',
    faults: {
      mailFrom: reply(554, 'Message rejected: Email address is not verified. The following identities failed the check in region EU-WEST-1: a@example.com'),
    },
    expectCode: 554,
    outcome: 'rejected',
    cls: 'sender_rejected',
  },
  {
    name: 'every recipient refused with 550 is class recipient_rejected, passed through as 550 5.1.1',
    faults: { rcpt: () => reply(550, '5.1.1 <ana@example.org>: Recipient address rejected: User unknown in virtual mailbox table') },
    expectCode: 550,
    expectEnhanced: '5.1.1',
    outcome: 'rejected',
    cls: 'recipient_rejected',
  },
  {
    name: 'every recipient deferred with 450 is class recipient_deferred, passed through as 4xx',
    faults: { rcpt: () => reply(450, '4.2.1 <ana@example.org>: Recipient address rejected: Mailbox temporarily unavailable') },
    expectCode: 450,
    outcome: 'deferred',
    cls: 'recipient_deferred',
  },
  {
    name: 'too many recipients at RCPT (452 4.5.3) is class too_many_recipients',
    faults: { rcpt: () => reply(452, '4.5.3 Error: too many recipients') },
    expectCode: 452,
    expectEnhanced: '4.5.3',
    outcome: 'deferred',
    cls: 'too_many_recipients',
  },
  {
    name: 'a 554 after the body is class content_rejected, passed through as 554 5.7.1',
    faults: { data: reply(554, '5.7.1 Message rejected as spam') },
    expectCode: 554,
    expectEnhanced: '5.7.1',
    outcome: 'rejected',
    cls: 'content_rejected',
  },
  {
    name: 'a 552 5.3.4 after the body is class too_large, answered 552 5.3.4',
    faults: { data: reply(552, '5.3.4 Message size exceeds fixed limit') },
    expectCode: 552,
    expectEnhanced: '5.3.4',
    outcome: 'rejected',
    cls: 'too_large',
  },
  {
    name: 'SMTPUTF8 refused (553 5.6.7) is class unsupported, passed through',
    faults: { mailFrom: reply(553, '5.6.7 SMTPUTF8 is required, but was not offered by host') },
    expectCode: 553,
    outcome: 'rejected',
    cls: 'unsupported',
  },
  {
    name: 'a 503 bad-sequence reply is class protocol, answered 451 4.5.0',
    faults: { mailFrom: reply(503, '5.5.1 Error: nested MAIL command') },
    expectCode: 451,
    outcome: 'deferred',
    cls: 'protocol',
  },
  {
    name: 'a connection reset in the middle of the body is class connection_lost, answered 451 4.4.2',
    faults: { data: 'reset-mid-data' },
    raw: () => Buffer.concat([simpleMessage(), big(4 * 1024 * 1024)]),
    expectCode: 451,
    expectEnhanced: '4.4.2',
    outcome: 'deferred',
    cls: 'connection_lost',
  },
  {
    name: 'a connection dropped after the final dot is an unknown outcome with duplicate risk, answered 451 4.4.2',
    faults: { data: 'drop-after-dot' },
    expectCode: 451,
    expectEnhanced: '4.4.2',
    outcome: 'unknown',
    cls: 'unknown_outcome',
  },
  {
    name: 'no reply after the final dot until the socket timeout is an unknown outcome',
    faults: { data: 'hang-after-dot' },
    spec: () => ({ timeouts: { socket: 500 } }),
    expectCode: 451,
    outcome: 'unknown',
    cls: 'unknown_outcome',
  },
  {
    name: 'a slow reply to MAIL FROM past the socket timeout is class timeout',
    faults: { delayMs: { mailFrom: 2000 } },
    spec: () => ({ timeouts: { socket: 300 } }),
    expectCode: 451,
    outcome: 'deferred',
    cls: 'timeout',
  },
  {
    name: 'an upstream slower than the relay deadline is class timeout',
    faults: { delayMs: { rcpt: 3000 } },
    spec: () => ({ timeouts: { total: 400 } }),
    expectCode: 451,
    outcome: 'deferred',
    cls: 'timeout',
  },
];

describe('every upstream-side failure class, end to end', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await makeTestPki();
  });
  afterAll(async () => {
    await pki.cleanup();
  });

  it.each(CASES)('$name', async (c) => {
    const upstream = await startFakeUpstream(c.upstream?.(pki) ?? {});
    if (c.faults) await upstream.setFaults(c.faults);
    const relay = await startRelay({ upstreams: [{ name: 'up', port: upstream.port, ...c.spec?.(pki, upstream) }] });
    try {
      if (c.refuse) await upstream.refuse();
      const res = await relay.send({ from: 'a@example.com', to: ['ana@example.org'], raw: c.raw?.() ?? simpleMessage(), timeoutMs: 15_000 });
      expect(res.code).toBe(c.expectCode);
      if (c.expectEnhanced) expect(res.response).toMatch(new RegExp(`^${c.expectCode} ${c.expectEnhanced.replace(/\./g, '\\.')} `));
      expect(res.response).toMatch(/\(id [0-9A-Z]{26}\)$/);
      const [record] = await relay.relayRecords();
      expect(record).toBeDefined();
      expect(record!.outcome).toBe(c.outcome);
      expect(record!.failure?.class).toBe(c.cls);
      expect(record!.clientReply.code).toBe(c.expectCode);
      expect(record!.duplicateRisk).toBe(c.cls === 'unknown_outcome');
      expect(record!.attempts).toHaveLength(1);
    } finally {
      await relay.stop();
      await upstream.close();
    }
  });
});
