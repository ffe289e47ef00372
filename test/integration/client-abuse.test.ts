/**
 * A client that keeps making errors, or keeps reconnecting, must not be able to grow the audit trail
 * without bound (docs/design.md, "What an abusive client can write"). Error limits after Postfix's
 * smtpd_soft_error_limit / smtpd_hard_error_limit / smtpd_error_sleep_time; the refusals of one
 * connection past `limits.recordedRefusals` summarised in its session record; new connections per
 * address limited after Postfix's smtpd_client_connection_rate_limit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RejectRecord, SessionRecord } from '../../src/audit/records.js';
import type { LimitsConfig } from '../../src/config/types.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { smtpTalk, type SmtpTalk, type TalkReply } from '../helpers/smtp-client.js';

/** The harness's clients connect from 127.0.0.1; listing only 10.0.0.0/8 leaves them outside. */
const OUTSIDE = ['10.0.0.0/8'];
const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)$/;

async function session(port: number): Promise<SmtpTalk> {
  const c = await smtpTalk(port);
  await c.expect(220);
  c.send('EHLO client.test');
  await c.expect(250);
  return c;
}

async function command(c: SmtpTalk, line: string, timeoutMs?: number): Promise<TalkReply> {
  c.send(line);
  return c.expect(undefined, timeoutMs);
}

function idOf(reply: TalkReply): string {
  const id = ID_IN_REPLY.exec(reply.text)?.[1];
  expect(id, `reply without "(id <ULID>)": ${reply.text}`).toBeDefined();
  return id!;
}

/**
 * `mailtrail_client_rejects_total{class}` as the endpoint serves it. (Read by line, not with the
 * strict exposition reader: right after start-up prom-client prints the event loop lag as "Nan".)
 */
async function rejectsTotal(relay: RunningRelay, cls: string): Promise<number> {
  const text = await (await fetch(`${relay.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`mailtrail_client_rejects_total{class="${cls}"} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

/** The first reply of each of `n` new connections, one after the other: 220, or 421 when refused. */
async function greetings(port: number, n: number): Promise<number[]> {
  const codes: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = await smtpTalk(port);
    codes.push((await c.expect(undefined, 3000)).code);
    c.close();
  }
  return codes;
}

/** Records of one connection, found by the client's own port. */
async function recordsOf(relay: RunningRelay, port: number): Promise<{ rejects: RejectRecord[]; session: SessionRecord | undefined }> {
  const rejects = (await relay.rejectRecords()).filter((r) => r.client.port === port);
  const session = (await relay.sessionRecords()).find((r) => r.client.port === port);
  return { rejects, session };
}

/** Waits until the connection's session record is in the trail (written when the server sees it close). */
async function sessionRecordOf(relay: RunningRelay, port: number): Promise<SessionRecord> {
  const until = Date.now() + 5000;
  for (;;) {
    const { session: record } = await recordsOf(relay, port);
    if (record) return record;
    if (Date.now() > until) throw new Error(`no session record for client port ${port}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('client abuse', () => {
  let upstream: FakeUpstream;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(() => upstream.close());

  function relayWith(limits: Partial<LimitsConfig>, networks: string[] = OUTSIDE): Promise<RunningRelay> {
    return startRelay({ upstreams: [{ name: 'provider', port: upstream.port }], clients: { networks }, limits, http: { port: 0 } });
  }

  describe('error limits', () => {
    let relay: RunningRelay;
    beforeAll(async () => {
      relay = await relayWith({ softErrorLimit: 3, hardErrorLimit: 6, errorDelay: 200, recordedRefusals: 2 });
    });
    afterAll(() => relay.stop());

    it('cuts a client off with 421 4.7.0 once it made limits.hardErrorLimit errors, and records why', async () => {
      const c = await session(relay.port);
      const port = c.socket.localPort!;
      const codes: number[] = [];
      for (let i = 0; i < 6; i++) codes.push((await command(c, 'MAIL FROM:<app@example.com>', 3000)).code);
      // Sent unasked after the sixth refusal, as Postfix does; then the connection is closed.
      const cutOff = await c.expect(421, 3000);
      await c.waitClosed(3000);

      expect(codes).toEqual([554, 554, 554, 554, 554, 554]);
      expect(cutOff.text).toMatch(/^4\.7\.0 Error: too many errors \(id [0-9A-Z]{26}\)$/);
      const record = (await relay.rejectRecords()).find((r) => r.id === idOf(cutOff));
      expect(record).toMatchObject({ class: 'too_many_errors', command: 'MAIL', source: 'policy', clientReply: { code: 421, enhanced: '4.7.0' } });
      expect(record!.client.port).toBe(port);
    });

    it("counts smtp-server's own protocol refusals as errors too", async () => {
      const c = await session(relay.port);
      const codes: number[] = [];
      for (let i = 0; i < 6; i++) codes.push((await command(c, i % 2 === 0 ? 'RCPT TO:<ana@example.org>' : 'DATA', 3000)).code);
      expect(codes).toEqual([503, 503, 503, 503, 503, 503]);
      await c.expect(421, 3000);
      await c.waitClosed(3000);
    });

    it('slows every reply down by limits.errorDelay once the client made limits.softErrorLimit errors', async () => {
      const c = await session(relay.port);
      const took: number[] = [];
      for (const line of ['MAIL FROM:<a@example.com>', 'MAIL FROM:<a@example.com>', 'MAIL FROM:<a@example.com>', 'NOOP', 'MAIL FROM:<a@example.com>']) {
        const t0 = performance.now();
        await command(c, line, 3000);
        took.push(performance.now() - t0);
      }
      c.close();
      // Only a lower bound: the delay is what the limit adds, however loaded the machine is.
      expect(took.slice(3).every((ms) => ms >= 180)).toBe(true);
    });

    it('records the first limits.recordedRefusals refusals of a connection and counts the rest by class in its session record', async () => {
      const c = await session(relay.port);
      const port = c.socket.localPort!;
      const replies: TalkReply[] = [];
      replies.push(await command(c, 'MAIL FROM:<app@example.com>', 3000)); // relay_denied, recorded
      replies.push(await command(c, 'RCPT TO:<ana@example.org>', 3000)); // protocol_violation, recorded
      replies.push(await command(c, 'MAIL FROM:<app@example.com>', 3000)); // summarised
      replies.push(await command(c, 'RCPT TO:<ana@example.org>', 3000)); // summarised
      c.send('QUIT');
      await c.expect(221, 3000);
      await c.waitClosed(3000);

      const record = await sessionRecordOf(relay, port);
      const { rejects } = await recordsOf(relay, port);
      expect(rejects.map((r) => r.class)).toEqual(['relay_denied', 'protocol_violation']);
      expect(record).toMatchObject({
        rejected: 4,
        refusals: { relay_denied: 2, protocol_violation: 2 },
        refusalsSummarised: { relay_denied: 1, protocol_violation: 1 },
      });
      // Each reply names the record that tells about it: its own reject record, or the session record.
      expect(replies.map(idOf)).toEqual([rejects[0]!.id, rejects[1]!.id, record.id, record.id]);
    });

    it('counts every refusal in the metrics, summarised or not', async () => {
      const before = await rejectsTotal(relay, 'relay_denied');
      const c = await session(relay.port);
      for (let i = 0; i < 4; i++) await command(c, 'MAIL FROM:<app@example.com>', 3000);
      c.close();
      expect((await rejectsTotal(relay, 'relay_denied')) - before).toBe(4);
    });
  });

  describe('what a refused client writes', () => {
    let relay: RunningRelay;
    beforeAll(async () => {
      relay = await startRelay({
        upstreams: [{ name: 'provider', port: upstream.port }],
        clients: {
          networks: OUTSIDE,
          requireTls: false,
          allowInsecureAuth: true,
          users: [{ username: 'app', password: 'App-Pa55-w0rd', passwordHash: null, allowedSenders: [], mode: null }],
        },
      });
    });
    afterAll(() => relay.stop());

    it('is kept to 256 characters in its record, however long its command line', async () => {
      // smtp-server holds an address to 253 characters, but not an AUTH username (up to its 16 KiB line).
      const c = await session(relay.port);
      const port = c.socket.localPort!;
      const reply = await command(c, `AUTH PLAIN ${Buffer.from(`\0${'u'.repeat(12_000)}\0wrong`).toString('base64')}`, 5000);
      c.close();
      expect(reply.code).toBe(535);
      const { rejects } = await recordsOf(relay, port);
      expect(rejects[0]!.authUser).toBe(`${'u'.repeat(256)}…`);
      expect(Buffer.byteLength(JSON.stringify(rejects[0]))).toBeLessThan(1500);
    });
  });

  describe('error limits and the upstream', () => {
    let relay: RunningRelay;
    beforeAll(async () => {
      relay = await relayWith({ softErrorLimit: 2, hardErrorLimit: 3, errorDelay: 10, recordedRefusals: 1 }, ['127.0.0.0/8']);
    });
    afterAll(async () => {
      await upstream.resetFaults();
      await relay.stop();
    });

    it("does not count the upstream's refusals of relayed messages: an app whose mail the provider refuses is not cut off", async () => {
      await upstream.setFaults({ data: { code: 554, text: '5.7.1 Message refused' } });
      const c = await session(relay.port);
      const finals: number[] = [];
      for (let i = 0; i < 6; i++) {
        expect((await command(c, 'MAIL FROM:<app@example.com>')).code).toBe(250);
        expect((await command(c, 'RCPT TO:<ana@example.org>')).code).toBe(250);
        expect((await command(c, 'DATA')).code).toBe(354);
        c.sendRaw(Buffer.concat([simpleMessage(), Buffer.from('.\r\n')]));
        finals.push((await c.expect(undefined, 10_000)).code);
      }
      expect((await command(c, 'NOOP')).code).toBe(250);
      c.close();
      expect(finals).toEqual([554, 554, 554, 554, 554, 554]);
    });

    it('forgives earlier errors once a message is delivered, as Postfix does', async () => {
      await upstream.resetFaults();
      const c = await session(relay.port);
      for (let i = 0; i < 2; i++) expect((await command(c, 'RCPT TO:<ana@example.org>')).code).toBe(503);
      expect((await command(c, 'MAIL FROM:<app@example.com>')).code).toBe(250);
      expect((await command(c, 'RCPT TO:<ana@example.org>')).code).toBe(250);
      expect((await command(c, 'DATA')).code).toBe(354);
      c.sendRaw(Buffer.concat([simpleMessage(), Buffer.from('.\r\n')]));
      expect((await c.expect(undefined, 10_000)).code).toBe(250);
      for (let i = 0; i < 2; i++) expect((await command(c, 'DATA')).code).toBe(503);
      expect((await command(c, 'NOOP')).code).toBe(250);
      c.close();
    });
  });

  describe('connection rate', () => {
    it('refuses new connections over limits.connectionRatePerIp with 421 4.7.0, one record for the window, and no session record each', async () => {
      const relay = await relayWith({ connectionRatePerIp: 3 });
      try {
        const admitted: SmtpTalk[] = [];
        for (let i = 0; i < 3; i++) admitted.push(await session(relay.port));
        const refused: TalkReply[] = [];
        for (let i = 0; i < 4; i++) {
          const c = await smtpTalk(relay.port);
          refused.push(await c.expect(421, 3000));
          await c.waitClosed(3000);
        }
        for (const c of admitted) c.close();
        expect(await rejectsTotal(relay, 'connection_rate')).toBe(4);

        expect(refused[0]!.text).toMatch(/^4\.7\.0 Too many connections from 127\.0\.0\.1, try again later \(id [0-9A-Z]{26}\)$/);
        const ids = new Set(refused.map(idOf));
        expect(ids.size).toBe(1);
        // The window's record is written when the window ends, or at the latest at the stop.
        await relay.app.stop();
        const records = await relay.rejectRecords();
        const window = records.filter((r) => r.class === 'connection_rate');
        expect(window).toEqual([
          expect.objectContaining({ id: [...ids][0], command: 'CONNECT', count: 4, source: 'policy', clientReply: expect.objectContaining({ code: 421 }) }),
        ]);
        expect(await relay.sessionRecords()).toHaveLength(3);
      } finally {
        await relay.stop();
      }
    });

    it('does not count a connection that logs in: an authenticated app may connect once per message from anywhere', async () => {
      const relay = await startRelay({
        upstreams: [{ name: 'provider', port: upstream.port }],
        clients: {
          networks: OUTSIDE,
          requireTls: false,
          allowInsecureAuth: true,
          users: [{ username: 'app', password: 'App-Pa55-w0rd', passwordHash: null, allowedSenders: [], mode: null }],
        },
        limits: { connectionRatePerIp: 2 },
      });
      try {
        for (let i = 0; i < 5; i++) {
          const res = await relay.send({
            from: 'app@example.com',
            to: ['ana@example.org'],
            raw: simpleMessage(),
            auth: { user: 'app', pass: 'App-Pa55-w0rd' },
            startTls: false,
          });
          expect(res.code).toBe(250);
        }
        expect(await greetings(relay.port, 3)).toEqual([220, 220, 421]);
      } finally {
        await relay.stop();
      }
    });

    it('exempts clients.networks from the connection rate by default', async () => {
      const relay = await relayWith({ connectionRatePerIp: 2 }, ['127.0.0.0/8']);
      try {
        for (let i = 0; i < 5; i++) {
          const res = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
          expect(res.code).toBe(250);
        }
      } finally {
        await relay.stop();
      }
    });

    it('limits listed networks too when limits.connectionRateExempt is an empty list', async () => {
      const relay = await relayWith({ connectionRatePerIp: 2, connectionRateExempt: [] }, ['127.0.0.0/8']);
      try {
        expect(await greetings(relay.port, 3)).toEqual([220, 220, 421]);
      } finally {
        await relay.stop();
      }
    });
  });
});
