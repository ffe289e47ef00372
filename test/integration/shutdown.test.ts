import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../src/app.js';
import type { AuditRecord, RelayRecord, SessionRecord } from '../../src/audit/records.js';
import { createLogger } from '../../src/logger.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { relayConfig, simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { sendMessage, smtpTalk, type SmtpTalk } from '../helpers/smtp-client.js';

const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)/;

/**
 * Runs `fn` with a relay whose app the test stops itself through `relay.app.stop()`. The trail is
 * read after the stop (the harness's own stop() would delete it), then the temp files go.
 */
async function withRelay(upstream: FakeUpstream, fn: (relay: RunningRelay, stop: () => Promise<void>) => Promise<void>): Promise<void> {
  const relay = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port }] });
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => (stopping ??= relay.app.stop());
  try {
    await fn(relay, stop);
  } finally {
    await stop();
    await rm(relay.dataDir, { recursive: true, force: true });
    await relay.pki?.cleanup();
  }
}

/** Connects, reads the greeting, says EHLO. */
async function idleSession(port: number): Promise<SmtpTalk> {
  const c = await smtpTalk(port);
  await c.expect(220);
  c.send('EHLO idle.test');
  await c.expect(250);
  return c;
}

describe('graceful shutdown', () => {
  let upstream: FakeUpstream;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(() => upstream.close());

  it('lets a transaction in flight finish: the client gets 250 and the record is written', async () => {
    upstream.clearRecords();
    await upstream.setFaults({ delayMs: { data: 1500 } });
    try {
      await withRelay(upstream, async (relay, stop) => {
        const sending = relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ messageId: '<in-flight@example.com>' }) });
        // The body is with the upstream, which sits on its reply for 1.5 s.
        await upstream.waitFor(() => upstream.transactions === 1, 3000);
        await new Promise((r) => setTimeout(r, 100));
        let stoppedAt = 0;
        const stopped = stop().then(() => {
          stoppedAt = performance.now();
        });
        const res = await sending;
        const repliedAt = performance.now();
        await stopped;

        expect(res).toMatchObject({ ok: true, code: 250 });
        expect(stoppedAt).toBeGreaterThanOrEqual(repliedAt);
        expect(upstream.messages).toHaveLength(1);
        const records = await relay.relayRecords();
        const record = records.find((r) => r.message.messageId === '<in-flight@example.com>');
        expect(record).toMatchObject({ outcome: 'delivered', clientReply: { code: 250 } });
        expect(res.response).toContain(record!.id);
      });
    } finally {
      await upstream.resetFaults();
    }
  });

  it('refuses new connections as soon as the stop begins', async () => {
    await upstream.setFaults({ delayMs: { data: 1500 } });
    try {
      await withRelay(upstream, async (relay, stop) => {
        // A transaction in flight keeps the stop from finishing while we knock.
        const sending = relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
        const before = upstream.transactions;
        await upstream.waitFor(() => upstream.transactions > before, 3000);
        const stopped = stop();

        await expect(smtpTalk(relay.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
        const late = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
        expect(late).toMatchObject({ ok: false, code: null });

        expect((await sending).code).toBe(250);
        await stopped;
      });
    } finally {
      await upstream.resetFaults();
    }
  });

  it('tells an idle client 421 and closes its connection', async () => {
    await withRelay(upstream, async (relay, stop) => {
      const idle = await idleSession(relay.port);
      const midEnvelope = await idleSession(relay.port);
      midEnvelope.send('MAIL FROM:<app@example.com>');
      await midEnvelope.expect(250);

      const t0 = performance.now();
      const stopped = stop();
      for (const c of [idle, midEnvelope]) {
        const reply = await c.expect(421, 3000);
        expect(reply.text).toMatch(/^4\.3\.2 .*shutting down/i);
        await c.waitClosed(3000);
      }
      await stopped;
      expect(performance.now() - t0).toBeLessThan(3000);
    });
  });

  it('writes the session record of every connection still open at the stop, before the trail closes', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'mailtrail-test-'));
    const config = relayConfig({ upstreams: [{ name: 'provider', port: upstream.port }], tls: null }, dataDir);
    const app = new App(config, createLogger('silent'));
    try {
      const info = await app.start();
      const port = info.listeners[0]!.port;
      const idle = await idleSession(port);
      const talking = await idleSession(port);
      const ports = [idle.socket.localPort, talking.socket.localPort];

      const stopped = app.stop();
      // One client only waits; the other sends a command as the stop begins.
      talking.send('NOOP');
      for (const c of [idle, talking]) {
        expect((await c.expect(undefined, 3000)).code).toBe(421);
        await c.waitClosed(3000);
      }
      await stopped;

      const records = (await readFile(config.audit.file, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AuditRecord);
      const sessions = records.filter((r): r is SessionRecord => r.type === 'session');
      expect(sessions.map((s) => s.client.port).sort()).toEqual([...ports].sort());
      // Written before the trail was closed: the final checkpoint comes after them.
      const lastCheckpoint = records.map((r) => r.type).lastIndexOf('checkpoint');
      expect(lastCheckpoint).toBe(records.length - 1);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('names the session record in the 421 it sends at the stop', async () => {
    await withRelay(upstream, async (relay, stop) => {
      const idle = await idleSession(relay.port);
      const port = idle.socket.localPort;
      const stopped = stop();
      const reply = await idle.expect(421, 3000);
      await stopped;
      const id = ID_IN_REPLY.exec(reply.text)?.[1];
      expect(id, reply.text).toBeDefined();
      const session = (await relay.sessionRecords()).find((s) => s.id === id);
      expect(session?.client.port).toBe(port);
    });
  });

  it('answers 451 and records an unknown outcome when the grace runs out after the body went out', async () => {
    // Built directly: the harness's shutdown grace is fixed at 5 s.
    await upstream.setFaults({ delayMs: { data: 4000 } });
    const dataDir = await mkdtemp(join(tmpdir(), 'mailtrail-test-'));
    const base = relayConfig({ upstreams: [{ name: 'provider', port: upstream.port }], tls: null }, dataDir);
    const app = new App({ ...base, timeouts: { ...base.timeouts, shutdown: 300 } }, createLogger('silent'));
    try {
      const info = await app.start();
      const before = upstream.transactions;
      const sending = sendMessage({
        port: info.listeners[0]!.port,
        from: 'app@example.com',
        to: ['ana@example.org'],
        raw: simpleMessage({ messageId: '<grace@example.com>' }),
        startTls: false,
      });
      await upstream.waitFor(() => upstream.transactions > before, 3000);
      await new Promise((r) => setTimeout(r, 200));
      const t0 = performance.now();
      await app.stop();
      const res = await sending;

      expect(performance.now() - t0).toBeLessThan(3000);
      expect(res).toMatchObject({ ok: false, code: 451 });
      const id = ID_IN_REPLY.exec(res.response ?? '')?.[1];
      const text = await readFile(base.audit.file, 'utf8');
      const records = text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AuditRecord);
      const record = records.find((r): r is RelayRecord => r.type === 'relay' && r.id === id);
      expect(record).toMatchObject({ outcome: 'unknown', duplicateRisk: true, clientReply: { code: 451 } });
    } finally {
      await upstream.resetFaults();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
