import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RejectRecord, RelayRecord } from '../../src/audit/records.js';
import { parseExposition, promtoolCheckMetrics, type Exposition } from '../helpers/exposition.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

async function get(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { headers });
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

describe('metrics after a scripted run against the fake upstream', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let text: string;
  let metrics: Exposition;
  let relays: RelayRecord[];
  let rejects: RejectRecord[];

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({ upstreams: [{ name: 'primary', port: upstream.port }], http: { port: 0 }, limits: { maxRecipients: 2 } });
    const send = (to: string[], id: string) => relay.send({ from: 'app@example.com', to, raw: simpleMessage({ messageId: `<${id}@example.com>` }) });
    for (let i = 0; i < 5; i++) await send(['ana@example.org'], `ok-${i}`);
    await upstream.setFaults({ rcpt: (a) => (a.startsWith('nobody') ? { code: 550, text: '5.1.1 <nobody@example.org>: User unknown' } : null) });
    for (let i = 0; i < 3; i++) await send([`nobody${i}@example.org`], `unknown-${i}`);
    for (let i = 0; i < 2; i++) await send(['ana@example.org', `nobody-p${i}@example.org`], `partial-${i}`);
    await upstream.resetFaults();
    await upstream.setFaults({ data: { code: 554, text: '5.7.1 Message rejected as spam' } });
    for (let i = 0; i < 2; i++) await send(['ana@example.org'], `spam-${i}`);
    await upstream.resetFaults();
    await upstream.refuse();
    upstream.dropConnections();
    for (let i = 0; i < 3; i++) await send(['ana@example.org'], `down-${i}`);
    await upstream.accept();
    // Three recipients where two are allowed: the third is refused by mailtrail itself (a reject record).
    await send(['a@example.org', 'b@example.org', 'c@example.org'], 'too-many');
    text = await (await get(`${relay.httpUrl}/metrics`)).text();
    metrics = parseExposition(text);
    relays = await relay.relayRecords();
    rejects = await relay.rejectRecords();
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('ran every kind of outcome the script meant to produce', () => {
    expect(new Set(relays.map((r) => r.outcome))).toEqual(new Set(['delivered', 'rejected', 'partial', 'deferred']));
    expect(relays).toHaveLength(16);
    expect(rejects.length).toBeGreaterThan(0);
  });

  it('counts relay transactions by outcome, class and upstream exactly as the trail has them', () => {
    const trail = countBy(relays, (r) => `${r.outcome}|${r.failure?.class ?? 'none'}|${r.upstream?.name ?? 'none'}`);
    for (const [key, count] of trail) {
      const [outcome, cls, up] = key.split('|') as [string, string, string];
      expect(metrics.value('mailtrail_relay_transactions_total', { outcome, class: cls, upstream: up }), key).toBe(count);
    }
    expect(metrics.value('mailtrail_relay_transactions_total')).toBe(relays.length);
  });

  it('observes one relay duration per record, summing the records’ total times', () => {
    const trail = countBy(relays, (r) => `${r.upstream?.name ?? 'none'}|${r.outcome}`);
    for (const [key, count] of trail) {
      const [up, outcome] = key.split('|') as [string, string];
      expect(metrics.value('mailtrail_relay_duration_seconds_count', { upstream: up, outcome }), key).toBe(count);
    }
    const sum = relays.reduce((s, r) => s + r.timing.totalMs / 1000, 0);
    expect(metrics.value('mailtrail_relay_duration_seconds_sum')).toBeCloseTo(sum, 6);
  });

  it('observes every relayed message size once', () => {
    expect(metrics.value('mailtrail_message_size_bytes_count')).toBe(relays.length);
    expect(metrics.value('mailtrail_message_size_bytes_sum')).toBe(relays.reduce((s, r) => s + r.message.size, 0));
  });

  it('counts every try at each upstream by class, failed-over ones included', () => {
    const attempts = relays.flatMap((r) => r.attempts);
    for (const [key, count] of countBy(attempts, (a) => `${a.upstream}|${a.class ?? 'none'}`)) {
      const [up, cls] = key.split('|') as [string, string];
      expect(metrics.value('mailtrail_upstream_attempts_total', { upstream: up, class: cls }), key).toBe(count);
    }
  });

  it('exports every class of try at every upstream from the start, at 0 when none happened', () => {
    // Prometheus's increase() needs a sample before the first failure, or that failure never alerts.
    expect(metrics.value('mailtrail_upstream_attempts_total', { upstream: 'primary', class: 'quota' })).toBe(0);
    expect(metrics.value('mailtrail_upstream_attempts_total', { upstream: 'primary', class: 'upstream_auth' })).toBe(0);
    expect(metrics.value('mailtrail_audit_write_errors_total', {})).toBe(0);
  });

  it('counts client refusals by class exactly as the trail has them', () => {
    for (const [cls, count] of countBy(rejects, (r) => r.class)) {
      expect(metrics.value('mailtrail_client_rejects_total', { class: cls }), cls).toBe(count);
    }
    expect(metrics.value('mailtrail_client_rejects_total')).toBe(rejects.length);
  });

  it('keeps the time of the last accepted message per upstream', () => {
    const last = relays.filter((r) => r.outcome === 'delivered' || r.outcome === 'partial').at(-1)!;
    expect(metrics.value('mailtrail_upstream_last_success_timestamp_seconds', { upstream: 'primary' })).toBe(Date.parse(last.time) / 1000);
  });

  it('exports no address in any label value', () => {
    const values = metrics.samples.flatMap((s) => Object.values(s.labels));
    expect(values.filter((v) => v.includes('@'))).toEqual([]);
  });

  it('exports the audit, unclassified and session metrics and process metrics', () => {
    expect(metrics.types.get('mailtrail_audit_write_errors_total')).toBe('counter');
    expect(metrics.value('mailtrail_audit_write_errors_total')).toBe(0);
    expect(metrics.value('mailtrail_unclassified_failures_total')).toBe(0);
    expect(metrics.types.get('mailtrail_sessions_active')).toBe('gauge');
    expect(metrics.types.get('process_cpu_seconds_total')).toBe('counter');
  });

  it('serves valid exposition text that passes promtool check metrics, lint included, when promtool is installed', async () => {
    expect(text.length).toBeGreaterThan(0);
    const promtool = await promtoolCheckMetrics(text);
    if (promtool === null) return;
    expect({ code: promtool.code, problems: promtool.problems }).toEqual({ code: 0, problems: [] });
  });

  it('finds a recent transaction by id and by Message-ID, with or without angle brackets', async () => {
    const record = relays.find((r) => r.message.messageId === '<ok-1@example.com>')!;
    const byId = await get(`${relay.httpUrl}/api/transactions/${record.id}`);
    expect(byId.status).toBe(200);
    expect(await byId.json()).toEqual(record);
    const byMid = (await (await get(`${relay.httpUrl}/api/transactions?messageId=${encodeURIComponent('ok-1@example.com')}`)).json()) as {
      transactions: RelayRecord[];
    };
    expect(byMid.transactions.map((t) => t.id)).toEqual([record.id]);
    expect((await get(`${relay.httpUrl}/api/transactions/01ZZZZZZZZZZZZZZZZZZZZZZZZ`)).status).toBe(404);
  });

  it('groups failures by fingerprint with count, first and last seen and a sample', async () => {
    const { groups } = (await (await get(`${relay.httpUrl}/api/errors`)).json()) as {
      groups: {
        class: string;
        upstream: string;
        count: number;
        firstSeen: string;
        lastSeen: string;
        sample: { reply: { code: number } | null; error: { cause: string } | null };
      }[];
    };
    // Three refusals of every recipient plus two partial deliveries refusing one recipient with the
    // same reply: one error.
    const unknown = groups.find((g) => g.class === 'recipient_rejected' && g.count === 5);
    expect(unknown).toBeDefined();
    expect(unknown!.firstSeen <= unknown!.lastSeen).toBe(true);
    // The latest is a partial delivery: its sample shows the recipient's 550, not the final 250.
    expect(unknown!.sample.reply?.code).toBe(550);
    const down = groups.find((g) => g.class === 'connect')!;
    expect(down).toMatchObject({ upstream: 'primary', count: 3, sample: { error: { cause: 'ECONNREFUSED' } } });
  });

  it('answers /healthz and refuses methods other than GET and HEAD', async () => {
    expect(await (await get(`${relay.httpUrl}/healthz`)).json()).toEqual({ status: 'ok' });
    expect((await fetch(`${relay.httpUrl}/metrics`, { method: 'POST' })).status).toBe(405);
  });
});

describe('the HTTP endpoint with a token', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  const token = 'a-token-of-at-least-16-chars';

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({ upstreams: [{ port: upstream.port }], http: { port: 0, token } });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('refuses /metrics, /readyz and the API without the bearer token', async () => {
    for (const path of ['/metrics', '/readyz', '/api/errors']) {
      const res = await get(`${relay.httpUrl}${path}`);
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
    expect((await get(`${relay.httpUrl}/metrics`, { authorization: 'Bearer wrong-token-wrong-token' })).status).toBe(401);
  });

  it('serves them with the token, and /healthz without it', async () => {
    expect((await get(`${relay.httpUrl}/metrics`, { authorization: `Bearer ${token}` })).status).toBe(200);
    expect((await get(`${relay.httpUrl}/healthz`)).status).toBe(200);
  });
});
