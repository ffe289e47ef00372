/**
 * The spool on a real disk: what accept() leaves there and in what shape, atomic and serialized
 * updates, the dot mark, removal, the lock, the free-space reserve, and start-up recovery of every
 * leftover a crash can leave (each made by hand on disk, then the store opened on it).
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ERR } from '../../src/error-codes.js';
import { IdGenerator } from '../../src/ids.js';
import { createLogger } from '../../src/logger.js';
import { serializeSpoolEntry, type SpoolEntry } from '../../src/spool/spool-entry.js';
import { NODE_SPOOL_FILE_OPS, type SpoolFileOps } from '../../src/spool/spool-files.js';
import { SpoolStore, type SpoolAcceptInput, type SpoolStoreOptions } from '../../src/spool/spool-store.js';

const log = createLogger('silent');
const ids = new IdGenerator();

function input(over: Partial<SpoolAcceptInput> = {}): SpoolAcceptInput {
  const body = over.body ?? Buffer.from('From: <app@example.com>\r\nSubject: hi\r\n\r\nHello.\r\n');
  const size = Buffer.isBuffer(body) ? body.length : 0;
  return {
    id: ids.next(),
    acceptance: { mode: 'spool', reason: 'spool mode' },
    from: 'app@example.com',
    to: ['ana@example.org', 'bo@example.net'],
    use8BitMime: false,
    message: { size, sha256: Buffer.isBuffer(body) ? sha256(body) : '', messageId: '<m1@example.com>', headerFrom: 'app@example.com' },
    client: { ip: '127.0.0.1', user: null },
    body,
    ...over,
  };
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

describe('the spool store', () => {
  let dir: string;
  const open: SpoolStore[] = [];

  async function openStore(over: Partial<SpoolStoreOptions> = {}) {
    const opened = await SpoolStore.open({ dir, minFreeSpace: 0, log, ...over });
    open.push(opened.store);
    return opened;
  }

  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), 'mailtrail-spool-')), 'spool');
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    await rm(join(dir, '..'), { recursive: true, force: true });
  });

  describe('accepting', () => {
    it('commits the body byte for byte and the meta, private to its owner, due at once', async () => {
      const { store } = await openStore();
      const body = Buffer.from('Subject: \u00e9t\u00e9\r\n\r\n.leading dot kept as received\r\n', 'utf8');
      const entry = await store.accept(input({ body }));
      expect(await readFile(store.bodyPath(entry.id))).toEqual(body);
      const meta = JSON.parse(await readFile(join(dir, 'meta', `${entry.id}.json`), 'utf8')) as SpoolEntry;
      expect(meta).toMatchObject({
        v: 1,
        id: entry.id,
        state: 'queued',
        mode: 'spool',
        recorded: false,
        rcpt: [
          { to: 'ana@example.org', state: 'pending' },
          { to: 'bo@example.net', state: 'pending' },
        ],
        attempts: 0,
        nextAttemptAt: meta.acceptedAt,
        dotPendingSince: null,
      });
      for (const d of ['', 'tmp', 'msg', 'meta']) expect((await stat(join(dir, d))).mode & 0o777).toBe(0o700);
      for (const f of [store.bodyPath(entry.id), join(dir, 'meta', `${entry.id}.json`)]) expect((await stat(f)).mode & 0o777).toBe(0o600);
      expect(await readdir(join(dir, 'tmp'))).toEqual([]);
      expect(store.summary(entry.id)).toMatchObject({ state: 'queued', attempts: 0, pending: 2, size: body.length, dotPending: false, recorded: false });
      expect(store.due(Date.now(), 10).map((s) => s.id)).toEqual([entry.id]);
    });

    it('copies a spilled body from its file', async () => {
      const { store } = await openStore();
      const spill = join(dir, '..', 'spilled.eml');
      const body = Buffer.alloc(3 * 1024 * 1024, 'x');
      await writeFile(spill, body);
      const entry = await store.accept(input({ body: { path: spill } }));
      expect(sha256(await readFile(store.bodyPath(entry.id)))).toBe(sha256(body));
    });

    it.each([
      ['the body fsync', (calls: number) => calls === 1],
      ['the msg/ fsync', (calls: number) => calls === 3],
      ['the meta/ fsync, after the commit', (calls: number) => calls === 4],
    ])('leaves nothing behind when %s fails, and says ESPOOLWRITE', async (_what, failing) => {
      let calls = 0;
      const fsync: SpoolFileOps['fsync'] = (h) =>
        failing(++calls) ? Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })) : h.sync();
      const { store } = await openStore({ fileOps: { fsync } });
      await expect(store.accept(input())).rejects.toMatchObject({ code: ERR.SPOOL_WRITE, message: expect.stringContaining('EIO') });
      for (const d of ['tmp', 'msg', 'meta']) expect(await readdir(join(dir, d))).toEqual([]);
      expect(store.counts().total).toBe(0);
    });

    it('is refused room below minFreeSpace, as the probe reports it, and given room again', async () => {
      let free = 100 * 1024 * 1024;
      let now = 1_000_000;
      const { store } = await openStore({ minFreeSpace: 256 * 1024 * 1024, freeSpace: () => free, now: () => now });
      expect(store.hasRoom()).toBe(false);
      free = 300 * 1024 * 1024;
      // Looked at again a moment later, not on every message.
      expect(store.hasRoom()).toBe(false);
      now += 1_000;
      expect(store.hasRoom()).toBe(true);
      expect(store.freeBytes).toBe(free);
    });
  });

  describe('changing an entry', () => {
    it('rewrites the meta atomically, one change after the other, keeping fields it does not know', async () => {
      const { store } = await openStore();
      const { id } = await store.accept(input());
      // A field a newer version wrote.
      const path = join(dir, 'meta', `${id}.json`);
      await writeFile(path, JSON.stringify({ ...JSON.parse(await readFile(path, 'utf8')), laterField: { kept: true } }));
      const changes = Array.from({ length: 20 }, (_, i) => store.update(id, (e) => ({ ...e, attempts: e.attempts + 1, reason: `change ${i}` })));
      await Promise.all(changes);
      const entry = (await store.get(id))! as SpoolEntry & { laterField?: unknown };
      expect(entry).toMatchObject({ attempts: 20, reason: 'change 19', laterField: { kept: true } });
      expect(store.summary(id)?.attempts).toBe(20);
      expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    });

    it('refuses a change that would make an entry it could not read back, and keeps the old one', async () => {
      const { store } = await openStore();
      const { id } = await store.accept(input());
      await expect(store.update(id, (e) => ({ ...e, state: 'gone' as never }))).rejects.toThrow(/state/);
      expect((await store.get(id))?.state).toBe('queued');
    });

    it('leases a queued entry once, marks and clears the dot durably, and requeues it', async () => {
      const { store } = await openStore();
      const { id } = await store.accept(input());
      await store.lease(id);
      await expect(store.lease(id)).rejects.toMatchObject({ code: ERR.SPOOL_ENTRY });
      expect(store.due(Date.now(), 10)).toEqual([]);
      const marked = await store.markDotPending(id, 'primary');
      expect(marked).toMatchObject({ state: 'delivering', dotPendingUpstream: 'primary', dotPendingSince: expect.any(String) });
      expect(store.summary(id)?.dotPending).toBe(true);
      const later = new Date(Date.now() + 60_000).toISOString();
      const settled = await store.clearDotPending(id, (e) => ({ ...e, state: 'queued', attempts: 1, nextAttemptAt: later }));
      expect(settled).toMatchObject({ state: 'queued', attempts: 1, nextAttemptAt: later, dotPendingSince: null, dotPendingUpstream: null });
      expect(store.due(Date.now(), 10)).toEqual([]);
      expect(store.due(Date.now() + 61_000, 10).map((s) => s.id)).toEqual([id]);
    });

    it('removes the meta, then the body, and then knows nothing of the entry', async () => {
      const { store } = await openStore();
      const { id } = await store.accept(input());
      await store.remove(id);
      expect(await readdir(join(dir, 'meta'))).toEqual([]);
      expect(await readdir(join(dir, 'msg'))).toEqual([]);
      expect(await store.get(id)).toBeNull();
      await expect(store.remove(id)).rejects.toMatchObject({ code: ERR.SPOOL_ENTRY });
      await expect(store.update(id, (e) => e)).rejects.toMatchObject({ code: ERR.SPOOL_ENTRY });
    });

    it('gives the due entries earliest first, at most as many as asked, leaving out what the caller skips', async () => {
      const { store } = await openStore();
      const at = (offset: number) => new Date(Date.now() + offset).toISOString();
      const a = await store.accept(input());
      const b = await store.accept(input());
      const c = await store.accept(input());
      const bDue = at(-5_000);
      await store.update(a.id, (e) => ({ ...e, nextAttemptAt: at(-3_000) }));
      await store.update(b.id, (e) => ({ ...e, nextAttemptAt: bDue }));
      await store.update(c.id, (e) => ({ ...e, nextAttemptAt: at(60_000) }));
      expect(store.due(Date.now(), 10).map((s) => s.id)).toEqual([b.id, a.id]);
      expect(store.due(Date.now(), 1).map((s) => s.id)).toEqual([b.id]);
      expect(store.due(Date.now(), 10, (s) => s.id === b.id).map((s) => s.id)).toEqual([a.id]);
      expect(store.nextDueAt()).toBe(Date.parse(bDue));
      expect(store.counts()).toMatchObject({ queued: 3, delivering: 0, held: 0, total: 3 });
    });
  });

  describe('one process per spool folder', () => {
    it('refuses a second store on a folder in use, and lets one open once the first has closed', async () => {
      const { store } = await openStore();
      await expect(SpoolStore.open({ dir, minFreeSpace: 0, log })).rejects.toMatchObject({
        code: ERR.SPOOL_IN_USE,
        message: expect.stringContaining('another mailtrail process is using this spool folder'),
      });
      await store.close();
      const again = await openStore();
      expect(again.unlocked).toBeNull();
    });
  });

  describe('flushing a folder', () => {
    it('shares one fsync between the renames that ask while another runs, and never one that started before them', async () => {
      let fsyncs = 0;
      const gate: { release: (() => void) | null } = { release: null };
      const fsync: SpoolFileOps['fsync'] = async (h) => {
        fsyncs += 1;
        if (fsyncs === 3) await new Promise<void>((r) => (gate.release = r));
        await NODE_SPOOL_FILE_OPS.fsync(h);
      };
      const { store } = await openStore({ fileOps: { fsync } });
      // The first accept's msg/ fsync (its 3rd) hangs: four more accepts pile up behind it.
      const first = store.accept(input());
      while (gate.release === null) await new Promise((r) => setTimeout(r, 5));
      const more = Array.from({ length: 4 }, () => store.accept(input()));
      // Each of the four has written and flushed its two files (8 fsyncs) and waits on msg/.
      while (fsyncs < 3 + 8) await new Promise((r) => setTimeout(r, 5));
      gate.release();
      await Promise.all([first, ...more]);
      // 2 files × 5 messages; msg/: the hung one, then one shared by the four; meta/: at most one each.
      expect(fsyncs).toBeLessThanOrEqual(10 + 2 + 5);
      expect(store.counts().total).toBe(5);
    });
  });

  describe('recovery at start-up', () => {
    /** A committed entry written by hand, as a process that then died left it. */
    async function leftover(over: Partial<SpoolEntry> = {}, body = true): Promise<SpoolEntry> {
      const { store } = await SpoolStore.open({ dir, minFreeSpace: 0, log });
      const entry = await store.accept(input());
      await store.close();
      const changed = { ...entry, ...over };
      await writeFile(join(dir, 'meta', `${entry.id}.json`), serializeSpoolEntry(changed));
      if (!body) await rm(join(dir, 'msg', `${entry.id}.eml`));
      return changed;
    }

    it('removes what tmp/ holds: writes a crash cut short', async () => {
      await mkdir(join(dir, 'tmp'), { recursive: true });
      await writeFile(join(dir, 'tmp', `${ids.next()}.eml`), 'half a mess');
      await writeFile(join(dir, 'tmp', `${ids.next()}.json`), '{"v":1,');
      const { recovery } = await openStore();
      expect(recovery.tmpRemoved).toBe(2);
      expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    });

    it('removes a body whose meta was never committed: no client was told 250', async () => {
      await mkdir(join(dir, 'msg'), { recursive: true });
      const id = ids.next();
      await writeFile(join(dir, 'msg', `${id}.eml`), 'Subject: never acknowledged\r\n\r\n');
      const { store, recovery } = await openStore();
      expect(recovery.orphanBodies).toEqual([id]);
      expect(await readdir(join(dir, 'msg'))).toEqual([]);
      expect(store.counts().total).toBe(0);
    });

    it('queues again an entry left delivering without a dot mark: nothing of it can have reached an upstream', async () => {
      const e = await leftover({ state: 'delivering' });
      const { store, recovery } = await openStore();
      expect(recovery.requeued).toEqual([e.id]);
      expect((await store.get(e.id))?.state).toBe('queued');
      expect(store.due(Date.now(), 10).map((s) => s.id)).toEqual([e.id]);
    });

    it('reports an entry whose dot mark is set as an unknown outcome to settle, and keeps it out of the due ones', async () => {
      const since = new Date().toISOString();
      const e = await leftover({ state: 'delivering', dotPendingSince: since, dotPendingUpstream: 'primary', recorded: true });
      const { store, recovery } = await openStore();
      expect(recovery.unknownOutcomes.map((s) => s.id)).toEqual([e.id]);
      expect(recovery.requeued).toEqual([]);
      expect(store.unknownOutcomes().map((s) => s.id)).toEqual([e.id]);
      expect(await store.get(e.id)).toMatchObject({ state: 'delivering', dotPendingSince: since, dotPendingUpstream: 'primary' });
      expect(store.due(Date.now(), 10)).toEqual([]);
      // The queue settles it (here: held with the evidence); then it is no longer unsettled.
      await store.clearDotPending(e.id, (x) => ({ ...x, state: 'held', held: { since, reason: 'unknown outcome at primary', by: null } }));
      expect(store.unknownOutcomes()).toEqual([]);
    });

    it('reports a committed entry whose acceptance record is not known written, and not one that is', async () => {
      const unrecorded = await leftover({ recorded: false });
      await leftover({ recorded: true });
      const { store, recovery } = await openStore();
      expect(recovery.unrecorded.map((e) => e.id)).toEqual([unrecorded.id]);
      await store.markRecorded(unrecorded.id);
      expect((await store.get(unrecorded.id))?.recorded).toBe(true);
      expect(recovery.entries).toBe(2);
    });

    it('moves an unreadable meta, or one without its body, to damaged/ and goes on', async () => {
      // Each leftover() opens the store once, so the one without its body comes last.
      const good = await leftover();
      const garbled = await leftover();
      const bodiless = await leftover({}, false);
      await writeFile(join(dir, 'meta', `${garbled.id}.json`), '{"v":1,"id":');
      const { store, recovery } = await openStore();
      expect(recovery.damaged).toEqual(
        expect.arrayContaining([
          { name: `${bodiless.id}.json`, problem: 'its body is missing' },
          { name: `${garbled.id}.json`, problem: 'not JSON' },
        ]),
      );
      expect((await readdir(join(dir, 'damaged'))).sort()).toEqual([`${bodiless.id}.json`, `${garbled.id}.eml`, `${garbled.id}.json`].sort());
      expect([...store.list()].map((s) => s.id)).toEqual([good.id]);
    });

    it('indexes what it finds in acceptance order', async () => {
      const made = [await leftover(), await leftover(), await leftover()];
      const { store } = await openStore();
      expect([...store.list()].map((s) => s.id)).toEqual(made.map((e) => e.id));
    });
  });
});
