/**
 * Hybrid mode (docs/spool.md, "Hybrid mode") on real sockets: the upstream's verdict when it comes
 * within spool.hybridWait and delivers or refuses for good; otherwise 250 queued, and the spool
 * takes over, never sending the message twice.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, DeliveryRecord, RelayRecord, SpoolRecord } from '../../src/audit/records.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RelaySpec, type RunningRelay } from '../helpers/relay-harness.js';

const QUEUED = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]{26})/;

describe('hybrid mode', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay | null = null;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
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

  async function start(spool: Partial<RelaySpec['spool']> = {}): Promise<RunningRelay> {
    relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port, breaker: null }],
      mode: 'hybrid',
      tls: null,
      // A verdict is "in time" within 5 s by default: generous for a loaded machine.
      spool: { hybridWait: 5_000, retry: { first: 100, max: 400 }, ...spool },
      appOptions: { spool: { tickMs: 50 } },
    });
    return relay;
  }

  const send = (r: RunningRelay, to = ['ana@example.org'], messageId = `<h-${Math.random().toString(36).slice(2)}@example.com>`) =>
    r.send({ from: 'app@example.com', to, raw: simpleMessage({ messageId }), startTls: false });

  async function recordWhere(r: RunningRelay, match: (x: AuditRecord) => boolean, timeoutMs = 8_000): Promise<AuditRecord> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const found = (await r.records()).find(match);
      if (found) return found;
      if (Date.now() > until) throw new Error('no such record in time');
      await new Promise((res) => setTimeout(res, 25));
    }
  }

  it('passes a verdict in time through as pass-through does, and spools nothing', async () => {
    const r = await start();
    const res = await send(r);
    expect(res).toMatchObject({ ok: true, code: 250 });
    expect(res.ok && res.response).not.toMatch(QUEUED);
    const [record] = await r.relayRecords();
    expect(record).toMatchObject({ outcome: 'delivered' });
    expect(record!.spool).toBeUndefined();
    expect(r.app.spool!.counts().total).toBe(0);
  });

  it('passes a permanent refusal in time through to the client', async () => {
    await upstream.setFaults({ rcpt: () => ({ code: 550, text: '5.1.1 user unknown' }) });
    const r = await start();
    const res = await send(r);
    expect(res).toMatchObject({ ok: false, code: 550 });
    expect((await r.relayRecords())[0]).toMatchObject({ outcome: 'rejected' });
    expect(r.app.spool!.counts().total).toBe(0);
  });

  it('answers 250 queued for a slow upstream, and the attempt in flight becomes the first delivery: delivered once', async () => {
    await upstream.setFaults({ delayMs: { data: 1_500 } });
    const r = await start({ hybridWait: 300 });
    const t0 = Date.now();
    const res = await send(r, ['ana@example.org'], '<slow@example.com>');
    expect(Date.now() - t0).toBeLessThan(1_500);
    const id = QUEUED.exec(res.ok ? res.response : '')?.[1];
    expect(id, JSON.stringify(res)).toBeDefined();
    const accepted = (await r.relayRecords())[0]!;
    expect(accepted).toMatchObject({ id, outcome: 'queued', spool: { mode: 'hybrid', reason: 'hybrid: no verdict within 300ms' } });
    // Not tried from the spool meanwhile: its relay is still in flight.
    expect(r.app.spool!.summary(id!)?.state).toBe('delivering');
    const end = (await recordWhere(r, (x) => x.type === 'spool' && x.spoolId === id && x.event === 'delivered')) as SpoolRecord;
    expect(end.event).toBe('delivered');
    const attempts = (await r.records()).filter((x): x is DeliveryRecord => x.type === 'delivery' && x.spoolId === id);
    expect(attempts.map((a) => [a.attempt, a.outcome])).toEqual([[1, 'delivered']]);
    await new Promise((res) => setTimeout(res, 300));
    expect(upstream.allData.filter((m) => m.raw.includes('<slow@example.com>'))).toHaveLength(1);
  });

  it('answers 250 queued when the upstream cannot be reached, with the tries in the acceptance record, and delivers from the spool later', async () => {
    await upstream.refuse();
    const r = await start();
    const res = await send(r);
    const id = QUEUED.exec(res.ok ? res.response : '')?.[1];
    expect(id, JSON.stringify(res)).toBeDefined();
    const accepted = (await r.relayRecords())[0] as RelayRecord;
    expect(accepted).toMatchObject({ outcome: 'queued', route: 'default', spool: { mode: 'hybrid', reason: 'hybrid: connect' } });
    expect(accepted.attempts).toMatchObject([{ upstream: 'provider', class: 'connect' }]);
    const first = (await recordWhere(r, (x) => x.type === 'delivery' && x.spoolId === id)) as DeliveryRecord;
    expect(first).toMatchObject({ attempt: 1, outcome: 'deferred', next: { action: 'retry' } });
    await upstream.accept();
    await recordWhere(r, (x) => x.type === 'spool' && x.spoolId === id && x.event === 'delivered');
    expect(upstream.messages).toHaveLength(1);
  });

  it('spools an unknown outcome in time and holds it, recorded as a possible duplicate', async () => {
    await upstream.setFaults({ data: 'drop-after-dot' });
    const r = await start();
    const res = await send(r);
    const id = QUEUED.exec(res.ok ? res.response : '')?.[1];
    expect(id, JSON.stringify(res)).toBeDefined();
    const attempt = (await recordWhere(r, (x) => x.type === 'delivery' && x.spoolId === id)) as DeliveryRecord;
    expect(attempt).toMatchObject({ outcome: 'unknown', duplicateRisk: true, next: { action: 'hold' } });
    // The record comes first, then the entry's change.
    await recordWhere(r, () => r.app.spool!.summary(id!)?.state === 'held');
    await new Promise((res) => setTimeout(res, 300));
    expect(upstream.allData).toHaveLength(1);
  });

  it('marks the entry before a final dot that goes out after it was spooled', async () => {
    // RCPT is slow: the entry exists before the body goes out, so the dot waits for the durable mark.
    await upstream.setFaults({ delayMs: { rcpt: 1_000, data: 400 } });
    const r = await start({ hybridWait: 300 });
    const res = await send(r);
    const id = QUEUED.exec(res.ok ? res.response : '')?.[1] ?? '';
    expect(id, JSON.stringify(res)).not.toBe('');
    let marked = false;
    const until = Date.now() + 3_000;
    while (!marked && Date.now() < until) {
      marked = (await r.app.spool!.get(id))?.dotPendingSince != null;
      if (!marked) await new Promise((res) => setTimeout(res, 20));
    }
    expect(marked).toBe(true);
    await recordWhere(r, (x) => x.type === 'spool' && x.spoolId === id && x.event === 'delivered');
    expect(upstream.messages).toHaveLength(1);
  });
});
