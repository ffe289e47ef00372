import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { SMTPServerSession } from 'smtp-server';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditRefusal } from '../../src/audit/audit-refusal.js';
import type { Recorder } from '../../src/audit/recorder.js';
import type { RelayRecord } from '../../src/audit/records.js';
import type { Config } from '../../src/config/types.js';
import { IdGenerator } from '../../src/ids.js';
import { createLogger } from '../../src/logger.js';
import { RelayEngine } from '../../src/routing/relay-engine.js';
import { RouteTable } from '../../src/routing/route-table.js';
import { Router } from '../../src/routing/router.js';
import type { ClientSession } from '../../src/transaction/client-session.js';
import { DuplicateTracker } from '../../src/transaction/duplicate-tracker.js';
import { TransactionProcessor, type TransactionReply } from '../../src/transaction/transaction.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { relayConfig, simpleMessage, type RelaySpec } from '../helpers/relay-harness.js';
import { RelayParts } from '../helpers/relay-parts.js';
import { prepareSpillDir, spillDir } from '../../src/buffer/temp-files.js';

const ID = /\(id ([0-9A-Z]{26})\)$/;

/** The trail as the transaction sees it: writes that can be made to fail, a refusal that can be set. */
class TrailStub {
  readonly written: RelayRecord[] = [];
  failWrites = false;
  refusalNow: AuditRefusal | null = null;
  /** Called with each record before it is kept (or refused). */
  onWrite: (record: RelayRecord) => void = () => undefined;

  refusal(): AuditRefusal | null {
    return this.refusalNow;
  }

  relay(record: RelayRecord): void {
    this.onWrite(record);
    if (this.failWrites) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    this.written.push(record);
  }
}

/** What smtp-server hands onData: the envelope of the transaction. */
function smtpSession(to = ['ana@example.org']): SMTPServerSession {
  return {
    envelope: {
      mailFrom: { address: 'app@example.com', args: false },
      rcptTo: to.map((address) => ({ address, args: false })),
      bodyType: '7bit',
      smtpUtf8: false,
    },
  } as unknown as SMTPServerSession;
}

function clientSession(user: string | null = null): ClientSession {
  return {
    id: 'SESSION0000000000000000001',
    ip: '127.0.0.1',
    listenerMode: 'passthrough',
    transactions: 0,
    accepted: 0,
    rejected: 0,
    bytes: 0,
    client: () => ({ ip: '127.0.0.1', port: 40_000, helo: 'client.test', user, tls: null, proxy: null }),
  };
}

/** A DATA stream that delivers `body` and ends, like smtp-server's after the final dot. */
function dataStream(body: Buffer): PassThrough {
  const s = new PassThrough();
  s.end(body);
  return s;
}

describe('one SMTP transaction from DATA to the reply', () => {
  let upstreams: FakeUpstream[];
  let dataDir: string;
  const parts = new RelayParts();
  let trail: TrailStub;

  beforeEach(async () => {
    upstreams = await Promise.all([startFakeUpstream(), startFakeUpstream()]);
    dataDir = await mkdtemp(join(tmpdir(), 'mailtrail-transaction-'));
    // What App.start() does before any transaction: the spill folder exists.
    await prepareSpillDir(dataDir);
    trail = new TrailStub();
  });
  afterEach(async () => {
    parts.close();
    await Promise.all(upstreams.map((u) => u.close()));
    await rm(dataDir, { recursive: true, force: true });
  });

  function processor(spec: Partial<RelaySpec> = {}, overrides: Partial<Config> = {}) {
    const config: Config = {
      ...relayConfig(
        {
          upstreams: [
            { port: upstreams[0]!.port, breaker: null },
            { port: upstreams[1]!.port, breaker: null },
          ],
          ...spec,
        },
        dataDir,
      ),
      ...overrides,
    };
    const router = new Router(
      new RouteTable(config.routes, config.upstreams),
      config.upstreams.map((u) => parts.channel(u)),
    );
    const duplicates = new DuplicateTracker({ window: 60_000 });
    const p = new TransactionProcessor({
      config,
      engine: new RelayEngine(router, config.timeouts.relay),
      recorder: trail as unknown as Recorder,
      duplicates,
      ids: new IdGenerator(),
      log: createLogger('silent'),
      shutdownSignal: parts.signal(),
    });
    return { p, duplicates };
  }

  const run = (p: TransactionProcessor, body = simpleMessage(), state = clientSession(), session = smtpSession()): Promise<TransactionReply> =>
    p.process(dataStream(body), session, state);

  describe('writes exactly one relay record, then replies with its id', () => {
    it('answers 250 with the transaction id once the upstream accepted, after the record was written', async () => {
      const { p } = processor();
      await upstreams[0]!.setFaults({ queueId: () => 'Q1A2B3C4' });
      let replied = false;
      let writtenBeforeReply: boolean | null = null;
      trail.onWrite = () => {
        writtenBeforeReply = !replied;
      };
      const reply = await run(p).finally(() => {
        replied = true;
      });
      expect(writtenBeforeReply).toBe(true);
      expect(reply.reply).toMatchObject({ code: 250, enhanced: '2.0.0', text: `Ok: relayed as Q1A2B3C4 (id ${reply.id})` });
      expect(trail.written).toHaveLength(1);
      const record = trail.written[0]!;
      expect(record).toMatchObject({ type: 'relay', id: reply.id, outcome: 'delivered', duplicateOf: null, upstream: { name: 'up0', queueId: 'Q1A2B3C4' } });
      // The record holds exactly what the client was told.
      expect(record.clientReply).toEqual(reply.reply);
      expect(upstreams[0]!.messages).toHaveLength(1);
    });

    it('passes the upstream’s refusal through with the id, and records it', async () => {
      const { p } = processor();
      await upstreams[0]!.setFaults({ data: { code: 554, text: '5.7.1 Message rejected as spam' } });
      const reply = await run(p);
      expect(reply.reply).toMatchObject({ code: 554, enhanced: '5.7.1' });
      expect(reply.reply.text).toMatch(ID);
      expect(trail.written).toHaveLength(1);
      expect(trail.written[0]).toMatchObject({ id: reply.id, outcome: 'rejected', clientReply: reply.reply });
    });

    it('gives every transaction its own id, in the reply and the record alike', async () => {
      const { p } = processor();
      const replies = [await run(p), await run(p)];
      expect(new Set(replies.map((r) => r.id)).size).toBe(2);
      expect(trail.written.map((r) => r.id)).toEqual(replies.map((r) => r.id));
      expect(replies.map((r) => ID.exec(r.reply.text)?.[1])).toEqual(replies.map((r) => r.id));
    });

    it('counts the transaction on its client session: transactions, accepted and refused, bytes', async () => {
      const { p } = processor();
      const state = clientSession();
      const body = simpleMessage();
      await run(p, body, state);
      await upstreams[0]!.setFaults({ data: { code: 554, text: '5.7.1 Rejected' } });
      await run(p, body, state);
      expect(state).toMatchObject({ transactions: 2, accepted: 1, rejected: 1, bytes: 2 * body.length });
      expect(trail.written.map((r) => r.session)).toEqual([
        { id: state.id, txn: 1 },
        { id: state.id, txn: 2 },
      ]);
    });

    it('is in flight from the start of DATA until its reply', async () => {
      const { p } = processor();
      let during = -1;
      trail.onWrite = () => {
        during = p.inFlight;
      };
      await run(p);
      expect([during, p.inFlight]).toEqual([1, 0]);
    });

    it('chooses the route by who sends, as whom, from where', async () => {
      const { p } = processor({ routes: [{ name: 'billing', match: { users: ['billing'], senders: null, networks: ['127.0.0.0/8'] }, upstreams: ['up1'] }] });
      await run(p, simpleMessage(), clientSession('billing'));
      expect(trail.written[0]).toMatchObject({ route: 'billing', upstream: { name: 'up1' } });
      expect(upstreams[0]!.connections).toBe(0);
    });

    it('removes the spill file of a message buffered on disk once it has replied', async () => {
      const { p } = processor({ limits: { memoryBufferSize: 64 } });
      const reply = await run(p, simpleMessage({ body: 'x'.repeat(10_000) }));
      expect(reply.reply.code).toBe(250);
      expect(await readdir(spillDir(dataDir))).toEqual([]);
    });
  });

  describe('never answers 250 without a written record', () => {
    it.each([
      {
        outcome: 'delivered',
        faults: {},
        text: 'Relayed, but the audit trail could not record it; not confirmed, so a retry may deliver it twice',
        delivered: 1,
      },
      {
        outcome: 'unknown',
        faults: { data: 'drop-after-dot' as const },
        text: 'Relayed, but the audit trail could not record it; not confirmed, so a retry may deliver it twice',
        delivered: 0,
      },
      {
        outcome: 'rejected',
        faults: { data: { code: 554, text: '5.7.1 Rejected' } },
        text: 'Cannot record the transaction; message not accepted, try again later',
        delivered: 0,
      },
      {
        outcome: 'deferred',
        faults: { data: { code: 451, text: '4.3.0 Try again' } },
        text: 'Cannot record the transaction; message not accepted, try again later',
        delivered: 0,
      },
    ])('answers 451 4.3.0 when the record of a $outcome transaction cannot be written, saying whether the upstream may have it', async (c) => {
      const { p, duplicates } = processor();
      await upstreams[0]!.setFaults(c.faults);
      trail.failWrites = true;
      let attempted: RelayRecord | null = null;
      trail.onWrite = (r) => {
        attempted = r;
      };
      const state = clientSession();
      const reply = await run(p, simpleMessage(), state);
      expect(attempted).toMatchObject({ outcome: c.outcome, id: reply.id });
      expect(reply.reply).toEqual({ code: 451, enhanced: '4.3.0', text: `${c.text} (id ${reply.id})` });
      expect(upstreams[0]!.messages).toHaveLength(c.delivered);
      expect(state).toMatchObject({ accepted: 0, rejected: 1 });
      // A record that was not written cannot be named by a retry.
      expect(duplicates.size).toBe(0);
    });
  });

  describe('refuses without relaying', () => {
    it('refuses a message over limits.maxMessageSize with 552 5.3.4 and records it as too_large', async () => {
      const { p } = processor({ limits: { maxMessageSize: 100 } });
      const body = simpleMessage({ body: 'x'.repeat(500) });
      const reply = await run(p, body);
      expect(reply.reply).toEqual({ code: 552, enhanced: '5.3.4', text: `Message size exceeds the limit (id ${reply.id})` });
      expect(trail.written).toHaveLength(1);
      expect(trail.written[0]).toMatchObject({
        id: reply.id,
        outcome: 'rejected',
        route: null,
        upstream: null,
        attempts: [],
        message: { size: body.length },
        failure: { class: 'too_large', retryable: false, actor: 'sender' },
        rcpt: [{ to: 'ana@example.org', status: 'rejected', reply: null }],
      });
      expect(upstreams[0]!.connections).toBe(0);
    });

    it.each([
      { refusal: 'write-failed' as const, message: 'the audit trail cannot be written: not relayed' },
      { refusal: 'low-space' as const, message: 'the audit trail filesystem is below audit.minFreeSpace: not relayed' },
    ])('refuses with 451 4.3.0 before relaying while the trail refuses ($refusal), and records why', async (c) => {
      const { p } = processor();
      trail.refusalNow = c.refusal;
      const reply = await run(p);
      expect(reply.reply).toEqual({
        code: 451,
        enhanced: '4.3.0',
        text: `Cannot record the transaction; message not accepted, try again later (id ${reply.id})`,
      });
      expect(trail.written).toHaveLength(1);
      expect(trail.written[0]).toMatchObject({
        id: reply.id,
        outcome: 'deferred',
        attempts: [],
        failure: { class: 'internal', retryable: true, detail: { code: 'EAUDITWRITE', message: c.message } },
      });
      expect(upstreams[0]!.connections + upstreams[1]!.connections).toBe(0);
    });

    it('records a client that vanished during DATA as aborted, with no reply to send', async () => {
      const { p } = processor();
      const stream = new PassThrough();
      stream.write(simpleMessage().subarray(0, 40));
      const replied = p.process(stream, smtpSession(), clientSession());
      setImmediate(() => stream.destroy());
      const reply = await replied;
      expect(reply.reply.code).toBe(0);
      expect(trail.written).toHaveLength(1);
      expect(trail.written[0]).toMatchObject({
        id: reply.id,
        outcome: 'aborted',
        clientReply: { code: 0, enhanced: null, text: 'client disconnected during DATA, no reply sent' },
        failure: { class: 'client_aborted', detail: { code: 'ECLIENTABORT' } },
        message: { size: 0, sha256: '' },
        rcpt: [{ to: 'ana@example.org', status: 'deferred' }],
      });
      expect(upstreams[0]!.connections).toBe(0);
    });

    it('answers 451 4.3.0 and records an internal failure when the body cannot be buffered', async () => {
      const { p } = processor({ limits: { memoryBufferSize: 16 } }, { dataDir: join(dataDir, 'missing', 'folder') });
      const reply = await run(p);
      expect(reply.reply).toMatchObject({ code: 451, enhanced: '4.3.0' });
      expect(reply.reply.text).toBe(`Local problem: message not accepted, try again later (id ${reply.id})`);
      expect(trail.written[0]).toMatchObject({ id: reply.id, outcome: 'deferred', failure: { class: 'internal', detail: { code: 'ESPILL' } } });
      expect(upstreams[0]!.connections).toBe(0);
    });
  });

  describe('answers an unknown outcome as configured', () => {
    it('451 4.4.2 by default', async () => {
      const { p } = processor();
      await upstreams[0]!.setFaults({ data: 'drop-after-dot' });
      const reply = await run(p);
      expect(reply.reply).toMatchObject({ code: 451, enhanced: '4.4.2' });
      expect(trail.written[0]).toMatchObject({ outcome: 'unknown', duplicateRisk: true, clientReply: reply.reply });
    });

    it('250 with unknownOutcomeReply 250, saying the upstream did not confirm', async () => {
      const { p } = processor({ unknownOutcomeReply: 250 });
      await upstreams[0]!.setFaults({ data: 'drop-after-dot' });
      const reply = await run(p);
      expect(reply.reply).toEqual({ code: 250, enhanced: '2.0.0', text: `Ok: handed over, upstream did not confirm (id ${reply.id})` });
      expect(trail.written[0]).toMatchObject({ outcome: 'unknown', clientReply: reply.reply });
    });
  });

  describe('links retries (duplicateOf)', () => {
    it('names the first deferred record in every retry of the same message and envelope', async () => {
      const { p } = processor();
      await upstreams[0]!.setFaults({ data: { code: 451, text: '4.3.0 Try again later' } });
      const body = simpleMessage();
      const first = await run(p, body);
      const second = await run(p, body);
      await upstreams[0]!.resetFaults();
      const third = await run(p, body);
      expect(trail.written.map((r) => [r.id, r.outcome, r.duplicateOf])).toEqual([
        [first.id, 'deferred', null],
        [second.id, 'deferred', first.id],
        [third.id, 'delivered', first.id],
      ]);
    });

    it('links nothing when the recipients differ', async () => {
      const { p } = processor();
      await upstreams[0]!.setFaults({ data: { code: 451, text: '4.3.0 Try again later' } });
      const body = simpleMessage();
      await run(p, body);
      await run(p, body, clientSession(), smtpSession(['bo@example.org']));
      expect(trail.written.map((r) => r.duplicateOf)).toEqual([null, null]);
    });
  });
});
