/**
 * A real upstream: a private Postfix instance on loopback (its own config, queue and log; STARTTLS
 * with a certificate from the test CA; no SASL), which accepts mail for delivery to its `discard`
 * transport and logs what it did. mailtrail relays to it with `tls.mode: required` and verifies the
 * certificate, so each test also proves the TLS path against a real MTA's TLS stack.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayRecord } from '../../src/audit/records.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { canRunPostfix, startPostfix, type PostfixInstance } from './interop-tools.js';

const available = canRunPostfix();
const QUEUE_ID = /queued as ([0-9A-F]{6,})/;

describe.skipIf(!available)('interop: Postfix as the upstream', () => {
  let pki: TestPki;
  let postfix: PostfixInstance;
  let relay: RunningRelay;

  const recordFor = async (id: string): Promise<RelayRecord> => {
    const r = (await relay.relayRecords()).find((x) => x.id === id);
    if (!r) throw new Error(`no relay record ${id}`);
    return r;
  };
  const idOf = (text: string | null): string => /\(id ([0-9A-Z]{26})\)/.exec(text ?? '')?.[1] ?? '';

  beforeAll(async () => {
    pki = await makeTestPki();
    postfix = await startPostfix({
      cert: pki.server.cert,
      key: pki.server.key,
      mainCf: [
        // One address that does not exist, as a provider's user lookup would answer.
        'smtpd_recipient_restrictions = check_recipient_access inline:{ { nobody@dest.example = 550 5.1.1 <nobody@dest.example>: Recipient address rejected: User unknown } }, permit_mynetworks, reject',
        // Content refused after the body, like a spam filter.
        'header_checks = regexp:{DIR}/header_checks',
        'message_size_limit = 300000',
      ],
      files: { header_checks: '/^Subject: .*REJECT-ME/ REJECT 5.7.1 Message content rejected by policy\n' },
    });
    relay = await startRelay({
      upstreams: [{ name: 'postfix', port: postfix.port, tls: { mode: 'required', ca: pki.caPath, verify: true } }],
    });
  }, 60_000);

  afterAll(async () => {
    await relay?.stop();
    await postfix?.stop();
    await pki?.cleanup();
  });

  it('relays over verified STARTTLS and answers with the queue id Postfix gave', async () => {
    const messageId = `<pf-ok-${Date.now()}@app.example>`;
    const r = await relay.send({ from: 'app@app.example', to: ['ana@dest.example'], raw: simpleMessage({ to: 'ana@dest.example', messageId }) });
    expect(r).toMatchObject({ ok: true, code: 250 });
    if (!r.ok) return;
    const queueId = QUEUE_ID.exec(r.response)?.[1] ?? /relayed as ([0-9A-F]+)/.exec(r.response)?.[1];
    expect(queueId).toMatch(/^[0-9A-F]{6,}$/);
    const record = await recordFor(idOf(r.response));
    expect(record).toMatchObject({ outcome: 'delivered', upstream: { name: 'postfix', queueId, tls: { authorized: true } } });
    expect(record.upstream?.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
    // Postfix itself says it took the message and what it did with it.
    await postfix.waitForLog(new RegExp(`${queueId}: message-id=${messageId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    await postfix.waitForLog(new RegExp(`${queueId}: to=<ana@dest\\.example>.*status=sent \\(interop\\)`));
    await postfix.waitForLog(/Anonymous TLS connection established from localhost\[127\.0\.0\.1\]|TLS connection established from localhost/);
  });

  it("accepts for the valid recipient and records Postfix's 550 5.1.1 for the other (partial)", async () => {
    const r = await relay.send({ from: 'app@app.example', to: ['ana@dest.example', 'nobody@dest.example'], raw: simpleMessage({ to: 'ana@dest.example' }) });
    expect(r).toMatchObject({ ok: true, code: 250 });
    if (!r.ok) return;
    const record = await recordFor(idOf(r.response));
    expect(record.outcome).toBe('partial');
    expect(record.rcpt).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ to: 'ana@dest.example', status: 'accepted' }),
        expect.objectContaining({ to: 'nobody@dest.example', status: 'rejected', reply: expect.objectContaining({ code: 550, enhanced: '5.1.1' }) }),
      ]),
    );
  });

  it("passes Postfix's 550 5.1.1 through when every recipient is refused", async () => {
    const r = await relay.send({ from: 'app@app.example', to: ['nobody@dest.example'], raw: simpleMessage({ to: 'nobody@dest.example' }) });
    expect(r).toMatchObject({ ok: false, code: 550 });
    if (r.ok) return;
    expect(r.response).toContain('5.1.1');
    const record = await recordFor(idOf(r.response));
    expect(record.failure).toMatchObject({ class: 'recipient_rejected', actor: 'recipient' });
  });

  it("passes a content refusal after the body through (Postfix's header_checks, 550 5.7.1)", async () => {
    const r = await relay.send({
      from: 'app@app.example',
      to: ['ana@dest.example'],
      raw: simpleMessage({ to: 'ana@dest.example', subject: 'please REJECT-ME' }),
    });
    expect(r).toMatchObject({ ok: false, code: 550 });
    if (r.ok) return;
    expect(r.response).toContain('5.7.1');
    const record = await recordFor(idOf(r.response));
    expect(record.failure).toMatchObject({ class: 'content_rejected', actor: 'sender' });
    expect(record.upstreamReply).toMatchObject({ code: 550, phase: 'data' });
  });

  it("refuses a message over Postfix's SIZE limit with 552 5.3.4 (too_large)", async () => {
    const r = await relay.send({
      from: 'app@app.example',
      to: ['ana@dest.example'],
      raw: simpleMessage({ to: 'ana@dest.example', body: 'x'.repeat(400_000) }),
    });
    expect(r).toMatchObject({ ok: false, code: 552 });
    if (r.ok) return;
    const record = await recordFor(idOf(r.response));
    expect(record.failure?.class).toBe('too_large');
  });

  it('relays 30 concurrent messages over pooled connections, each with its own queue id', async () => {
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        relay.send({
          from: 'app@app.example',
          to: ['ana@dest.example'],
          raw: simpleMessage({ to: 'ana@dest.example', messageId: `<pf-many-${i}-${Date.now()}@app.example>` }),
        }),
      ),
    );
    expect(results.every((r) => r.ok && r.code === 250)).toBe(true);
    const records = await Promise.all(results.map((r) => recordFor(idOf(r.ok ? r.response : ''))));
    const queueIds = new Set(records.map((r) => r.upstream?.queueId));
    expect(queueIds.size).toBe(30);
    expect(records.some((r) => r.upstream?.reusedConnection === true)).toBe(true);
    for (const q of queueIds) await postfix.waitForLog(new RegExp(`${q}: to=<ana@dest\\.example>.*status=sent`));
  }, 60_000);
});
