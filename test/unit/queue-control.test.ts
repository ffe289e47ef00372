/**
 * The relay's side of the control protocol on a real Unix socket: what a client that is not
 * `mailtrail queue` (or not this version of it) gets, a relay without a spool, a process that only
 * knocks to see whether the folder is locked, and a listing written as the reader takes it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataDirLock } from '../../src/data-dir-lock.js';
import { createLogger } from '../../src/logger.js';
import { QueueAdmin } from '../../src/spool/queue-admin.js';
import { QueueControl } from '../../src/spool/queue-control.js';
import type { SpoolEntry } from '../../src/spool/spool-entry.js';
import { askRelay } from '../../src/tools/queue-client.js';

const log = createLogger('silent');

/** Sends `text` as it is and reads the whole answer. */
function raw(path: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (answer += d));
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
    socket.on('connect', () => socket.write(text));
  });
}

function entry(i: number): SpoolEntry {
  const at = new Date(Date.parse('2026-03-01T10:00:00Z') + i * 1000).toISOString();
  return {
    v: 1,
    id: `01M94YAFK06VB1GMH80B0EC${String(i).padStart(3, '0')}`,
    state: 'queued',
    mode: 'spool',
    reason: 'spool mode',
    acceptedAt: at,
    recorded: true,
    from: 'app@example.com',
    use8BitMime: false,
    rcpt: [{ to: `r${i}@example.org`, state: 'pending' }],
    message: { size: 100, sha256: 'a'.repeat(64), messageId: null, headerFrom: null },
    client: { ip: '127.0.0.1', user: null },
    attempts: 0,
    nextAttemptAt: at,
    lastAttempt: null,
    dotPendingSince: null,
    dotPendingUpstream: null,
    held: null,
    updatedAt: at,
  };
}

describe('the control socket', () => {
  let dir: string;
  let lock: DataDirLock;
  let path: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-control-'));
    const attempt = await DataDirLock.acquire(dir);
    if (attempt.lock === null) throw new Error(attempt.why);
    lock = attempt.lock;
    path = lock.path;
  });
  afterEach(async () => {
    await lock.release();
    await rm(dir, { recursive: true, force: true });
  });

  function serve(admin: QueueAdmin | null): QueueControl {
    const control = new QueueControl(admin, log);
    lock.serve((socket) => control.handle(socket));
    return control;
  }

  it('answers a line that is not JSON, and a request of another version, with ECONTROL and nothing done', async () => {
    serve(new QueueAdmin({ summaries: () => [], get: () => Promise.resolve(null) }, null));
    expect(JSON.parse(await raw(path, 'hello\n'))).toEqual({ ok: false, error: { code: 'ECONTROL', message: expect.stringContaining('not JSON') } });
    const other = JSON.parse(await raw(path, '{"v":2,"op":"list"}\n')) as { ok: boolean; error: { code: string; message: string } };
    expect(other).toMatchObject({ ok: false, error: { code: 'ECONTROL' } });
    expect(other.error.message).toContain('is mailtrail queue the same version as the relay?');
  });

  it('says so when the relay has no spool', async () => {
    serve(null);
    const answer = await askRelay(path, { v: 1, op: 'list' });
    expect(answer).toEqual({
      kind: 'answer',
      end: { ok: false, error: { code: 'ECONTROL', message: 'this relay has no spool: no listener or user is in spool or hybrid mode' } },
    });
  });

  it('lets a process knock (connect and leave) without a word, and still answers the next client', async () => {
    serve(new QueueAdmin({ summaries: () => [], get: () => Promise.resolve(null) }, null));
    await new Promise<void>((resolve) => {
      const s = net.connect(path, () => {
        s.destroy();
        resolve();
      });
    });
    expect(await askRelay(path, { v: 1, op: 'list' })).toEqual({ kind: 'answer', end: { ok: true, count: 0 } });
  });

  it('streams a listing one entry a line, as the reader takes them, and ends with the count', async () => {
    const entries = Array.from({ length: 500 }, (_, i) => entry(i));
    serve(new QueueAdmin({ summaries: () => entries, get: (id) => Promise.resolve(entries.find((e) => e.id === id) ?? null) }, null));
    const seen: string[] = [];
    const answer = await askRelay(path, { v: 1, op: 'list', state: 'queued' }, async (e) => {
      seen.push((e as SpoolEntry).id);
      // A slow reader: the relay waits for it rather than buffering the listing.
      if (seen.length % 100 === 0) await new Promise((r) => setTimeout(r, 10));
    });
    expect(answer).toEqual({ kind: 'answer', end: { ok: true, count: 500 } });
    expect(seen).toEqual(entries.map((e) => e.id));
  });

  it('refuses an action on a read-only admin, and says where a relay is not running', async () => {
    serve(new QueueAdmin({ summaries: () => [], get: () => Promise.resolve(null) }, null));
    const answer = await askRelay(path, { v: 1, op: 'act', action: 'hold', id: '01M94YAFK06VB1GMH80B0ECYC5', user: 'ops', reason: null });
    expect(answer).toMatchObject({ kind: 'answer', end: { ok: false, error: { code: 'ECONTROL' } } });
    await lock.release();
    expect(await askRelay(path, { v: 1, op: 'list' })).toEqual({ kind: 'not-running' });
  });
});
