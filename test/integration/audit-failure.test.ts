import { existsSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { capturedLog } from '../helpers/captured-log.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

// /dev/full accepts the open and fails every write with ENOSPC: a real full disk, no mocks.
describe.skipIf(!existsSync('/dev/full'))('a trail that cannot be written', () => {
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

  it('answers 451 instead of 250 when the record of a relayed message fails, saying it may have gone out, and logs the record', async () => {
    const log = capturedLog();
    relay = await startRelay({ upstreams: [{ port: upstream.port }], auditFile: '/dev/full', logger: log.logger });
    const res = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ messageId: '<unrecorded@example.com>' }) });
    expect(res.ok).toBe(false);
    expect(res.code).toBe(451);
    expect(res.response).toMatch(
      /^451 4\.3\.0 Relayed, but the audit trail could not record it; not confirmed, so a retry may deliver it twice \(id [0-9A-Z]{26}\)$/,
    );
    expect(upstream.messages).toHaveLength(1);
    expect(relay.app.auditWriteErrors).toBeGreaterThanOrEqual(1);
    const failure = log.lines.find((l) => l.msg === 'audit write failed');
    expect(failure).toMatchObject({ level: 'error', file: '/dev/full', err: { code: 'ENOSPC' } });
    // What the trail could not keep, the operational log does: the operator can still find it.
    const kept = log.lines.find((l) => l.msg === 'relay record not written to the audit trail; it follows here');
    expect(kept).toMatchObject({ level: 'error', record: { type: 'relay', outcome: 'delivered', message: { messageId: '<unrecorded@example.com>' } } });
  });

  it('answers a message refused before relaying with "not accepted"', async () => {
    relay = await startRelay({ upstreams: [{ port: upstream.port }], auditFile: '/dev/full' });
    await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    const second = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    expect(second.response).toMatch(/^451 4\.3\.0 Cannot record the transaction; message not accepted, try again later \(id [0-9A-Z]{26}\)$/);
  });

  it('stops relaying while the trail cannot be written, so a retrying client does not deliver again and again', async () => {
    relay = await startRelay({ upstreams: [{ port: upstream.port }], auditFile: '/dev/full' });
    const raw = simpleMessage();
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw }));
    expect(results.map((r) => r.code)).toEqual([451, 451, 451]);
    // The first went out before its record failed; the retries were refused before relaying.
    expect(upstream.messages).toHaveLength(1);
    expect(relay.app.auditWriteErrors).toBeGreaterThanOrEqual(3);
  });

  it('keeps relaying, logs and counts the failure with onWriteFailure: continue', async () => {
    const log = capturedLog();
    relay = await startRelay({ upstreams: [{ port: upstream.port }], auditFile: '/dev/full', logger: log.logger, audit: { onWriteFailure: 'continue' } });
    const first = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    const second = await relay.send({ from: 'app@example.com', to: ['bo@example.org'], raw: simpleMessage() });
    expect([first.code, second.code]).toEqual([250, 250]);
    expect(upstream.messages).toHaveLength(2);
    expect(relay.app.auditWriteErrors).toBeGreaterThanOrEqual(2);
    expect(log.lines.filter((l) => l.msg === 'audit write failed').length).toBeGreaterThanOrEqual(2);
    expect(log.lines.some((l) => l.msg === 'relaying without an audit record (audit.onWriteFailure: continue)')).toBe(true);
  });
});

describe('a trail whose filesystem is nearly full', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay | null = null;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(async () => {
    await relay?.stop();
    await upstream.close();
  });

  it('refuses before relaying below audit.minFreeSpace, records the refusal in the reserve, and is not ready', async () => {
    const log = capturedLog();
    // More than any disk here has free: the filesystem is "below the reserve" from the start.
    relay = await startRelay({ upstreams: [{ port: upstream.port }], http: { port: 0 }, audit: { minFreeSpace: 2 ** 60 }, logger: log.logger });
    const res = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    expect(res.code).toBe(451);
    expect(res.response).toMatch(/^451 4\.3\.0 Cannot record the transaction; message not accepted/);
    expect(upstream.messages).toHaveLength(0);
    const [record] = await relay.relayRecords();
    expect(record).toMatchObject({ outcome: 'deferred', attempts: [], failure: { class: 'internal', detail: { code: 'EAUDITWRITE' } } });
    expect(record!.failure!.detail.message).toContain('below audit.minFreeSpace');
    expect(log.lines.some((l) => l.level === 'error' && String(l.msg).includes('below audit.minFreeSpace'))).toBe(true);
    const ready = await fetch(`${relay.httpUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { reasons: string[] }).reasons).toContain('the audit trail filesystem is below audit.minFreeSpace');
    const metrics = await (await fetch(`${relay.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^mailtrail_audit_writable 0$/m);
  });
});
