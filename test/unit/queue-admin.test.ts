/**
 * Queue actions on a real spool store (StoreQueueActions behind QueueAdmin): what each does to the
 * entry and the record it writes, and the two refusals the command line cannot easily provoke: an
 * entry an attempt is delivering (EQUEUEBUSY, nothing changed) and a record the trail cannot take
 * (EAUDITWRITE, nothing done).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SpoolActor, SpoolRecord } from '../../src/audit/records.js';
import { ERR } from '../../src/error-codes.js';
import { IdGenerator } from '../../src/ids.js';
import { createLogger } from '../../src/logger.js';
import { QueueAdmin, queueRow, type QueueActionError } from '../../src/spool/queue-admin.js';
import { SpoolFolder } from '../../src/spool/spool-folder.js';
import { SpoolStore } from '../../src/spool/spool-store.js';
import { StoreQueueActions } from '../../src/spool/store-queue-actions.js';

const log = createLogger('silent');
const ids = new IdGenerator();
const BY: SpoolActor = { channel: 'cli', user: 'ops', address: null };
const BODY = Buffer.from('From: <app@example.com>\r\nSubject: hi\r\nMessage-ID: <m1@example.com>\r\n\r\nHello.\r\n');

/** Node 20 has no Array.fromAsync. */
async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

describe('queue actions on the spool store', () => {
  let dir: string;
  let store: SpoolStore;
  let records: SpoolRecord[];
  let trailWorks: boolean;
  let admin: QueueAdmin;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-queue-admin-'));
    store = (await SpoolStore.open({ dir: join(dir, 'spool'), minFreeSpace: 0, log })).store;
    records = [];
    trailWorks = true;
    const recorder = {
      spool: (r: SpoolRecord): boolean => {
        if (!trailWorks) return false;
        records.push(r);
        return true;
      },
    };
    admin = new QueueAdmin(
      { summaries: () => store.list(), get: (id) => store.get(id) },
      new StoreQueueActions({ store, recorder, ids, log, hostname: 'relay.example.org', dsn: true, maxAge: 5 * 86_400_000 }),
    );
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function queued(to = ['ana@example.org']): Promise<string> {
    const entry = await store.accept({
      id: ids.next(),
      acceptance: { mode: 'spool', reason: 'spool mode' },
      from: 'app@example.com',
      to,
      use8BitMime: false,
      message: { size: BODY.length, sha256: createHash('sha256').update(BODY).digest('hex'), messageId: '<m1@example.com>', headerFrom: 'app@example.com' },
      client: { ip: '127.0.0.1', user: null },
      body: BODY,
    });
    return entry.id;
  }

  it('refuses every action on an entry an attempt is delivering (EQUEUEBUSY), changing nothing and recording nothing', async () => {
    const id = await queued();
    await store.lease(id);
    for (const action of ['retry', 'hold', 'release', 'delete', 'bounce'] as const) {
      await expect(admin.act({ id, action, by: BY, reason: null })).rejects.toMatchObject({ code: ERR.QUEUE_BUSY });
    }
    expect((await store.get(id))?.state).toBe('delivering');
    expect(records).toEqual([]);
  });

  it('does nothing when the trail cannot take the record (EAUDITWRITE): a hold stays queued, a delete keeps the message', async () => {
    const id = await queued();
    trailWorks = false;
    await expect(admin.hold(id, BY)).rejects.toMatchObject({ code: ERR.AUDIT_WRITE });
    expect((await store.get(id))?.state).toBe('queued');
    await expect(admin.delete(id, BY)).rejects.toMatchObject({ code: ERR.AUDIT_WRITE });
    // Still there, and as it was: queued, not left held.
    expect(await store.get(id)).toMatchObject({ state: 'queued', held: null });
    await expect(admin.bounce(id, BY)).rejects.toMatchObject({ code: ERR.AUDIT_WRITE });
    // The message and nothing else: the DSN made for the bounce was taken back.
    expect([...store.list()].map((s) => s.id)).toEqual([id]);
    expect((await store.get(id))?.state).toBe('queued');
  });

  it('names an unknown id with ESPOOLENTRY, and the lookup that tells its story', async () => {
    const err = (await admin.hold('01M94YAFK06VB1GMH80B0ECYC5', BY).catch((e: unknown) => e)) as QueueActionError;
    expect(err.code).toBe(ERR.SPOOL_ENTRY);
    expect(err.message).toContain('mailtrail lookup 01M94YAFK06VB1GMH80B0ECYC5');
  });

  it('bounces the null sender without a DSN (never a bounce to a bounce), saying so in the record', async () => {
    const entry = await store.accept({
      id: ids.next(),
      acceptance: { mode: 'spool', reason: 'spool mode' },
      from: '',
      to: ['ana@example.org'],
      use8BitMime: false,
      message: { size: BODY.length, sha256: '', messageId: null, headerFrom: null },
      client: { ip: '127.0.0.1', user: null },
      body: BODY,
    });
    const result = await admin.bounce(entry.id, BY);
    expect(result).toMatchObject({ changed: true, dsn: null, entry: null });
    expect(records[0]).toMatchObject({ event: 'bounced', dsn: null, reason: expect.stringContaining('no DSN (the original MAIL FROM is <>') });
    expect(store.summary(entry.id)).toBeUndefined();
  });

  it('lists in a shape like postqueue -j, with the last reply as each pending recipient’s delay_reason', async () => {
    const id = await queued(['ana@example.org', 'bo@example.net']);
    await store.update(id, (e) => ({
      ...e,
      attempts: 1,
      rcpt: [
        { to: 'ana@example.org', state: 'delivered' },
        { to: 'bo@example.net', state: 'pending' },
      ],
      lastAttempt: { at: new Date().toISOString(), upstream: 'ses', outcome: 'partial', class: 'throttled', reply: '451 4.7.1 Slow down' },
    }));
    const [entry] = await collect(admin.list());
    expect(queueRow(entry!)).toMatchObject({
      queue_name: 'queued',
      queue_id: id,
      sender: 'app@example.com',
      recipients: [{ address: 'bo@example.net', delay_reason: '451 4.7.1 Slow down' }],
      attempts: 1,
    });
  });

  it('reads the same entries from the folder, read-only, as the store has', async () => {
    const a = await queued();
    const b = await queued();
    await admin.hold(b, BY);
    const folder = new QueueAdmin(new SpoolFolder(join(dir, 'spool')), null);
    expect((await collect(folder.list())).map((e) => [e.id, e.state])).toEqual([
      [a, 'queued'],
      [b, 'held'],
    ]);
    expect((await collect(folder.list({ state: 'held' }))).map((e) => e.id)).toEqual([b]);
    await expect(folder.hold(a, BY)).rejects.toMatchObject({ code: ERR.CONTROL });
  });
});
