/**
 * Delivery from the spool (docs/spool.md, "Retry policy", "Parking"), on real sockets against the
 * fake upstream and its fault knobs: every message delivered once, each failure class's next step,
 * the records of each attempt and end, the DSN the sender gets, expiry in every state, and the
 * operator's actions never racing an attempt. Retry intervals are a fraction of a second here.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, DeliveryRecord, SpoolRecord } from '../../src/audit/records.js';
import { ERR } from '../../src/error-codes.js';
import { IdGenerator } from '../../src/ids.js';
import { createLogger } from '../../src/logger.js';
import { SpoolStore } from '../../src/spool/spool-store.js';
import type { QueueEvents } from '../../src/spool/queue-events.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RelaySpec, type RunningRelay, type UpstreamSpec } from '../helpers/relay-harness.js';

const QUEUED = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]{26})/;
const FAST = { retry: { first: 100, max: 400 } };

type EntryEvent = QueueEvents['spool-entry'][0];

describe('delivery from the spool', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay | null = null;

  beforeAll(async () => {
    upstream = await startFakeUpstream({ auth: { user: 'relay', pass: 'secret' }, authOptional: true });
  });
  afterEach(async () => {
    await relay?.stop();
    relay = null;
    await upstream.resetFaults();
    upstream.clearRecords();
  });
  afterAll(async () => {
    await upstream.close();
  });

  async function start(spec: Partial<RelaySpec> = {}, up: Partial<UpstreamSpec> = {}): Promise<RunningRelay> {
    relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port, breaker: null, ...up }],
      mode: 'spool',
      tls: null,
      ...spec,
      spool: { ...FAST, ...spec.spool },
      appOptions: { ...spec.appOptions, spool: { tickMs: 50, ...spec.appOptions?.spool } },
    });
    return relay;
  }

  async function queue(r: RunningRelay, to: string[] = ['ana@example.org'], raw = simpleMessage()): Promise<string> {
    const res = await r.send({ from: 'app@example.com', to, raw, startTls: false });
    const id = QUEUED.exec(res.ok ? res.response : '')?.[1];
    if (id === undefined) throw new Error(`not queued: ${JSON.stringify(res)}`);
    return id;
  }

  const deliveries = async (r: RunningRelay, spoolId: string): Promise<DeliveryRecord[]> =>
    (await r.records()).filter((x): x is DeliveryRecord => x.type === 'delivery' && x.spoolId === spoolId);
  const spoolRecords = async (r: RunningRelay, spoolId?: string | null): Promise<SpoolRecord[]> =>
    (await r.records()).filter((x): x is SpoolRecord => x.type === 'spool' && (spoolId === undefined || x.spoolId === spoolId));

  /** Waits until the trail has a record matching `match` (polling the file). */
  async function recordWhere(r: RunningRelay, match: (x: AuditRecord) => boolean, timeoutMs = 8_000): Promise<AuditRecord> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const found = (await r.records()).find(match);
      if (found) return found;
      if (Date.now() > until) throw new Error('no such record in time');
      await new Promise((res) => setTimeout(res, 25));
    }
  }
  const endOf = (r: RunningRelay, id: string) =>
    recordWhere(r, (x) => x.type === 'spool' && x.spoolId === id && ['delivered', 'bounced', 'expired', 'deleted'].includes(x.event)) as Promise<SpoolRecord>;

  it('delivers a queued message once, records the attempt and the end, and removes it from the spool', async () => {
    const r = await start();
    const raw = simpleMessage({ messageId: '<once@example.com>' });
    const id = await queue(r, ['ana@example.org', 'bo@example.net'], raw);
    const end = await endOf(r, id);
    expect(end).toMatchObject({ event: 'delivered', by: null, dsn: null });
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0]!.raw).toEqual(raw);
    expect(upstream.messages[0]!.to).toEqual(['ana@example.org', 'bo@example.net']);
    const [attempt] = await deliveries(r, id);
    expect(attempt).toMatchObject({
      attempt: 1,
      route: 'default',
      outcome: 'delivered',
      upstream: { name: 'provider' },
      rcpt: [
        { to: 'ana@example.org', status: 'accepted' },
        { to: 'bo@example.net', status: 'accepted' },
      ],
      next: { action: 'end', at: null },
      duplicateRisk: false,
    });
    await recordWhere(r, () => r.app.spool!.counts().total === 0);
  });

  it('delivers every message exactly once when the upstream is down for a while and then back', async () => {
    await upstream.refuse();
    const r = await start();
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await queue(r, ['ana@example.org'], simpleMessage({ messageId: `<down-${i}@example.com>` })));
    // Each has failed at least once before the upstream comes back.
    for (const id of ids) await recordWhere(r, (x) => x.type === 'delivery' && x.spoolId === id && x.outcome === 'deferred');
    await upstream.accept();
    for (const id of ids) await endOf(r, id);
    const got = upstream.messages.map((m) => /Message-ID: <(down-\d+)@/.exec(m.raw.toString())?.[1]).sort();
    expect(got).toEqual(ids.map((_, i) => `down-${i}`).sort());
    await recordWhere(r, () => r.app.spool!.counts().total === 0);
    const deferred = (await r.records()).filter((x) => x.type === 'delivery' && x.outcome === 'deferred') as DeliveryRecord[];
    expect(deferred[0]).toMatchObject({ failure: { class: 'connect' }, next: { action: 'retry' } });
  });

  it('retries a transient 451 after a pause, and only then delivers', async () => {
    await upstream.setFaults({ data: { code: 451, text: '4.3.0 try later' } });
    const r = await start();
    const id = await queue(r);
    const first = (await recordWhere(r, (x) => x.type === 'delivery' && x.spoolId === id)) as DeliveryRecord;
    expect(first).toMatchObject({ attempt: 1, outcome: 'deferred', failure: { class: 'upstream_unavailable' }, next: { action: 'retry' } });
    const pause = Date.parse(first.next.at!) - Date.parse(first.time);
    // retry.first (100 ms) with jitter: between half of it and all of it.
    expect(pause).toBeGreaterThanOrEqual(40);
    expect(pause).toBeLessThanOrEqual(150);
    await upstream.resetFaults();
    await endOf(r, id);
    expect((await deliveries(r, id)).map((d) => d.outcome)).toEqual(['deferred', 'delivered']);
    expect(upstream.messages).toHaveLength(1);
  });

  it('parks the upstream on a 535 (no more attempts through it) and delivers once its health probe passes', async () => {
    await upstream.setFaults({ authReply: { code: 535, text: '5.7.8 Authentication credentials invalid' } });
    const events: EntryEvent[] = [];
    // retry.max is the trial's time: long here, so only the probe can unpark it within the test.
    const r = await start(
      { spool: { retry: { first: 100, max: 30_000 } } },
      { auth: { user: 'relay', pass: 'secret' }, probe: { enabled: true, interval: 200, timeout: 2_000 } },
    );
    r.app.bus.subscribe('spool-entry', (e) => events.push(e));
    const id = await queue(r);
    const first = (await recordWhere(r, (x) => x.type === 'delivery' && x.spoolId === id)) as DeliveryRecord;
    expect(first).toMatchObject({ outcome: 'deferred', failure: { class: 'upstream_auth' }, next: { action: 'park' } });
    const parked = (await recordWhere(r, (x) => x.type === 'spool' && x.event === 'parked')) as SpoolRecord;
    expect(parked).toMatchObject({ spoolId: null, upstream: 'provider', reason: expect.stringContaining('upstream_auth: 535 5.7.8') });
    expect(r.app.queue!.parked.has('provider')).toBe(true);
    // Parked: its entry stays queued and is not attempted again, though it falls due (retry.first 100 ms).
    await new Promise((res) => setTimeout(res, 600));
    expect(await deliveries(r, id)).toHaveLength(1);
    expect(r.app.spool!.summary(id)?.state).toBe('queued');
    await upstream.resetFaults();
    await recordWhere(r, (x) => x.type === 'spool' && x.event === 'unparked' && x.upstream === 'provider');
    expect(await endOf(r, id)).toMatchObject({ event: 'delivered' });
    expect((await deliveries(r, id)).map((d) => d.outcome)).toEqual(['deferred', 'delivered']);
    // The bus hears the end once the files are gone, just after its record.
    await recordWhere(r, () => events.at(-1)?.state === 'delivered');
    expect(events.map((e) => e.state)).toEqual(['queued', 'delivering', 'queued', 'delivering', 'delivered']);
  });

  it('gives a parked upstream one trial after spool.retry.max, parks it again when the trial fails the same way, and unparks it when one passes', async () => {
    await upstream.setFaults({ authReply: { code: 535, text: '5.7.8 Authentication credentials invalid' } });
    const r = await start({ spool: { retry: { first: 100, max: 400 } } }, { auth: { user: 'relay', pass: 'secret' } });
    const id = await queue(r);
    await recordWhere(r, (x) => x.type === 'delivery' && x.spoolId === id && x.attempt === 2);
    // The trial failed as before: still parked, not announced twice.
    expect((await spoolRecords(r, null)).map((x) => x.event)).toEqual(['parked']);
    await upstream.resetFaults();
    expect(await endOf(r, id)).toMatchObject({ event: 'delivered' });
    const unparked = (await spoolRecords(r, null)).find((x) => x.event === 'unparked');
    expect(unparked?.reason).toContain('trial delivery');
    const attempts = await deliveries(r, id);
    // One attempt per retry.max at most while parked.
    for (let i = 1; i < attempts.length; i++) expect(Date.parse(attempts[i]!.time) - Date.parse(attempts[i - 1]!.time)).toBeGreaterThanOrEqual(350);
  });

  it('bounces a 550 at once and sends the sender an RFC 3464 report through the route', async () => {
    await upstream.setFaults({ rcpt: (a) => (a === 'dead@example.org' ? { code: 550, text: '5.1.1 <dead@example.org>: user unknown' } : null) });
    const r = await start();
    const id = await queue(r, ['dead@example.org'], simpleMessage({ subject: 'Your invoice 42' }));
    const end = await endOf(r, id);
    expect(end).toMatchObject({ event: 'bounced', dsn: { id: expect.stringMatching(/^[0-9A-Z]{26}$/) } });
    expect((await deliveries(r, id))[0]).toMatchObject({ outcome: 'rejected', failure: { class: 'recipient_rejected' }, next: { action: 'end' } });
    // The DSN is a spool entry of its own, from the null sender, delivered like any other.
    const dsnEnd = await endOf(r, end.dsn!.id);
    expect(dsnEnd.event).toBe('delivered');
    const report = upstream.messages.find((m) => m.from === '');
    expect(report?.to).toEqual(['app@example.com']);
    const mail = await simpleParser(report!.raw, { keepDeliveryStatus: true });
    expect(mail.headers.get('content-type')).toMatchObject({ value: 'multipart/report', params: { 'report-type': 'delivery-status' } });
    expect(mail.subject).toBe('Delivery failed: Your invoice 42');
    const status = mail.attachments.find((a) => a.contentType === 'message/delivery-status');
    expect(status?.content.toString()).toMatch(/Final-Recipient: rfc822; dead@example\.org\r\nAction: failed\r\nStatus: 5\.1\.1/);
    expect(status?.content.toString()).toContain(`X-Mailtrail-Id: ${id}`);
  });

  it('after a partial acceptance retries only the recipients still owed, and reports the refused one in one DSN', async () => {
    let later = true;
    await upstream.setFaults({
      rcpt: (a) =>
        a === 'dead@example.org'
          ? { code: 550, text: '5.1.1 user unknown' }
          : a === 'later@example.org' && later
            ? { code: 451, text: '4.2.0 mailbox busy' }
            : null,
    });
    const r = await start();
    const id = await queue(r, ['ana@example.org', 'dead@example.org', 'later@example.org']);
    const first = (await recordWhere(r, (x) => x.type === 'delivery' && x.spoolId === id)) as DeliveryRecord;
    expect(first).toMatchObject({
      outcome: 'partial',
      rcpt: [
        { to: 'ana@example.org', status: 'accepted' },
        { to: 'dead@example.org', status: 'rejected' },
        { to: 'later@example.org', status: 'deferred' },
      ],
      next: { action: 'retry' },
    });
    later = false;
    const end = await endOf(r, id);
    const second = (await deliveries(r, id))[1];
    expect(second).toMatchObject({ attempt: 2, outcome: 'delivered', rcpt: [{ to: 'later@example.org', status: 'accepted' }] });
    expect(upstream.messages.filter((m) => m.from !== '').map((m) => m.to)).toEqual([['ana@example.org'], ['later@example.org']]);
    expect(end).toMatchObject({ event: 'bounced', dsn: { id: expect.any(String) } });
    await endOf(r, end.dsn!.id);
    const report = await simpleParser(upstream.messages.find((m) => m.from === '')!.raw, { keepDeliveryStatus: true });
    expect(report.subject).toMatch(/^Delivery failed for 1 of 3 recipients/);
    const status = report.attachments.find((a) => a.contentType === 'message/delivery-status')!.content.toString();
    expect(status).toContain('Final-Recipient: rfc822; dead@example.org');
    expect(status).not.toContain('later@example.org');
  });

  it('holds an unknown outcome (the final dot got no answer) with the evidence, recorded as a possible duplicate', async () => {
    await upstream.setFaults({ data: 'drop-after-dot' });
    const r = await start();
    const id = await queue(r);
    const attempt = (await recordWhere(r, (x) => x.type === 'delivery' && x.spoolId === id)) as DeliveryRecord;
    expect(attempt).toMatchObject({ outcome: 'unknown', duplicateRisk: true, failure: { class: 'unknown_outcome' }, next: { action: 'hold', at: null } });
    // The record comes first, then the entry's change.
    await recordWhere(r, () => r.app.spool!.summary(id)?.state === 'held');
    const entry = await r.app.spool!.get(id);
    expect(entry).toMatchObject({ state: 'held', dotPendingSince: null, held: { by: null, reason: expect.stringContaining('unknown outcome') } });
    expect(entry!.held!.reason).toContain(attempt.id);
    await new Promise((res) => setTimeout(res, 300));
    expect(upstream.allData).toHaveLength(1);
  });

  it('sends an unknown outcome again under spool.unknownOutcome: resend, the attempt recorded as a possible duplicate', async () => {
    await upstream.setFaults({ data: 'drop-after-dot' });
    const r = await start({ spool: { ...FAST, unknownOutcome: 'resend' } });
    const id = await queue(r);
    const first = (await recordWhere(r, (x) => x.type === 'delivery' && x.spoolId === id)) as DeliveryRecord;
    expect(first).toMatchObject({ outcome: 'unknown', duplicateRisk: true, next: { action: 'retry' } });
    await upstream.resetFaults();
    await endOf(r, id);
    expect(upstream.allData).toHaveLength(2);
    expect(upstream.messages).toHaveLength(1);
  });

  it('expires a deferred and a held message at spool.maxAge, each with its DSN, and never reports a report', async () => {
    await upstream.refuse();
    const r = await start({ spool: { ...FAST, maxAge: 1_500 } });
    const deferred = await queue(r, ['ana@example.org']);
    const held = await queue(r, ['bo@example.org']);
    await r.app.queue!.hold(held, { channel: 'cli', user: 'ops', address: null });
    const ends = await Promise.all([endOf(r, deferred), endOf(r, held)]);
    expect(ends.map((e) => e.event)).toEqual(['expired', 'expired']);
    expect(ends[0].reason).toContain('spool.maxAge');
    const dsns = ends.map((e) => e.dsn!.id);
    // The DSNs cannot be delivered either: they expire in turn, and nobody is told about them.
    const dsnEnds = await Promise.all(dsns.map((d) => endOf(r, d)));
    expect(dsnEnds.map((e) => [e.event, e.dsn])).toEqual([
      ['expired', null],
      ['expired', null],
    ]);
    // The end record first, then the files go.
    await recordWhere(r, () => r.app.spool!.counts().total === 0);
  });

  it('expires a message behind a parked upstream', async () => {
    await upstream.setFaults({ authReply: { code: 535, text: '5.7.8 Authentication credentials invalid' } });
    const r = await start({ spool: { ...FAST, maxAge: 1_200, dsn: false } }, { auth: { user: 'relay', pass: 'secret' } });
    const id = await queue(r);
    await recordWhere(r, (x) => x.type === 'spool' && x.event === 'parked');
    expect(await endOf(r, id)).toMatchObject({ event: 'expired', dsn: null });
  });

  it("makes an operator's hold during an attempt wait for the attempt, then hold what is left", async () => {
    await upstream.setFaults({ data: { code: 451, text: '4.3.0 try later' }, delayMs: { data: 400 } });
    const r = await start();
    const id = await queue(r);
    await recordWhere(r, () => r.app.spool!.summary(id)?.state === 'delivering');
    const result = await r.app.queue!.hold(id, { channel: 'cli', user: 'ops', address: null }, 'checking with the provider');
    expect(result).toMatchObject({ id, changed: true, state: 'held' });
    expect(await deliveries(r, id)).toHaveLength(1);
    const held = (await recordWhere(r, (x) => x.type === 'spool' && x.spoolId === id && x.event === 'held')) as SpoolRecord;
    expect(held).toMatchObject({ by: { channel: 'cli', user: 'ops', address: null }, reason: 'checking with the provider' });
    await upstream.resetFaults();
    await new Promise((res) => setTimeout(res, 400));
    expect(await deliveries(r, id)).toHaveLength(1);
    // Released: delivered at once.
    expect(await r.app.queue!.release(id, { channel: 'cli', user: 'ops', address: null })).toMatchObject({ changed: true, state: 'queued' });
    expect(await endOf(r, id)).toMatchObject({ event: 'delivered' });
  });

  it('ends an entry whose recipients were all settled before the last stop, without another attempt', async () => {
    // As if the process had stopped after the attempt's outcome was written and before the end.
    const dataDir = await mkdtemp(join(tmpdir(), 'mailtrail-settled-'));
    const { store } = await SpoolStore.open({ dir: join(dataDir, 'spool'), minFreeSpace: 0, log: createLogger('silent') });
    const raw = simpleMessage();
    const entry = await store.accept({
      id: new IdGenerator().next(),
      acceptance: { mode: 'spool', reason: 'spool mode' },
      from: 'app@example.com',
      to: ['ana@example.org'],
      use8BitMime: false,
      message: { size: raw.length, sha256: 'x', messageId: null, headerFrom: null },
      client: { ip: '127.0.0.1', user: null },
      body: raw,
    });
    await store.markRecorded(entry.id);
    await store.update(entry.id, (e) => ({ ...e, attempts: 1, rcpt: e.rcpt.map((x) => ({ ...x, state: 'delivered' as const })), nextAttemptAt: e.acceptedAt }));
    await store.close();
    try {
      const r = await start({ dataDir });
      expect(await endOf(r, entry.id)).toMatchObject({ event: 'delivered', reason: 'every recipient was settled before the last stop' });
      expect(await deliveries(r, entry.id)).toEqual([]);
      expect(upstream.connections).toBe(0);
    } finally {
      await relay?.stop();
      relay = null;
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('answers an action on a message the spool no longer has with ESPOOLENTRY', async () => {
    const r = await start();
    const id = await queue(r);
    await endOf(r, id);
    await expect(r.app.queue!.hold(id, null)).rejects.toMatchObject({ code: ERR.SPOOL_ENTRY });
  });

  it('deletes and bounces on an operator’s word, each recorded with who did it', async () => {
    await upstream.refuse();
    const r = await start({ spool: { retry: { first: 60_000, max: 60_000 } } });
    const a = await queue(r);
    const b = await queue(r);
    const by = { channel: 'cli' as const, user: 'ops', address: null };
    await r.app.queue!.delete(a, by);
    await r.app.queue!.bounce(b, by);
    expect(await spoolRecords(r, a)).toMatchObject([{ event: 'deleted', by, dsn: null }]);
    expect(await spoolRecords(r, b)).toMatchObject([{ event: 'bounced', by, dsn: { id: expect.any(String) } }]);
  });
});
