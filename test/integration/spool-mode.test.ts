/**
 * Spool mode as a client sees it, on real sockets: `250 2.0.0 Ok: queued as <id>` once the message is
 * on disk and its record written, the mode chosen by listener and user, the local refusals (a full
 * spool folder, a spool that cannot be written, a trail that cannot record), and what a start-up does
 * with the leftovers of the process before. Nothing is delivered from the spool here: entries wait.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RECORD_FIELDS, type SpoolRecord } from '../../src/audit/records.js';
import type { UserConfig } from '../../src/config/types.js';
import { ERR } from '../../src/error-codes.js';
import { IdGenerator } from '../../src/ids.js';
import { createLogger } from '../../src/logger.js';
import { serializeSpoolEntry } from '../../src/spool/spool-entry.js';
import { SpoolStore } from '../../src/spool/spool-store.js';
import { capturedLog } from '../helpers/captured-log.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { relayConfig, simpleMessage, startRelay, type RelaySpec, type RunningRelay } from '../helpers/relay-harness.js';
import { App, StartError } from '../../src/app.js';

const QUEUED = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]{26}) \(id \1\)$/;
const PASSWORD = 'Spool-Pa55-w0rd-9k';

function user(username: string, mode: UserConfig['mode']): UserConfig {
  return { username, password: PASSWORD, passwordHash: null, allowedSenders: [], mode };
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

describe('spool mode', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay | null = null;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterEach(async () => {
    await relay?.stop();
    relay = null;
    upstream.clearRecords();
  });
  afterAll(async () => {
    await upstream.close();
  });

  const start = async (spec: Partial<RelaySpec> = {}): Promise<RunningRelay> => {
    relay = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port }], ...spec });
    return relay;
  };

  /** The id a `250 ... queued as <id>` reply names (fails the test on any other reply). */
  function queuedId(response: string | null): string {
    const id = QUEUED.exec(response ?? '')?.[1];
    if (id === undefined) throw new Error(`not a queued reply: ${response}`);
    return id;
  }

  it('answers 250 queued as the transaction id, with the message on disk byte for byte and its queued record written', async () => {
    const r = await start({ mode: 'spool' });
    const raw = simpleMessage({ messageId: '<spooled-1@example.com>', body: '.a line starting with a dot\r\nbytes as received' });
    const res = await r.send({ from: 'app@example.com', to: ['ana@example.org', 'bo@example.net'], raw });
    expect(res).toMatchObject({ ok: true, code: 250 });
    const id = queuedId(res.ok ? res.response : null);

    const spoolDir = join(r.dataDir, 'spool');
    expect(await readFile(join(spoolDir, 'msg', `${id}.eml`))).toEqual(raw);
    const meta = JSON.parse(await readFile(join(spoolDir, 'meta', `${id}.json`), 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({
      id,
      state: 'queued',
      from: 'app@example.com',
      rcpt: [
        { to: 'ana@example.org', state: 'pending' },
        { to: 'bo@example.net', state: 'pending' },
      ],
      message: { size: raw.length, sha256: sha256(raw), messageId: '<spooled-1@example.com>' },
      client: { ip: '127.0.0.1', user: null },
    });

    const [record] = await r.relayRecords();
    // Every documented field, `spool` included, in the documented order.
    expect(Object.keys(record!)).toEqual([...RECORD_FIELDS.relay]);
    expect(record).toMatchObject({
      id,
      outcome: 'queued',
      rcpt: [
        { to: 'ana@example.org', status: 'queued', reply: null },
        { to: 'bo@example.net', status: 'queued', reply: null },
      ],
      route: null,
      upstream: null,
      attempts: [],
      upstreamReply: null,
      failure: null,
      clientReply: { code: 250, enhanced: '2.0.0', text: `Ok: queued as ${id} (id ${id})` },
      duplicateRisk: false,
      spool: { mode: 'spool', reason: 'spool mode' },
    });
    // Entries wait in the spool: nothing was relayed.
    expect(upstream.messages).toHaveLength(0);
    expect(r.app.spool?.summary(id)).toMatchObject({ state: 'queued', attempts: 0, pending: 2, size: raw.length });
    // Once the record is written the meta says so (not awaited by the reply).
    await until(async () => (await r.app.spool!.get(id))?.recorded === true);
  });

  it('queues a message larger than the memory buffer byte for byte, and leaves no spill file', async () => {
    const r = await start({ mode: 'spool', limits: { memoryBufferSize: 64 * 1024 } });
    const raw = simpleMessage({ body: 'z'.repeat(700 * 1024) });
    const res = await r.send({ from: 'app@example.com', to: ['ana@example.org'], raw });
    const id = queuedId(res.ok ? res.response : null);
    expect(sha256(await readFile(r.app.spool!.bodyPath(id)))).toBe(sha256(raw));
    expect(await r.tempFiles()).toEqual([]);
  });

  it('creates no spool when every listener and user passes through: no folder, no lock, records as before', async () => {
    const r = await start({ clients: { users: [user('app', null)] } });
    const res = await r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    expect(res).toMatchObject({ ok: true, code: 250 });
    expect(r.app.spool).toBeNull();
    expect(existsSync(join(r.dataDir, 'spool'))).toBe(false);
    const [record] = await r.relayRecords();
    expect(record!.outcome).toBe('delivered');
    expect(Object.keys(record!)).not.toContain('spool');
  });

  it("spools a user's messages on a listener that passes through, and passes through everyone else's", async () => {
    const r = await start({ clients: { users: [user('printers', 'spool'), user('app', null)] } });
    const send = (auth?: string) =>
      r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage(), ...(auth ? { auth: { user: auth, pass: PASSWORD } } : {}) });
    const printers = await send('printers');
    const app = await send('app');
    const byNetwork = await send();
    queuedId(printers.ok ? printers.response : null);
    expect(app.ok && app.response).toMatch(/^250 2\.0\.0 Ok: relayed/);
    expect(byNetwork.ok && byNetwork.response).toMatch(/^250 2\.0\.0 Ok: relayed/);
    expect(upstream.messages).toHaveLength(2);
    const records = await r.relayRecords();
    expect(records.map((x) => [x.client.user, x.outcome])).toEqual([
      ['printers', 'queued'],
      ['app', 'delivered'],
      [null, 'delivered'],
    ]);
    expect(r.app.spool?.counts().queued).toBe(1);
  });

  it("passes through a user's messages on a spool listener, and spools everyone else's", async () => {
    const r = await start({ mode: 'spool', clients: { users: [user('live', 'passthrough'), user('app', null)] } });
    const live = await r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage(), auth: { user: 'live', pass: PASSWORD } });
    const app = await r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage(), auth: { user: 'app', pass: PASSWORD } });
    const byNetwork = await r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    expect(live.ok && live.response).toMatch(/^250 2\.0\.0 Ok: relayed/);
    queuedId(app.ok ? app.response : null);
    queuedId(byNetwork.ok ? byNetwork.response : null);
    expect(upstream.messages).toHaveLength(1);
  });

  it('answers 452 4.3.1 below spool.minFreeSpace, records it and queues nothing; queues again once there is room', async () => {
    let free = 10 * 1024 * 1024;
    const r = await start({ mode: 'spool', spool: { minFreeSpace: 256 * 1024 * 1024 }, appOptions: { spool: { freeSpace: () => free } } });
    const full = await r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    expect(full).toMatchObject({ ok: false, code: 452 });
    expect(full.ok ? null : full.response).toMatch(/^452 4\.3\.1 Insufficient system storage: mail queue full, try again later \(id [0-9A-Z]{26}\)$/);
    const [refused] = await r.relayRecords();
    expect(refused).toMatchObject({
      outcome: 'deferred',
      clientReply: { code: 452, enhanced: '4.3.1' },
      failure: { class: 'internal', retryable: true, actor: 'operator', detail: { code: ERR.SPOOL_FULL } },
      rcpt: [{ to: 'ana@example.org', status: 'deferred', reply: null }],
    });
    expect(Object.keys(refused!)).not.toContain('spool');
    expect(await readdir(join(r.dataDir, 'spool', 'meta'))).toEqual([]);

    free = 10 * 1024 * 1024 * 1024;
    // While low, the folder is looked at again every 250 ms.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const ok = await r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    queuedId(ok.ok ? ok.response : null);
  });

  it('answers 451 4.3.0 when the spool cannot be written, records why, and leaves nothing behind', async () => {
    const log = capturedLog();
    const eio = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
    const r = await start({ mode: 'spool', logger: log.logger, appOptions: { spool: { fileOps: { fsync: eio } } } });
    const res = await r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    expect(res).toMatchObject({ ok: false, code: 451 });
    expect(res.ok ? null : res.response).toMatch(/^451 4\.3\.0 Local problem: message could not be queued, try again later \(id [0-9A-Z]{26}\)$/);
    const [record] = await r.relayRecords();
    expect(record).toMatchObject({
      outcome: 'deferred',
      failure: { class: 'internal', detail: { code: ERR.SPOOL_WRITE, message: expect.stringContaining('EIO') } },
    });
    for (const d of ['tmp', 'msg', 'meta']) expect(await readdir(join(r.dataDir, 'spool', d))).toEqual([]);
    expect(log.lines.some((l) => l.msg === 'could not queue a message in the spool')).toBe(true);
  });

  it.skipIf(!existsSync('/dev/full'))(
    'takes a queued message back and answers 451 when its acceptance record cannot be written: never 250 without it',
    async () => {
      const log = capturedLog();
      const r = await start({ mode: 'spool', auditFile: '/dev/full', logger: log.logger });
      const res = await r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ messageId: '<unrecorded@example.com>' }) });
      expect(res).toMatchObject({ ok: false, code: 451 });
      expect(res.ok ? null : res.response).toMatch(/^451 4\.3\.0 Cannot record the transaction; message not accepted, try again later \(id [0-9A-Z]{26}\)$/);
      expect(await readdir(join(r.dataDir, 'spool', 'meta'))).toEqual([]);
      expect(await readdir(join(r.dataDir, 'spool', 'msg'))).toEqual([]);
      expect(log.lines.find((l) => l.msg === 'relay record not written to the audit trail; it follows here')).toMatchObject({
        record: { outcome: 'queued', message: { messageId: '<unrecorded@example.com>' } },
      });
    },
  );

  it('refuses a message over the size limit before the spool, as in pass-through', async () => {
    const r = await start({ mode: 'spool', limits: { maxMessageSize: 1024 } });
    const res = await r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ body: 'x'.repeat(4096) }) });
    expect(res).toMatchObject({ ok: false, code: 552 });
    expect(await readdir(join(r.dataDir, 'spool', 'meta'))).toEqual([]);
  });
});

describe('a start-up on a spool the process before left', () => {
  let upstream: FakeUpstream;
  let dataDir: string;
  let relay: RunningRelay | null = null;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterEach(async () => {
    await relay?.stop();
    relay = null;
    await rm(dataDir, { recursive: true, force: true });
  });
  afterAll(async () => {
    await upstream.close();
  });

  it('removes the crash leftovers, requeues, reports unknown outcomes, and records every entry whose acceptance record is missing', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'mailtrail-spool-recovery-'));
    const spoolDir = join(dataDir, 'spool');
    const ids = new IdGenerator();
    // What a process that died left: entries written through the store, then changed by hand.
    const { store } = await SpoolStore.open({ dir: spoolDir, minFreeSpace: 0, log: createLogger('silent') });
    const accept = () =>
      store.accept({
        id: ids.next(),
        acceptance: { mode: 'spool', reason: 'spool mode' },
        from: 'app@example.com',
        to: ['ana@example.org'],
        use8BitMime: false,
        message: { size: 5, sha256: '', messageId: null, headerFrom: null },
        client: { ip: '127.0.0.1', user: null },
        body: Buffer.from('Hello'),
      });
    const unrecorded = await accept();
    const delivering = await accept();
    const dotPending = await accept();
    await store.close();
    const rewrite = (e: typeof unrecorded) => writeFile(join(spoolDir, 'meta', `${e.id}.json`), serializeSpoolEntry(e));
    await rewrite({ ...delivering, state: 'delivering', recorded: true });
    await rewrite({ ...dotPending, state: 'delivering', recorded: true, dotPendingSince: new Date().toISOString(), dotPendingUpstream: 'provider' });
    const orphan = ids.next();
    await writeFile(join(spoolDir, 'msg', `${orphan}.eml`), 'never acknowledged');
    await writeFile(join(spoolDir, 'tmp', `${ids.next()}.json`), '{"v":');

    const log = capturedLog();
    relay = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port }], mode: 'spool', dataDir, logger: log.logger });
    const spool = relay.app.spool!;

    const recovered = (await relay.records()).filter((r): r is SpoolRecord => r.type === 'spool');
    expect(recovered).toEqual([expect.objectContaining({ spoolId: unrecorded.id, event: 'recovered', by: null, dsn: null, upstream: null })]);
    expect((await spool.get(unrecorded.id))?.recorded).toBe(true);
    expect((await spool.get(delivering.id))?.state).toBe('queued');
    expect(spool.unknownOutcomes().map((s) => s.id)).toEqual([dotPending.id]);
    expect(await readdir(join(spoolDir, 'tmp'))).toEqual([]);
    expect(existsSync(join(spoolDir, 'msg', `${orphan}.eml`))).toBe(false);
    expect(spool.counts().total).toBe(3);
    const msgs = log.lines.map((l) => l.msg);
    expect(msgs).toEqual(
      expect.arrayContaining([
        'spool opened',
        'removed spool files a crash left before their commit (never acknowledged)',
        'spool entries left delivering queued again',
        'spool entries whose final dot got no answer before the last stop (the upstream may have them): left to settle',
      ]),
    );

    // The relay takes new mail meanwhile, and a second start records nothing again.
    const res = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    expect(res).toMatchObject({ ok: true, code: 250 });
    await relay.stop();
    relay = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port }], mode: 'spool', dataDir });
    const again = (await relay.records()).filter((r) => r.type === 'spool');
    expect(again).toHaveLength(1);
    expect(relay.app.spool!.counts().total).toBe(4);
    expect((await relay.relayRecords()).filter((r) => r.outcome === 'queued')).toHaveLength(1);
  });

  it('refuses to start a second relay on a spool folder in use', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'mailtrail-spool-lock-'));
    // Two data folders, one spool folder outside both: the spool's own lock is what refuses.
    const spec = (name: string): RelaySpec => ({
      upstreams: [{ name: 'provider', port: upstream.port }],
      mode: 'spool',
      tls: null,
      spool: { dir: join(dataDir, 'shared-spool') },
      dataDir: join(dataDir, name),
    });
    relay = await startRelay(spec('a'));
    const second = new App(relayConfig(spec('b'), join(dataDir, 'b')), createLogger('silent'));
    const refused = await second.start().then(
      () => null,
      (err: unknown) => err,
    );
    await second.stop();
    expect(refused).toBeInstanceOf(StartError);
    expect(refused).toMatchObject({ part: 'spool.dir', message: expect.stringContaining('another mailtrail process is using this spool folder') });
  });
});

async function until(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
