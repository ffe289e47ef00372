import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RejectRecord } from '../../src/audit/records.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RelaySpec, type RunningRelay } from '../helpers/relay-harness.js';
import { smtpTalk, type SmtpTalk, type TalkReply } from '../helpers/smtp-client.js';

// Deadlines here are a second or two, so each test takes a few seconds; the margins between what a
// client does and the limit it is held to are wide (several times), for a loaded machine.

const ULID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)$/;

/** Connects, reads the greeting and says EHLO. */
async function session(port: number): Promise<SmtpTalk> {
  const c = await smtpTalk(port, '127.0.0.1', { timeoutMs: 20_000 });
  await c.expect(220);
  c.send('EHLO client.test');
  await c.expect(250);
  return c;
}

/** Opens a transaction up to the 354. */
async function openData(c: SmtpTalk): Promise<void> {
  c.send('MAIL FROM:<app@example.com>');
  await c.expect(250);
  c.send('RCPT TO:<ana@example.org>');
  await c.expect(250);
  c.send('DATA');
  await c.expect(354);
}

/**
 * Writes `bytes` in pieces of `chunk` bytes every `everyMs` until all are written or the server
 * closed the connection (bounded by the length of `bytes`). Resolves with the time it stopped.
 */
async function dribble(c: SmtpTalk, bytes: Buffer, chunk: number, everyMs: number): Promise<void> {
  for (let i = 0; i < bytes.length && !c.closed; i += chunk) {
    c.sendRaw(bytes.subarray(i, i + chunk));
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The next reply, or the error text when none came (so an expectation shows what happened). */
async function nextReply(c: SmtpTalk, timeoutMs: number): Promise<TalkReply | string> {
  return c.expect(undefined, timeoutMs).catch((err: Error) => err.message);
}

async function rejectFor(relay: RunningRelay, reply: TalkReply): Promise<RejectRecord> {
  const id = ULID_IN_REPLY.exec(reply.text)?.[1];
  expect(id, `reply without "(id <ULID>)": ${reply.text}`).toBeDefined();
  const record = (await relay.rejectRecords()).find((r) => r.id === id);
  expect(record, `no reject record with the id in: ${reply.text}`).toBeDefined();
  return record!;
}

describe('client deadlines', () => {
  let upstream: FakeUpstream;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(() => upstream.close());

  function relayWith(spec: Omit<RelaySpec, 'upstreams'>): Promise<RunningRelay> {
    return startRelay({ upstreams: [{ port: upstream.port }], ...spec });
  }

  describe('a command line must be complete within timeouts.command', () => {
    const COMMAND_MS = 1_500;
    let relay: RunningRelay;
    beforeAll(async () => {
      relay = await relayWith({ clientIdle: 1_000, deadlines: { command: COMMAND_MS } });
    });
    afterAll(() => relay.stop());

    it('cuts a client that trickles a command one byte at a time (each byte resets the idle timer) with 421 4.4.2 and a client_too_slow record', async () => {
      const c = await session(relay.port);
      const ready = performance.now();
      // 200 bytes at one per 200 ms would take 40 s; the idle timeout (1 s) never fires.
      const trickling = dribble(c, Buffer.from(`NOOP ${'x'.repeat(195)}`), 1, 200);
      const reply = await nextReply(c, 20_000);
      const after = performance.now() - ready;
      await trickling;
      expect(reply).toMatchObject({ code: 421 });
      const r = reply as TalkReply;
      expect(r.text).toMatch(/^4\.4\.2 /);
      await c.waitClosed(10_000);
      // Not before the deadline (a little slack for timer granularity).
      expect(after).toBeGreaterThanOrEqual(COMMAND_MS - 50);
      expect(await rejectFor(relay, r)).toMatchObject({
        class: 'client_too_slow',
        command: 'COMMAND',
        source: 'policy',
        clientReply: { code: 421, enhanced: '4.4.2' },
        client: { ip: '127.0.0.1', helo: 'client.test' },
      });
    });

    it('records the cut once: the 421 is not recorded again as a protocol refusal', async () => {
      const before = (await relay.rejectRecords()).length;
      const c = await session(relay.port);
      const trickling = dribble(c, Buffer.from('RSET xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'), 1, 200);
      expect(await nextReply(c, 20_000)).toMatchObject({ code: 421 });
      await trickling;
      await c.waitClosed(10_000);
      const added = (await relay.rejectRecords()).slice(before);
      expect(added.map((r) => r.class)).toEqual(['client_too_slow']);
    });

    it('cuts a client that trickles the continuation line of AUTH LOGIN', async () => {
      const withUsers = await relayWith({
        clientIdle: 1_000,
        deadlines: { command: COMMAND_MS },
        clients: {
          networks: [],
          allowInsecureAuth: true,
          users: [{ username: 'billing', password: 'Billing-Pa55', passwordHash: null, allowedSenders: [], mode: null }],
        },
      });
      try {
        const c = await session(withUsers.port);
        c.send('AUTH LOGIN');
        await c.expect(334);
        const trickling = dribble(c, Buffer.from('YmlsbGluZw'.repeat(20)), 1, 200);
        expect(await nextReply(c, 20_000)).toMatchObject({ code: 421 });
        await trickling;
      } finally {
        await withUsers.stop();
      }
    });

    it('never cuts a client that sends each command whole, however many it sends', async () => {
      const c = await session(relay.port);
      // 4 s of NOOPs every 250 ms: far longer than timeouts.command in all, each one at once.
      for (let i = 0; i < 16; i++) {
        c.send('NOOP');
        expect((await c.expect(undefined, 10_000)).code).toBe(250);
        await new Promise((r) => setTimeout(r, 250));
      }
      c.send('QUIT');
      expect((await c.expect(undefined, 10_000)).code).toBe(221);
    });
  });

  describe('message data must keep up timeouts.dataMinRate', () => {
    it('cuts a client whose message trickles in, answers 421 4.4.2 and records the transaction as client_too_slow; nothing is relayed', async () => {
      const relay = await relayWith({ clientIdle: 1_000, deadlines: { command: 1_500, dataMinRate: 1_000 } });
      try {
        upstream.clearRecords();
        const c = await session(relay.port);
        await openData(c);
        c.sendRaw(Buffer.from('Subject: slow\r\nMessage-ID: <slow-data@example.com>\r\n\r\n'));
        // 5 bytes a second against a minimum of 1000.
        const trickling = dribble(c, Buffer.from('y'.repeat(200)), 1, 200);
        const reply = await nextReply(c, 20_000);
        await trickling;
        expect(reply).toMatchObject({ code: 421 });
        const r = reply as TalkReply;
        expect(r.text).toMatch(/^4\.4\.2 /);
        await c.waitClosed(10_000);
        const record = (await relay.relayRecords()).find((x) => r.text.includes(x.id));
        expect(record).toMatchObject({
          outcome: 'deferred',
          failure: { class: 'client_too_slow', actor: 'sender', detail: { code: 'ECLIENTSLOW' } },
          clientReply: { code: 421, enhanced: '4.4.2' },
          upstream: null,
        });
        // One record for the cut: the relay record, not a reject record as well.
        expect((await relay.rejectRecords()).filter((x) => x.session.id === record!.session.id)).toEqual([]);
        expect(upstream.transactions).toBe(0);
      } finally {
        await relay.stop();
      }
    });

    it('relays a message that arrives above the minimum rate, even when it takes several times timeouts.command', async () => {
      const relay = await relayWith({ clientIdle: 2_000, deadlines: { command: 3_000, dataMinRate: 1_000 } });
      try {
        upstream.clearRecords();
        const c = await session(relay.port);
        await openData(c);
        // 20 KB at about 4 KB a second: 5 s in all, four times the minimum rate.
        const body = Buffer.from(`Subject: steady\r\n\r\n${'z'.repeat(78)}\r\n`.repeat(250));
        await dribble(c, body, 800, 200);
        c.sendRaw('.\r\n');
        expect((await c.expect(undefined, 20_000)).code).toBe(250);
        c.close();
        expect(upstream.messages).toHaveLength(1);
      } finally {
        await relay.stop();
      }
    });
  });

  describe('a session ends at timeouts.session', () => {
    it('ends a session that keeps sending whole commands with 421 4.4.2 once the deadline falls between transactions, and records client_timeout', async () => {
      const relay = await relayWith({ clientIdle: 1_000, deadlines: { command: 1_500, session: 2_000 } });
      try {
        const c = await session(relay.port);
        const started = performance.now();
        let reply: TalkReply | string = '';
        // NOOP every 200 ms, bounded: 50 of them would take 10 s.
        for (let i = 0; i < 50; i++) {
          c.send('NOOP');
          reply = await nextReply(c, 10_000);
          if (typeof reply === 'string' || reply.code !== 250) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        const after = performance.now() - started;
        expect(reply).toMatchObject({ code: 421 });
        const r = reply as TalkReply;
        expect(r.text).toMatch(/^4\.4\.2 /);
        await c.waitClosed(10_000);
        expect(after).toBeGreaterThanOrEqual(2_000 - 300);
        expect(await rejectFor(relay, r)).toMatchObject({ class: 'client_timeout', command: 'SESSION', clientReply: { code: 421, enhanced: '4.4.2' } });
      } finally {
        await relay.stop();
      }
    });

    it('never cuts a message still arriving when the deadline falls: it is relayed and answered, then the session ends with 421', async () => {
      const relay = await relayWith({ clientIdle: 2_000, deadlines: { command: 3_000, session: 1_500, dataMinRate: 100 } });
      try {
        upstream.clearRecords();
        const c = await session(relay.port);
        await openData(c);
        // 3 s of body at 1 KB a second: the session deadline falls in the middle of it.
        await dribble(c, Buffer.from(`Subject: long\r\n\r\n${'w'.repeat(98)}\r\n`.repeat(30)), 100, 100);
        c.sendRaw('.\r\n');
        const final = await c.expect(undefined, 20_000);
        expect(final.code).toBe(250);
        expect(upstream.messages).toHaveLength(1);
        const bye = await nextReply(c, 10_000);
        expect(bye).toMatchObject({ code: 421 });
        expect((bye as TalkReply).text).toMatch(/^4\.4\.2 /);
        await c.waitClosed(10_000);
      } finally {
        await relay.stop();
      }
    });

    it('lets a message the upstream is still relaying when the deadline falls get its answer, then ends the session', async () => {
      // A long idle timeout, so a 421 right after the reply can only be the session deadline's.
      const relay = await relayWith({ clientIdle: 10_000, deadlines: { command: 11_000, session: 1_000 } });
      try {
        upstream.clearRecords();
        await upstream.setFaults({ delayMs: { data: 2_000 } });
        const c = await session(relay.port);
        await openData(c);
        c.sendRaw(Buffer.concat([simpleMessage({ messageId: '<in-flight@example.com>' }), Buffer.from('.\r\n')]));
        const final = await c.expect(undefined, 20_000);
        expect(final.code).toBe(250);
        const bye = await nextReply(c, 5_000);
        expect(bye).toMatchObject({ code: 421 });
        expect((bye as TalkReply).text).toMatch(/^4\.4\.2 /);
        await c.waitClosed(10_000);
        const record = (await relay.relayRecords()).find((r) => r.message.messageId === '<in-flight@example.com>');
        expect(record?.outcome).toBe('delivered');
      } finally {
        await upstream.resetFaults();
        await relay.stop();
      }
    });

    it('lets a transaction opened before the deadline reach DATA, then ends the session after its reply', async () => {
      const relay = await relayWith({ clientIdle: 10_000, deadlines: { command: 11_000, session: 1_000 } });
      try {
        upstream.clearRecords();
        const c = await session(relay.port);
        c.send('MAIL FROM:<app@example.com>');
        await c.expect(250);
        // The deadline falls while the envelope is open.
        await new Promise((r) => setTimeout(r, 1_500));
        c.send('RCPT TO:<ana@example.org>');
        expect((await c.expect(undefined, 10_000)).code).toBe(250);
        c.send('DATA');
        expect((await c.expect(undefined, 10_000)).code).toBe(354);
        c.sendRaw(Buffer.concat([simpleMessage(), Buffer.from('.\r\n')]));
        expect((await c.expect(undefined, 20_000)).code).toBe(250);
        const bye = await nextReply(c, 5_000);
        expect(bye).toMatchObject({ code: 421 });
        expect((bye as TalkReply).text).toMatch(/^4\.4\.2 /);
        expect(upstream.messages).toHaveLength(1);
      } finally {
        await relay.stop();
      }
    });
  });

  describe('slow clients holding every slot', () => {
    it('no longer lock out a real client: once timeouts.command has passed they are cut and the slots are free', async () => {
      const SLOTS = 20;
      const relay = await relayWith({ clientIdle: 1_000, deadlines: { command: 1_500 }, limits: { maxConnections: SLOTS, maxConnectionsPerIp: 1_000 } });
      const tricklers: SmtpTalk[] = [];
      try {
        for (let i = 0; i < SLOTS; i++) tricklers.push(await session(relay.port));
        const line = Buffer.from(`NOOP ${'x'.repeat(95)}`);
        const trickling = tricklers.map((c) => dribble(c, line, 1, 200));
        // Every slot is taken: a real client is refused for now.
        const early = await smtpTalk(relay.port);
        expect((await early.expect()).code).toBe(421);
        early.close();
        // Bounded wait for the tricklers to be cut (20 s at most).
        await Promise.all(tricklers.map((c) => c.waitClosed(20_000)));
        await Promise.all(trickling);
        // The slots are released once the sessions are closed.
        await new Promise((r) => setTimeout(r, 200));
        const res = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
        expect(res).toMatchObject({ ok: true, code: 250 });
      } finally {
        for (const c of tricklers) c.close();
        await relay.stop();
      }
    });
  });
});
