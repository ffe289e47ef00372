import { mkdtemp, readFile, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay } from '../helpers/relay-harness.js';
import type { SendResult } from '../helpers/smtp-client.js';
import { verifyTrail } from '../../src/tools/verify.js';

const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)/;
const MESSAGES = 120;
const CONCURRENCY = 12;

interface Rec {
  type: string;
  id: string;
  seq: number;
}

/** Every record of the given files, gzip or plain, in order. */
async function readAll(files: readonly string[]): Promise<Rec[]> {
  const out: Rec[] = [];
  for (const f of files) {
    const bytes = await readFile(f);
    const text = bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes).toString('utf8') : bytes.toString('utf8');
    for (const line of text.split('\n')) if (line) out.push(JSON.parse(line) as Rec);
  }
  return out;
}

/** Sends `MESSAGES` messages, `CONCURRENCY` at a time; `during` runs between batches. */
async function sendUnderLoad(send: (n: number) => Promise<SendResult>, during: () => Promise<void> | void): Promise<SendResult[]> {
  const results: SendResult[] = [];
  for (let start = 0; start < MESSAGES; start += CONCURRENCY) {
    const batch = Array.from({ length: Math.min(CONCURRENCY, MESSAGES - start) }, (_, i) => send(start + i));
    await during();
    results.push(...(await Promise.all(batch)));
  }
  return results;
}

function acknowledgedIds(results: readonly SendResult[]): string[] {
  return results.map((r) => {
    expect(r.code, r.ok ? '' : r.error.message).toBe(250);
    return ID_IN_REPLY.exec(r.response ?? '')![1]!;
  });
}

describe('rotation under load', () => {
  let upstream: FakeUpstream;
  let dir: string;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(async () => {
    await upstream.close();
  });

  it('loses and duplicates no record while rotating by size over and over, and the chain spans every file', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-rotation-'));
    const auditFile = join(dir, 'audit.log');
    // ~1.6 KB per relay record: a rotation every two records, while twelve transactions are in flight.
    const relay = await startRelay({
      upstreams: [{ port: upstream.port, pool: { maxConnections: 4 } }],
      auditFile,
      audit: { rotate: { size: 4096, daily: false, keep: 10_000, compress: true } },
    });
    try {
      const results = await sendUnderLoad(
        (n) =>
          relay.send({
            from: 'app@example.com',
            to: [`rcpt-${n}@example.org`],
            raw: simpleMessage({ messageId: `<rot-${n}@example.com>` }),
            timeoutMs: 20_000,
          }),
        () => undefined,
      );
      await relay.app.stop();
      const ids = acknowledgedIds(results);
      const names = (await readdir(dir)).filter((n) => n.startsWith('audit.log.')).sort();
      expect(names.length).toBeGreaterThan(20);
      expect(names.every((n) => n.endsWith('.gz'))).toBe(true);
      const files = [...names.map((n) => join(dir, n)), auditFile];

      const result = await verifyTrail({ files });
      expect(result.damage).toBeNull();
      expect(result.firstSeq).toBe(1);
      expect(result.warnings).toEqual([]);

      const relayIds = (await readAll(files)).filter((r) => r.type === 'relay').map((r) => r.id);
      expect(relayIds).toHaveLength(MESSAGES);
      expect(new Set(relayIds).size).toBe(MESSAGES);
      expect(new Set(relayIds)).toEqual(new Set(ids));
    } finally {
      await relay.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('loses and duplicates no record when logrotate moves the file away and SIGHUP reopens it, repeatedly under load', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-logrotate-'));
    const auditFile = join(dir, 'audit.log');
    const relay = await startRelay({ upstreams: [{ port: upstream.port, pool: { maxConnections: 4 } }], auditFile });
    const moved: string[] = [];
    try {
      const results = await sendUnderLoad(
        (n) => relay.send({ from: 'app@example.com', to: [`rcpt-${n}@example.org`], raw: simpleMessage(), timeoutMs: 20_000 }),
        async () => {
          // What logrotate does (no copytruncate): rename, then `kill -HUP` → App.reopenAudit().
          const target = `${auditFile}-${String(moved.length).padStart(4, '0')}`;
          await rename(auditFile, target).then(
            () => moved.push(target),
            () => undefined, // nothing written yet
          );
          relay.app.reopenAudit();
        },
      );
      await relay.app.stop();
      const ids = acknowledgedIds(results);
      expect(moved.length).toBeGreaterThan(5);
      const files = [...moved, auditFile];
      const result = await verifyTrail({ files });
      expect(result.damage).toBeNull();
      const relayIds = (await readAll(files)).filter((r) => r.type === 'relay').map((r) => r.id);
      expect(relayIds).toHaveLength(MESSAGES);
      expect(new Set(relayIds)).toEqual(new Set(ids));
    } finally {
      await relay.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('continues the chain in a new file after a restart', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-restart-'));
    const auditFile = join(dir, 'audit.log');
    const spec = { upstreams: [{ port: upstream.port }], auditFile, audit: { rotate: { size: 4096, daily: false, keep: 100, compress: true } } };
    try {
      for (let run = 0; run < 2; run++) {
        const relay = await startRelay(spec);
        for (let n = 0; n < 4; n++) expect((await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() })).code).toBe(250);
        await relay.stop();
      }
      const names = (await readdir(dir)).filter((n) => n.startsWith('audit.log.')).sort();
      const result = await verifyTrail({ files: [...names.map((n) => join(dir, n)), auditFile] });
      expect(result.damage).toBeNull();
      expect(result.firstSeq).toBe(1);
      expect((await readAll([...names.map((n) => join(dir, n)), auditFile])).filter((r) => r.type === 'relay')).toHaveLength(8);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
