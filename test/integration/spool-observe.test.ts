/**
 * The spool seen from outside a relay in spool mode, over real HTTP: its series on /metrics (every
 * one there at 0 from the start, the gauges following the spool), and /readyz failing, with the
 * reason, while the spool cannot take a message (below spool.minFreeSpace, or a folder that cannot be
 * written) and recovering once it can.
 */
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ReadinessReport } from '../../src/observe/readiness.js';
import { UPSTREAM_FAILURE_CLASSES } from '../../src/classify/failure-class.js';
import { askRelay } from '../../src/tools/queue-client.js';
import { parseExposition, type Exposition } from '../helpers/exposition.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { startWebhookReceiver } from '../helpers/webhook-receiver.js';
import { delivery } from '../helpers/trail-fixtures.js';

const MIB = 1024 * 1024;

describe('the spool on /metrics and /readyz', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let free = 10_000 * MIB;
  let fsyncFails = false;

  beforeAll(async () => {
    upstream = await startFakeUpstream({ faults: { rcpt: () => ({ code: 451, text: '4.7.1 Try again later' }) } });
    relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port }],
      mode: 'spool',
      http: { port: 0 },
      spool: { minFreeSpace: 256 * MIB, retry: { first: 3_600_000, max: 7_200_000 } },
      appOptions: {
        spool: {
          freeSpace: () => free,
          fileOps: {
            fsync: async (handle) => {
              if (fsyncFails) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
              await handle.sync();
            },
          },
        },
      },
    });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });
  afterEach(() => {
    free = 10_000 * MIB;
    fsyncFails = false;
  });

  async function metrics(): Promise<Exposition> {
    return parseExposition(await (await fetch(`${relay.httpUrl}/metrics`)).text());
  }

  async function readyz(): Promise<{ status: number; body: ReadinessReport }> {
    const res = await fetch(`${relay.httpUrl}/readyz`);
    return { status: res.status, body: (await res.json()) as ReadinessReport };
  }

  /** Polls /readyz until `test` holds; the write probe runs in the background, at most every 5 s. */
  async function untilReady(
    test: (r: { status: number; body: ReadinessReport }) => boolean,
    timeoutMs = 15_000,
  ): Promise<{ status: number; body: ReadinessReport }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await readyz();
      if (test(r)) return r;
      if (Date.now() > deadline) throw new Error(`/readyz never matched: ${JSON.stringify(r.body)}`);
      await new Promise((done) => setTimeout(done, 100));
    }
  }

  it('exports every spool series from the start: messages by state, oldest age, free bytes, attempts, ends, parked upstreams', async () => {
    const m = await metrics();
    for (const state of ['queued', 'delivering', 'held']) expect(m.samples).toContainEqual({ name: 'mailtrail_spool_messages', labels: { state }, value: 0 });
    expect(m.value('mailtrail_spool_oldest_age_seconds')).toBe(0);
    expect(m.value('mailtrail_spool_free_bytes')).toBe(10_000 * MIB);
    expect(m.value('mailtrail_spool_min_free_bytes')).toBe(256 * MIB);
    for (const cls of ['none', ...UPSTREAM_FAILURE_CLASSES]) {
      expect(m.samples).toContainEqual({ name: 'mailtrail_spool_attempts_total', labels: { class: cls }, value: 0 });
    }
    for (const end of ['delivered', 'bounced', 'expired', 'deleted']) {
      expect(m.samples).toContainEqual({ name: 'mailtrail_spool_ends_total', labels: { end, class: 'none' }, value: 0 });
    }
    expect(m.samples).toContainEqual({ name: 'mailtrail_spool_ends_total', labels: { end: 'bounced', class: 'quota' }, value: 0 });
    expect(m.samples).toContainEqual({ name: 'mailtrail_spool_parked', labels: { upstream: 'provider' }, value: 0 });
    expect(m.types.get('mailtrail_spool_attempts_total')).toBe('counter');
    expect(m.types.get('mailtrail_spool_messages')).toBe('gauge');
  });

  it('follows the spool: messages by state and the age of the oldest waiting one', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await relay.send({ from: 'app@example.com', to: [`m${i}@example.org`], raw: simpleMessage() });
      ids.push(/queued as ([0-9A-Z]{26})/.exec(res.ok ? res.response : '')![1]!);
    }
    const answer = await askRelay(join(relay.dataDir, 'mailtrail.lock'), { v: 1, op: 'act', action: 'hold', id: ids[0]!, user: 'ops', reason: null });
    expect(answer).toMatchObject({ kind: 'answer', end: { ok: true } });
    const m = await metrics();
    const waiting = m.value('mailtrail_spool_messages', { state: 'queued' }) + m.value('mailtrail_spool_messages', { state: 'delivering' });
    expect(waiting).toBe(1);
    expect(m.value('mailtrail_spool_messages', { state: 'held' })).toBe(1);
    expect(m.value('mailtrail_spool_oldest_age_seconds')).toBeGreaterThanOrEqual(0);
    expect(m.value('mailtrail_spool_oldest_age_seconds')).toBeLessThan(120);
    for (const id of ids) await askRelay(join(relay.dataDir, 'mailtrail.lock'), { v: 1, op: 'act', action: 'delete', id, user: 'ops', reason: null });
    expect((await metrics()).value('mailtrail_spool_messages')).toBe(0);
  });

  it('/api/transactions tells a spooled message with what befell it since, and finds its later records by their own ids', async () => {
    const res = await relay.send({ from: 'app@example.com', to: ['api@example.org'], raw: simpleMessage() });
    const id = /queued as ([0-9A-Z]{26})/.exec(res.ok ? res.response : '')![1]!;
    const socket = join(relay.dataDir, 'mailtrail.lock');
    await askRelay(socket, { v: 1, op: 'act', action: 'hold', id, user: 'ops', reason: 'checking' });
    await askRelay(socket, { v: 1, op: 'act', action: 'delete', id, user: 'ops', reason: null });
    const body = (await (await fetch(`${relay.httpUrl}/api/transactions/${id}`)).json()) as {
      outcome: string;
      spoolFollowUp: { type: string; event: string; id: string }[];
    };
    expect(body.outcome).toBe('queued');
    // The queue manager's first attempt (deferred) may come before the hold: its delivery record too.
    const events = body.spoolFollowUp.filter((r) => r.type === 'spool');
    expect(events.map((r) => r.event)).toEqual(['held', 'deleted']);
    expect(body.spoolFollowUp.every((r) => r.type === 'spool' || r.type === 'delivery')).toBe(true);
    const held = (await (await fetch(`${relay.httpUrl}/api/transactions/${events[0]!.id}`)).json()) as Record<string, unknown>;
    expect(held).toMatchObject({ type: 'spool', event: 'held', spoolId: id, reason: 'checking', by: { channel: 'cli', user: 'ops', address: null } });
  });

  it('/api/errors groups failed delivery attempts from the spool, naming the message', async () => {
    const spoolId = '01M94YAFK06VB1GMH80B0ECYC5';
    const reply = { code: 451, enhanced: '4.7.1', text: 'Too many messages from 192.0.2.1, slow down' };
    relay.app.bus.publish('delivery', {
      ...delivery(spoolId),
      outcome: 'deferred',
      upstreamReply: { ...reply, phase: 'rcpt' },
      rcpt: [{ to: 'ana@example.org', status: 'deferred', reply }],
      failure: {
        class: 'throttled',
        retryable: true,
        actor: 'upstream',
        scope: 'account',
        detail: { rule: 'x', code: 'EENVELOPE', cause: null, timeoutType: null, message: null },
      },
      next: { action: 'retry', at: new Date(Date.now() + 60_000).toISOString() },
    });
    const { groups } = (await (await fetch(`${relay.httpUrl}/api/errors`)).json()) as {
      groups: { class: string; normalized: string; sample: { spoolId: string | null } }[];
    };
    expect(groups).toContainEqual(
      expect.objectContaining({
        class: 'throttled',
        normalized: '451 4.7.1 Too many messages from <ip>, slow down',
        sample: expect.objectContaining({ spoolId }),
      }),
    );
  });

  it('is ready with the spool accepting, and says so', async () => {
    const r = await untilReady((x) => x.status === 200);
    expect(r.body.spool).toEqual({ accepting: true, reason: null });
  });

  it('is not ready while the spool is below spool.minFreeSpace, with the reason, and ready again once there is room', async () => {
    await untilReady((x) => x.status === 200);
    free = 100 * MIB;
    const down = await untilReady((x) => x.status === 503);
    expect(down.body.reasons).toEqual([
      expect.stringMatching(/^the spool's filesystem is below spool\.minFreeSpace \(100 MiB free, 256 MiB kept\): new messages get 452 4\.3\.1$/),
    ]);
    expect(down.body.spool).toMatchObject({ accepting: false });
    expect((await metrics()).value('mailtrail_spool_free_bytes')).toBe(100 * MIB);
    free = 10_000 * MIB;
    await untilReady((x) => x.status === 200);
  });

  it('is not ready while the spool folder cannot be written (an acceptance failed), and ready again once it can', async () => {
    await untilReady((x) => x.status === 200);
    fsyncFails = true;
    const res = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    expect(res).toMatchObject({ ok: false, code: 451 });
    const down = await untilReady((x) => x.status === 503);
    expect(down.body.reasons).toEqual([expect.stringMatching(/^the spool folder cannot be written \(EIO\): new messages get 451 4\.3\.0$/)]);
    fsyncFails = false;
    // The write probe sees the folder writable again (within its 5 s period).
    await untilReady((x) => x.status === 200);
  });
});

describe("the spool's built-in alerts", () => {
  it('page when a message waits too long and when the disk runs low, and resolve when that is over', async () => {
    const upstream = await startFakeUpstream({ faults: { rcpt: () => ({ code: 451, text: '4.7.1 Try again later' }) } });
    const hook = await startWebhookReceiver();
    let free = 10_000 * MIB;
    const relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port }],
      mode: 'spool',
      spool: { minFreeSpace: 256 * MIB, retry: { first: 3_600_000, max: 7_200_000 } },
      alerts: {
        sinks: [{ kind: 'webhook', name: 'hook', url: hook.url, secret: null, headers: {} }],
        rules: [{ name: 'provider-config', condition: { kind: 'class', classes: ['quota'] }, sinks: ['hook'] }],
        cooldown: 0,
        spool: { oldest: 1_000, growing: 1_800_000, growingMin: 100 },
      },
      appOptions: { spool: { freeSpace: () => free } },
    });
    try {
      const res = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
      const id = /queued as ([0-9A-Z]{26})/.exec(res.ok ? res.response : '')![1]!;
      free = 300 * MIB;
      // The engine judges the spool every 5 s.
      await hook.waitFor((r) => r.length >= 2, 20_000);
      const fired = hook.received.map((h) => h.json.alert as { state: string; rule: string; upstream: string | null; message: string });
      expect(fired.map((a) => [a.state, a.rule, a.upstream]).sort()).toEqual([
        ['fired', 'spool-disk-low', null],
        ['fired', 'spool-oldest', null],
      ]);
      expect(fired.find((a) => a.rule === 'spool-oldest')!.message).toMatch(
        /^spool-oldest: the oldest message in the spool has waited \d+s for delivery \(threshold 1s\)/,
      );
      expect(fired.find((a) => a.rule === 'spool-disk-low')!.message).toContain('300 MiB free, less than twice spool.minFreeSpace (256 MiB)');

      free = 10_000 * MIB;
      await askRelay(join(relay.dataDir, 'mailtrail.lock'), { v: 1, op: 'act', action: 'delete', id, user: 'ops', reason: null });
      await hook.waitFor((r) => r.length >= 4, 20_000);
      const resolved = hook.received.slice(2).map((h) => h.json.alert as { state: string; rule: string });
      expect(resolved.map((a) => [a.state, a.rule]).sort()).toEqual([
        ['resolved', 'spool-disk-low'],
        ['resolved', 'spool-oldest'],
      ]);
    } finally {
      await relay.stop();
      await upstream.close();
      await hook.close();
    }
  }, 60_000);
});
