import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { RECORD_FIELDS } from '../../src/audit/records.js';
import { smtpTalk } from '../helpers/smtp-client.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

describe('the pass-through path', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream({ faults: { queueId: () => 'Ok: queued as 4XyZ12AbC' } });
    relay = await startRelay({ upstreams: [{ name: 'primary', port: upstream.port }] });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });
  afterEach(async () => {
    await upstream.resetFaults();
    await upstream.setFaults({ queueId: () => 'Ok: queued as 4XyZ12AbC' });
  });

  it('answers 250 with the upstream queue id and the transaction id once the upstream accepted', async () => {
    const raw = simpleMessage({ messageId: '<inv-1@example.com>' });
    const res = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw });
    expect(res.ok).toBe(true);
    expect(res.response).toMatch(/^250 2\.0\.0 .*4XyZ12AbC.*\(id [0-9A-Z]{26}\)$/);
    const record = (await relay.relayRecords()).find((r) => r.message.messageId === '<inv-1@example.com>')!;
    expect(res.response).toContain(record.id);
  });

  it('writes a relay record with envelope, message facts, upstream reply, queue id and timings', async () => {
    const raw = simpleMessage({ messageId: '<rec-2@example.com>' });
    await relay.send({ from: 'app@example.com', to: ['ana@example.org', 'bo@example.net'], raw });
    const r = (await relay.relayRecords()).find((x) => x.message.messageId === '<rec-2@example.com>')!;
    expect(r).toMatchObject({
      v: 1,
      type: 'relay',
      from: 'app@example.com',
      outcome: 'delivered',
      failure: null,
      duplicateRisk: false,
      upstream: { name: 'primary', host: '127.0.0.1', port: upstream.port, queueId: '4XyZ12AbC' },
      upstreamReply: { code: 250, phase: 'data' },
      clientReply: { code: 250, enhanced: '2.0.0' },
    });
    expect(r.rcpt.map((x) => [x.to, x.status])).toEqual([
      ['ana@example.org', 'accepted'],
      ['bo@example.net', 'accepted'],
    ]);
    expect(r.message.size).toBe(raw.length);
    expect(r.message.sha256).toBe(createHash('sha256').update(raw).digest('hex'));
    expect(r.message.headerFrom).toBe('App <app@example.com>');
    expect(r.message.subject).toBeNull();
    expect(r.client.ip).toBe('127.0.0.1');
    expect(r.client.helo).toBe('client.test');
    expect(r.attempts).toHaveLength(1);
    expect(r.timing.totalMs).toBeGreaterThanOrEqual(r.timing.dataMs);
    expect(Date.parse(r.time)).not.toBeNaN();
  });

  it('writes relay records with exactly the documented fields, in the documented order', async () => {
    const [r] = await relay.relayRecords();
    // `spool` is only on the record of a message taken into the spool (docs/spool.md).
    expect(Object.keys(r!)).toEqual(RECORD_FIELDS.relay.filter((f) => f !== 'spool'));
  });

  it('relays the envelope verbatim, without lowercasing or rewriting addresses', async () => {
    upstream.clearRecords();
    // A raw client: nodemailer on the client side would lowercase the domains itself.
    const talk = await smtpTalk(relay.port);
    await talk.expect(220);
    talk.send('EHLO raw.test');
    await talk.expect(250);
    talk.send('MAIL FROM:<Mixed.Case@Example.COM>');
    await talk.expect(250);
    talk.send('RCPT TO:<Ana@Example.ORG>');
    await talk.expect(250);
    talk.send('DATA');
    await talk.expect(354);
    talk.sendRaw(Buffer.concat([simpleMessage(), Buffer.from('.\r\n')]));
    await talk.expect(250);
    talk.close();
    expect(upstream.messages[0]!.from).toBe('Mixed.Case@Example.COM');
    expect(upstream.messages[0]!.to).toEqual(['Ana@Example.ORG']);
  });

  it('relays the null sender as MAIL FROM:<>', async () => {
    upstream.clearRecords();
    const res = await relay.send({ from: '', to: ['ana@example.org'], raw: simpleMessage() });
    expect(res.ok).toBe(true);
    expect(upstream.messages[0]!.from).toBe('');
  });

  it('forwards BODY=8BITMIME when the client declared it', async () => {
    upstream.clearRecords();
    await relay.send({ from: 'a@example.com', to: ['b@example.org'], raw: simpleMessage({ body: 'Grüße' }), use8BitMime: true });
    expect(upstream.messages[0]!.bodyType).toBe('8bitmime');
  });

  it('answers 250 on partial acceptance and records each refused recipient with its own reply', async () => {
    await upstream.setFaults({
      rcpt: (a) => (a.startsWith('nobody') ? { code: 550, text: '5.1.1 <nobody@example.org>: Recipient address rejected: User unknown' } : null),
    });
    const raw = simpleMessage({ messageId: '<partial@example.com>' });
    const res = await relay.send({ from: 'a@example.com', to: ['ana@example.org', 'nobody@example.org'], raw });
    expect(res.ok).toBe(true);
    const r = (await relay.relayRecords()).find((x) => x.message.messageId === '<partial@example.com>')!;
    expect(r.outcome).toBe('partial');
    expect(r.failure?.class).toBe('recipient_rejected');
    expect(r.rcpt).toEqual([
      { to: 'ana@example.org', status: 'accepted', reply: null },
      { to: 'nobody@example.org', status: 'rejected', reply: { code: 550, enhanced: '5.1.1', text: expect.stringContaining('User unknown') } },
    ]);
  });

  it('reuses pooled upstream connections and says so in the record', async () => {
    upstream.clearRecords();
    for (let i = 0; i < 3; i++) {
      await relay.send({ from: 'a@example.com', to: ['b@example.org'], raw: simpleMessage({ messageId: `<reuse-${i}@x>` }) });
    }
    const recs = (await relay.relayRecords()).filter((r) => r.message.messageId?.startsWith('<reuse-'));
    expect(recs.at(-1)!.upstream!.reusedConnection).toBe(true);
    expect(recs.at(-1)!.timing.connectMs).toBe(0);
  });

  it("greets at once, without smtp-server's 100 ms early-talker delay", async () => {
    // With the library's delay, a client that speaks before the greeting is cut off ("You talk too soon").
    const talk = await smtpTalk(relay.port);
    talk.send('EHLO early.test');
    const greeting = await talk.expect(220);
    expect(greeting.text).toContain('mailtrail');
    const ehlo = await talk.expect(250);
    expect(ehlo.lines.join('\n')).toContain('STARTTLS');
    talk.close();
  });

  it('writes a session record when the client disconnects', async () => {
    const talk = await smtpTalk(relay.port);
    await talk.expect(220);
    talk.send('EHLO sess.test');
    await talk.expect(250);
    talk.send('QUIT');
    await talk.expect(221);
    talk.close();
    await upstream.waitFor(() => false, 200).catch(() => undefined);
    const sessions = await relay.sessionRecords();
    expect(sessions.some((s) => s.client.helo === 'sess.test' && s.transactions === 0)).toBe(true);
  });
});
