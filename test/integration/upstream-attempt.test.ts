import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConnectionPool } from '../../src/upstream/connection-pool.js';
import { stopReason } from '../../src/upstream/deadline.js';
import { runAttempt } from '../../src/upstream/upstream-attempt.js';
import type { ReplayableBody } from '../../src/upstream/tracked-body.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { startRawUpstream, type RawUpstream, type RawUpstreamOptions } from '../helpers/raw-upstream.js';
import { simpleMessage, upstreamConfig, type UpstreamSpec } from '../helpers/relay-harness.js';
import { RelayParts } from '../helpers/relay-parts.js';

const ENVELOPE = { from: 'app@example.com', to: ['ana@example.org'], use8BitMime: false, size: 0 };

/** A message well past the socket buffers (4 MiB send buffer at most here), so a reset mid-body lands before the final dot. */
function bigMessage(): Buffer {
  return Buffer.concat([simpleMessage(), Buffer.alloc(12 * 1024 * 1024, 'abcdefghij\r\n')]);
}

describe('one attempt at one upstream', () => {
  let upstream: FakeUpstream;
  const parts = new RelayParts();
  const poolFor = (port: number, pool: UpstreamSpec['pool'] = {}, timeouts: UpstreamSpec['timeouts'] = {}): ConnectionPool =>
    parts.pool(upstreamConfig({ name: 'up', port, pool, timeouts, breaker: null }));
  const signal = () => parts.signal();
  const attempt = (pool: ConnectionPool, body: ReplayableBody = simpleMessage(), opts: { to?: string[]; poolWaitMs?: number } = {}) =>
    runAttempt(pool, { ...ENVELOPE, to: opts.to ?? ENVELOPE.to, size: Buffer.isBuffer(body) ? body.length : 0 }, body, signal(), opts.poolWaitMs);

  beforeEach(async () => {
    upstream = await startFakeUpstream();
  });
  afterEach(async () => {
    parts.close();
    await upstream.close();
  });

  describe('reports what happened as facts', () => {
    it('a delivery: phase done, the reply to the final dot with its queue id, the accepted recipients', async () => {
      await upstream.setFaults({ queueId: () => 'Q1A2B3C4' });
      const pool = poolFor(upstream.port);
      const r = await attempt(pool);
      expect(r.facts).toEqual({
        ok: true,
        phase: 'done',
        reply: { code: 250, enhanced: null, text: 'Ok: queued as Q1A2B3C4' },
        replyPhase: 'data',
        errorCode: null,
        cause: null,
        timeoutType: null,
        syscall: null,
        message: null,
        accepted: ['ana@example.org'],
        rejected: [],
      });
      expect(r.upstream).toBe(pool.upstream);
      expect(r.reusedConnection).toBe(false);
      expect(r.tls).toBeNull();
      expect(r.timing.connectMs).toBeGreaterThan(0);
      expect(r.ms).toBeGreaterThanOrEqual(r.timing.connectMs);
      expect(upstream.messages).toHaveLength(1);
      expect(pool.pending).toBe(0);
    });

    it('a partial delivery: each refused recipient with its own reply', async () => {
      await upstream.setFaults({ rcpt: (a) => (a.startsWith('bo@') ? { code: 550, text: '5.1.1 <bo@example.org>: User unknown' } : null) });
      const r = await attempt(poolFor(upstream.port), simpleMessage(), { to: ['ana@example.org', 'bo@example.org'] });
      expect(r.facts).toMatchObject({ ok: true, phase: 'done', accepted: ['ana@example.org'] });
      expect(r.facts.rejected).toEqual([{ recipient: 'bo@example.org', reply: { code: 550, enhanced: '5.1.1', text: '<bo@example.org>: User unknown' } }]);
    });

    it('a refused sender: phase envelope, the reply to MAIL FROM', async () => {
      await upstream.setFaults({ mailFrom: { code: 553, text: '5.7.1 Sender address rejected' } });
      const r = await attempt(poolFor(upstream.port));
      expect(r.facts).toMatchObject({
        ok: false,
        phase: 'envelope',
        errorCode: 'EENVELOPE',
        replyPhase: 'mail',
        reply: { code: 553, enhanced: '5.7.1', text: 'Sender address rejected' },
      });
      expect(upstream.allData).toHaveLength(0);
    });

    it('refused recipients: phase envelope, the reply to RCPT TO, each recipient with its reply', async () => {
      await upstream.setFaults({ rcpt: () => ({ code: 550, text: '5.1.1 User unknown' }) });
      const r = await attempt(poolFor(upstream.port));
      expect(r.facts).toMatchObject({ ok: false, phase: 'envelope', errorCode: 'EENVELOPE', replyPhase: 'rcpt', reply: { code: 550, enhanced: '5.1.1' } });
      expect(r.facts.rejected).toEqual([{ recipient: 'ana@example.org', reply: { code: 550, enhanced: '5.1.1', text: 'User unknown' } }]);
    });

    it('a refused message: phase sent (the whole body went out), the reply to the final dot', async () => {
      await upstream.setFaults({ data: { code: 554, text: '5.7.1 Message rejected as spam' } });
      const r = await attempt(poolFor(upstream.port));
      expect(r.facts).toMatchObject({ ok: false, phase: 'sent', errorCode: 'EMESSAGE', replyPhase: 'data', reply: { code: 554, enhanced: '5.7.1' } });
    });

    it('a refused connection: phase connecting, no reply, the system cause', async () => {
      await upstream.refuse();
      const pool = poolFor(upstream.port);
      const r = await attempt(pool);
      expect(r.facts).toMatchObject({ ok: false, phase: 'connecting', reply: null, replyPhase: null, cause: 'ECONNREFUSED' });
      expect(r.reusedConnection).toBeNull();
      expect(pool.pending).toBe(0);
    });

    it('a connection lost before the 354: phase envelope, nothing of the body sent', async () => {
      await upstream.setFaults({ data: 'drop-before-reply' });
      const r = await attempt(poolFor(upstream.port));
      expect(r.facts).toMatchObject({ ok: false, phase: 'envelope', reply: null });
      expect(r.timing.dataMs).toBe(0);
    });

    it('a connection reset in the middle of the body: phase body', async () => {
      await upstream.setFaults({ data: 'reset-mid-data' });
      const r = await attempt(poolFor(upstream.port), bigMessage());
      expect(r.facts).toMatchObject({ ok: false, phase: 'body', reply: null });
      expect(upstream.allData).toHaveLength(0);
    });

    it('a connection lost after the final dot: phase sent, no reply', async () => {
      await upstream.setFaults({ data: 'drop-after-dot' });
      const r = await attempt(poolFor(upstream.port));
      expect(r.facts).toMatchObject({ ok: false, phase: 'sent', reply: null });
      expect(upstream.allData).toHaveLength(1);
    });

    it('a stop while waiting for the reply to the final dot: phase sent, the stop’s code', async () => {
      await upstream.setFaults({ data: 'hang-after-dot' });
      const pool = poolFor(upstream.port);
      const stop = signal();
      const body = simpleMessage();
      const attempted = runAttempt(pool, { ...ENVELOPE, size: body.length }, body, stop);
      await upstream.waitFor(() => upstream.allData.length === 1, 5_000);
      stop.stop(stopReason('Relay deadline reached', 'EDEADLINE'));
      const r = await attempted;
      expect(r.facts).toMatchObject({ ok: false, phase: 'sent', reply: null, errorCode: 'EDEADLINE' });
      expect(pool.pending).toBe(0);
    });

    it('every connection busy for the pool wait: phase connecting, EPOOLWAIT, nothing sent', async () => {
      const pool = poolFor(upstream.port, { maxConnections: 1 });
      const held = await pool.acquire(signal());
      const r = await attempt(pool, simpleMessage(), { poolWaitMs: 30 });
      expect(r.facts).toMatchObject({ ok: false, phase: 'connecting', errorCode: 'EPOOLWAIT', reply: null });
      expect(upstream.transactions).toBe(0);
      pool.release(held.connection, true);
      expect(pool.pending).toBe(0);
    });

    it('a body kept in a spill file goes out byte for byte, phase done', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'mailtrail-attempt-'));
      try {
        // A line starting with a dot: dot-stuffed on the wire, unstuffed by the upstream.
        const raw = Buffer.concat([simpleMessage(), Buffer.from('.leading dot\r\n')]);
        const path = join(dir, 'body.eml');
        await writeFile(path, raw);
        const r = await attempt(poolFor(upstream.port), { path });
        expect(r.facts).toMatchObject({ ok: true, phase: 'done' });
        expect(upstream.messages[0]!.raw.equals(raw)).toBe(true);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('gives the connection back in the right state', () => {
    it('keeps a connection that delivered, and the next attempt reuses it', async () => {
      const pool = poolFor(upstream.port);
      const first = await attempt(pool);
      const second = await attempt(pool);
      expect([first.reusedConnection, second.reusedConnection]).toEqual([false, true]);
      expect(second.timing.connectMs).toBe(0);
      expect(upstream.connections).toBe(1);
      expect(upstream.messages).toHaveLength(2);
    });

    it('closes a connection refused with 421 instead of reusing it', async () => {
      const pool = poolFor(upstream.port);
      await upstream.setFaults({ mailFrom: { code: 421, text: '4.7.0 Try again later, closing connection' } });
      const first = await attempt(pool);
      expect(first.facts).toMatchObject({ ok: false, reply: { code: 421 } });
      await upstream.resetFaults();
      const second = await attempt(pool);
      expect(second).toMatchObject({ reusedConnection: false, facts: { ok: true } });
      expect(upstream.connections).toBe(2);
    });

    it('opens a new connection after one was lost', async () => {
      const pool = poolFor(upstream.port);
      await upstream.setFaults({ data: 'drop-after-dot' });
      await attempt(pool);
      await upstream.resetFaults();
      const second = await attempt(pool);
      expect(second).toMatchObject({ reusedConnection: false, facts: { ok: true } });
      expect(upstream.connections).toBe(2);
    });
  });

  describe('replaces a pooled connection found dead', () => {
    it('does not replace a connection it has just opened: the loss is the attempt’s failure', async () => {
      await upstream.setFaults({ mailFrom: 'drop' });
      const r = await attempt(poolFor(upstream.port));
      expect(r.facts).toMatchObject({ ok: false, phase: 'envelope', reply: null });
      expect(upstream.connections).toBe(1);
    });

    it('replaces a reused connection only once: when the new one dies too, that is the attempt’s failure', async () => {
      const pool = poolFor(upstream.port);
      await attempt(pool);
      await upstream.setFaults({ mailFrom: 'drop' });
      const r = await attempt(pool);
      expect(r.facts).toMatchObject({ ok: false, phase: 'envelope', reply: null });
      expect(upstream.connections).toBe(2);
      expect(upstream.transactions).toBe(3);
      expect(pool.pending).toBe(0);
    });

    it('never sends again once the body started: a reused connection lost after the final dot is reported, not replaced', async () => {
      const pool = poolFor(upstream.port);
      await attempt(pool);
      await upstream.setFaults({ data: 'drop-after-dot' });
      const r = await attempt(pool);
      expect(r).toMatchObject({ reusedConnection: true, facts: { ok: false, phase: 'sent' } });
      expect(upstream.connections).toBe(1);
      expect(upstream.allData).toHaveLength(2);
    });

    it('never sends again once the body started: a reused connection reset mid-body is reported, not replaced', async () => {
      const pool = poolFor(upstream.port);
      await attempt(pool);
      await upstream.setFaults({ data: 'reset-mid-data' });
      const r = await attempt(pool, bigMessage());
      expect(r).toMatchObject({ reusedConnection: true, facts: { ok: false, phase: 'body' } });
      expect(upstream.connections).toBe(1);
      expect(upstream.transactions).toBe(2);
    });

    it('reports a connecting failure and frees its slot when the replacement cannot be opened', async () => {
      const pool = poolFor(upstream.port);
      await attempt(pool);
      await upstream.setFaults({ mailFrom: 'drop', refuse: true });
      const r = await attempt(pool);
      expect(r.facts).toMatchObject({ ok: false, phase: 'connecting', cause: 'ECONNREFUSED' });
      expect(pool.pending).toBe(0);
    });
  });
});

/** Byte-level upstreams: to see RSET on the wire, and a pooled connection that dies at the next command. */
describe('one attempt at a scripted upstream', () => {
  let raw: RawUpstream | null = null;
  const parts = new RelayParts();

  async function start(opts: RawUpstreamOptions): Promise<{ raw: RawUpstream; pool: ConnectionPool }> {
    raw = await startRawUpstream(opts);
    return { raw, pool: parts.pool(upstreamConfig({ name: 'raw', port: raw.port, breaker: null })) };
  }
  const attempt = (pool: ConnectionPool) => {
    const body = simpleMessage();
    return runAttempt(pool, { ...ENVELOPE, size: body.length }, body, parts.signal(20_000));
  };
  /** Answers `first` to the first command of this verb, the default after that. */
  const firstOnly = (first: string, then: string) => {
    let n = 0;
    return () => (n++ === 0 ? first : then);
  };

  afterEach(async () => {
    parts.close();
    await raw?.close();
    raw = null;
  });

  it('sends RSET after refused recipients and carries the next message on the same connection', async () => {
    // Without PIPELINING, so the commands on the wire follow the replies one by one.
    const EHLO = '250-raw-upstream.test\n250-8BITMIME\n250 SIZE 52428800';
    const { raw, pool } = await start({ script: { EHLO, RCPT: firstOnly('550 5.1.1 User unknown', '250 2.1.5 Ok') } });
    const first = await attempt(pool);
    const second = await attempt(pool);
    expect(first.facts).toMatchObject({ ok: false, replyPhase: 'rcpt' });
    expect(second).toMatchObject({ reusedConnection: true, facts: { ok: true } });
    expect(raw.connections).toBe(1);
    expect(raw.commands.filter((c) => /^(MAIL|RSET|DATA)/.test(c)).map((c) => c.split(' ')[0])).toEqual(['MAIL', 'RSET', 'MAIL', 'DATA']);
  });

  it('sends RSET after a refused message and carries the next message on the same connection', async () => {
    const { raw, pool } = await start({ script: { '.': firstOnly('554 5.7.1 Rejected as spam', '250 2.0.0 Ok: queued as RAW2') } });
    const first = await attempt(pool);
    const second = await attempt(pool);
    expect(first.facts).toMatchObject({ ok: false, phase: 'sent', replyPhase: 'data' });
    expect(second).toMatchObject({ reusedConnection: true, facts: { ok: true } });
    expect(raw.connections).toBe(1);
    expect(raw.commands).toContain('RSET');
    expect(raw.transactions).toHaveLength(2);
  });

  it('closes the connection when the upstream refuses the RSET', async () => {
    const { raw, pool } = await start({ script: { RCPT: firstOnly('550 5.1.1 User unknown', '250 2.1.5 Ok'), RSET: '500 5.5.1 No' } });
    await attempt(pool);
    const second = await attempt(pool);
    expect(second).toMatchObject({ reusedConnection: false, facts: { ok: true } });
    expect(raw.connections).toBe(2);
  });

  it('replaces a reused connection the upstream closed while idle, within the same attempt, and sends the message once', async () => {
    // The pooled connection dies at its next command, without a reply: what a server closing an
    // idle connection looks like to a client that has not read the close yet.
    const { raw, pool } = await start({ script: { MAIL: (cmd) => (cmd.connection === 1 && cmd.transactions.length === 1 ? 'drop' : '250 2.1.0 Ok') } });
    const first = await attempt(pool);
    const second = await attempt(pool);
    expect(first).toMatchObject({ reusedConnection: false, facts: { ok: true } });
    expect(second).toMatchObject({ reusedConnection: false, facts: { ok: true, phase: 'done' } });
    expect(second.timing.connectMs).toBeGreaterThan(0);
    expect(raw.connections).toBe(2);
    expect(raw.transactions.map((t) => t.connection)).toEqual([1, 2]);
    expect(pool.pending).toBe(0);
  });

  it('does not replace a reused connection whose upstream answered: a refusal at MAIL FROM is the attempt’s result', async () => {
    const { raw, pool } = await start({ script: { MAIL: (cmd) => (cmd.transactions.length === 1 ? '451 4.3.0 Try later' : '250 2.1.0 Ok') } });
    await attempt(pool);
    const second = await attempt(pool);
    expect(second).toMatchObject({ reusedConnection: true, facts: { ok: false, phase: 'envelope', reply: { code: 451 } } });
    expect(raw.connections).toBe(1);
  });
});
