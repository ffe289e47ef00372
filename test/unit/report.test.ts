import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, RelayRecord } from '../../src/audit/records.js';
import { errorFingerprint } from '../../src/observe/error-fingerprint.js';
import { GROUP_BY, type GroupBy, type Report } from '../../src/tools/report-builder.js';
import { reportCommand } from '../../src/tools/report.js';
import { LogHistogram, QUANTILE_RELATIVE_ERROR } from '../../src/tools/quantiles.js';
import { SpaceSaving } from '../../src/tools/top-k.js';
import { runTrailCommand } from '../../src/tools/trail-commands.js';
import { trailRecords } from '../../bench/make-trail.mjs';
import { alert, memoryIo, oversize, reject, relay, removeDir, session, tempDir, throttled, toLines, writeTrail } from '../helpers/trail-fixtures.js';

type JsonReport = Report & { files: string[]; skipped: { torn: number; malformed: number } };

async function runReport(args: string[]): Promise<{ code: number; report: JsonReport; stderr: string }> {
  const io = memoryIo();
  const code = await reportCommand(['--json', ...args], io, Date.parse('2026-11-26T00:00:00Z'));
  return { code, report: JSON.parse(io.out()) as JsonReport, stderr: io.err() };
}

function readRecords(files: string[]): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (const f of files) {
    const buf = readFileSync(f);
    const text = (buf[0] === 0x1f && buf[1] === 0x8b ? gunzipSync(buf) : buf).toString('utf8');
    for (const line of text.split('\n')) {
      try {
        const r = JSON.parse(line) as AuditRecord;
        if (r && typeof r === 'object' && typeof r.type === 'string') out.push(r);
      } catch {
        // torn or malformed: the report skips it too
      }
    }
  }
  return out;
}

/** Nearest-rank percentile over the exact values. */
function exactPercentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
}

const ratio = (part: number, whole: number): number | null => (whole === 0 ? null : Math.round((part / whole) * 10_000) / 10_000);

/** An upstream decided when one was really tried (an attempt other than a breaker or rate skip). */
const upstreamTried = (r: RelayRecord): boolean => r.attempts.some((a) => !['EBREAKEROPEN', 'ERATELIMIT'].includes(a.error?.code ?? ''));

const dom = (a: string | null | undefined): string => {
  if (a === null || a === undefined) return '(none)';
  if (a === '') return '<>';
  return a.includes('@') ? a.slice(a.lastIndexOf('@') + 1).toLowerCase() : '(none)';
};

/** Every figure of the report, counted the obvious way (all in memory). */
function naive(all: AuditRecord[], opts: { since?: string; until?: string; by?: GroupBy; top?: number }) {
  const rs = all.filter((r) => (!opts.since || r.time >= opts.since) && (!opts.until || r.time < opts.until));
  const relays = rs.filter((r): r is RelayRecord => r.type === 'relay');
  const rejects = rs.filter((r) => r.type === 'reject');
  const deliveries = rs.filter((r) => r.type === 'delivery');
  const spoolEvents = rs.filter((r) => r.type === 'spool');
  const count = <T>(items: T[], key: (t: T) => string): Record<string, number> => {
    const m: Record<string, number> = {};
    for (const i of items) m[key(i)] = (m[key(i)] ?? 0) + 1;
    return m;
  };
  const outcomes = { delivered: 0, partial: 0, deferred: 0, rejected: 0, unknown: 0, aborted: 0, queued: 0, ...count(relays, (r) => r.outcome) };
  const decided = (tried: boolean) => {
    const rs = relays.filter((r) => upstreamTried(r) === tried);
    return {
      relay: rs.length,
      outcomes: { delivered: 0, partial: 0, deferred: 0, rejected: 0, unknown: 0, aborted: 0, queued: 0, ...count(rs, (r) => r.outcome) },
      failureClasses: count(
        rs.filter((r) => r.failure),
        (r) => r.failure!.class,
      ),
    };
  };
  const groups = new Map<
    string,
    {
      count: number;
      firstSeen: string;
      lastSeen: string;
      id: string;
      class: string;
      upstream: string | null;
      normalized: string;
      decidedBy: { upstream: number; mailtrail: number };
    }
  >();
  for (const r of relays) {
    const fp = errorFingerprint(r);
    if (!fp) continue;
    const g = groups.get(fp.key);
    const by = upstreamTried(r) ? { upstream: 1, mailtrail: 0 } : { upstream: 0, mailtrail: 1 };
    if (!g)
      groups.set(fp.key, {
        count: 1,
        firstSeen: r.time,
        lastSeen: r.time,
        id: r.id,
        class: fp.class,
        upstream: fp.upstream,
        normalized: fp.normalized,
        decidedBy: by,
      });
    else {
      g.count += 1;
      g.decidedBy.upstream += by.upstream;
      g.decidedBy.mailtrail += by.mailtrail;
      if (r.time < g.firstSeen) {
        g.firstSeen = r.time;
        g.id = r.id;
      }
      if (r.time > g.lastSeen) g.lastSeen = r.time;
    }
  }
  const latency = new Map<string, { total: number[]; connect: number[]; data: number[] }>();
  for (const r of relays) {
    if (!r.upstream || !upstreamTried(r)) continue;
    const l = latency.get(r.upstream.name) ?? { total: [], connect: [], data: [] };
    l.total.push(r.timing.totalMs);
    l.connect.push(r.timing.connectMs);
    l.data.push(r.timing.dataMs);
    latency.set(r.upstream.name, l);
  }
  const hours = new Map<string, { relay: number; delivered: number; queued: number; failed: number; rejects: number }>();
  for (const r of rs) {
    if (r.type !== 'relay' && r.type !== 'reject') continue;
    const h = hours.get(r.time.slice(0, 13)) ?? { relay: 0, delivered: 0, queued: 0, failed: 0, rejects: 0 };
    if (r.type === 'reject') h.rejects += 1;
    else {
      h.relay += 1;
      if (r.outcome === 'delivered') h.delivered += 1;
      else if (r.outcome === 'queued') h.queued += 1;
      else h.failed += 1;
    }
    hours.set(r.time.slice(0, 13), h);
  }
  const topOf = (keys: string[]) =>
    Object.entries(count(keys, (k) => k))
      .map(([key, c]) => ({ key, count: c, error: 0 }))
      .sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1))
      .slice(0, opts.top ?? 10);
  const by = opts.by ? naiveGroups(relays, rejects, opts.by) : null;
  return {
    rs,
    records: {
      relay: relays.length,
      reject: rejects.length,
      session: rs.filter((r) => r.type === 'session').length,
      alert: rs.filter((r) => r.type === 'alert').length,
      checkpoint: rs.filter((r) => r.type === 'checkpoint').length,
      delivery: deliveries.length,
      spool: spoolEvents.length,
      other: rs.filter((r) => !['relay', 'reject', 'session', 'alert', 'checkpoint', 'delivery', 'spool'].includes(r.type)).length,
    },
    outcomes,
    decidedBy: { upstream: decided(true), mailtrail: decided(false) },
    // Queued messages are left out: their fate is in later records.
    successRate: ratio(outcomes.delivered, relays.length - outcomes.queued),
    spool: {
      deliveries: { delivered: 0, partial: 0, deferred: 0, rejected: 0, unknown: 0, ...count(deliveries, (r) => r.outcome) },
      events: count(spoolEvents, (r) => r.event),
    },
    failureClasses: count(
      relays.filter((r) => r.failure),
      (r) => r.failure!.class,
    ),
    rejectClasses: count(rejects, (r) => (r as { class: string }).class),
    recipients: {
      accepted: 0,
      rejected: 0,
      deferred: 0,
      unknown: 0,
      queued: 0,
      ...count(
        relays.flatMap((r) => r.rcpt),
        (x) => x.status,
      ),
    },
    duplicateRisk: relays.filter((r) => r.duplicateRisk).length,
    duplicateOf: relays.filter((r) => r.duplicateOf).length,
    failovers: relays.filter((r) => new Set(r.attempts.map((a) => a.upstream)).size > 1).length,
    bytes: {
      received: relays.reduce((s, r) => s + r.message.size, 0),
      delivered: relays.filter((r) => r.outcome === 'delivered' || r.outcome === 'partial').reduce((s, r) => s + r.message.size, 0),
    },
    sessions: { count: rs.filter((r) => r.type === 'session').length, bytes: rs.reduce((s, r) => s + (r.type === 'session' ? r.bytes : 0), 0) },
    alerts: {
      fired: rs.filter((r) => r.type === 'alert' && r.state === 'fired').length,
      resolved: rs.filter((r) => r.type === 'alert' && r.state === 'resolved').length,
    },
    groups,
    latency,
    hours,
    senderDomains: topOf(relays.map((r) => dom(r.from))),
    recipientDomains: topOf(relays.flatMap((r) => r.rcpt.map((x) => dom(x.to)))),
    first: rs.map((r) => r.time).sort()[0] ?? null,
    last:
      rs
        .map((r) => r.time)
        .sort()
        .at(-1) ?? null,
    by,
  };
}

function naiveGroups(relays: RelayRecord[], rejects: Extract<AuditRecord, { type: 'reject' }>[], by: GroupBy) {
  const rows = new Map<string, { relay: number; outcomes: Record<string, number>; byMailtrail: number; rejects: number }>();
  const row = (k: string) => {
    let r = rows.get(k);
    if (!r)
      rows.set(
        k,
        (r = { relay: 0, outcomes: { delivered: 0, partial: 0, deferred: 0, rejected: 0, unknown: 0, aborted: 0, queued: 0 }, byMailtrail: 0, rejects: 0 }),
      );
    return r;
  };
  for (const r of relays) {
    const keys =
      by === 'upstream'
        ? [upstreamTried(r) ? r.upstream!.name : '(no upstream tried)']
        : by === 'sender-domain'
          ? [dom(r.from)]
          : by === 'recipient-domain'
            ? [...new Set(r.rcpt.map((x) => dom(x.to)))]
            : by === 'client'
              ? [r.client.ip]
              : by === 'instance'
                ? [(r as { instance?: string }).instance ?? '(none)']
                : [r.client.user ?? '(none)'];
    for (const k of keys.length ? keys : ['(none)']) {
      const g = row(k);
      g.relay += 1;
      g.outcomes[r.outcome]! += 1;
      if (!upstreamTried(r)) g.byMailtrail += 1;
    }
  }
  for (const r of rejects) {
    const k =
      by === 'upstream'
        ? '(no upstream tried)'
        : by === 'sender-domain'
          ? dom(r.from)
          : by === 'recipient-domain'
            ? dom(r.to)
            : by === 'client'
              ? r.client.ip
              : by === 'instance'
                ? ((r as { instance?: string }).instance ?? '(none)')
                : (r.client.user ?? '(none)');
    row(k).rejects += 1;
  }
  return [...rows.entries()].map(([key, g]) => ({
    key,
    relay: g.relay,
    outcomes: g.outcomes,
    successRate: ratio(g.outcomes.delivered!, g.relay - g.outcomes.queued!),
    byMailtrail: g.byMailtrail,
    rejects: g.rejects,
  }));
}

function compare(report: JsonReport, n: ReturnType<typeof naive>): void {
  expect(report.records).toEqual(n.records);
  expect(report.range.first).toBe(n.first);
  expect(report.range.last).toBe(n.last);
  expect(report.outcomes).toEqual(n.outcomes);
  expect(report.successRate).toBe(n.successRate);
  expect(report.deferrals).toBe(n.outcomes.deferred);
  expect(report.decidedBy).toEqual(n.decidedBy);
  expect(report.rejections).toEqual({
    byUpstream: n.decidedBy.upstream.outcomes.rejected,
    byMailtrail: n.decidedBy.mailtrail.outcomes.rejected,
    refusals: n.records.reject,
  });
  expect(report.failureClasses).toEqual(n.failureClasses);
  expect(report.rejectClasses).toEqual(n.rejectClasses);
  expect(report.recipients).toEqual(n.recipients);
  expect(report.spool.deliveries).toEqual(n.spool.deliveries);
  expect(Object.entries(report.spool.events).sort()).toEqual(Object.entries(n.spool.events).sort());
  expect(report.duplicateRisk).toBe(n.duplicateRisk);
  expect(report.duplicateOf).toBe(n.duplicateOf);
  expect(report.failovers).toBe(n.failovers);
  expect(report.bytes).toEqual(n.bytes);
  expect(report.sessions).toEqual(n.sessions);
  expect(report.alerts).toEqual(n.alerts);

  expect(report.errorGroups.other).toBe(0);
  const groups = [...report.errorGroups.groups].sort((a, b) => (a.key < b.key ? -1 : 1));
  const expected = [...n.groups.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  expect(groups.map((g) => [g.key, g.class, g.upstream, g.normalized, g.count, g.firstSeen, g.lastSeen, g.sample.id, g.decidedBy])).toEqual(
    expected.map(([key, g]) => [key, g.class, g.upstream, g.normalized, g.count, g.firstSeen, g.lastSeen, g.id, g.decidedBy]),
  );
  // Most frequent first.
  const counts = report.errorGroups.groups.map((g) => g.count);
  expect(counts).toEqual([...counts].sort((a, b) => b - a));

  expect(report.latency.relativeError).toBe(0.01);
  expect(report.latency.upstreams.map((l) => l.upstream)).toEqual([...n.latency.keys()].sort());
  for (const l of report.latency.upstreams) {
    const exact = n.latency.get(l.upstream)!;
    for (const [name, values] of [
      ['totalMs', exact.total],
      ['connectMs', exact.connect],
      ['dataMs', exact.data],
    ] as const) {
      const q = l[name];
      expect(q.count, `${l.upstream} ${name} count`).toBe(values.length);
      expect(q.min).toBe(Math.min(...values));
      expect(q.max).toBe(Math.max(...values));
      expect(q.mean).toBe(Math.round((values.reduce((s, v) => s + v, 0) / values.length) * 10) / 10);
      for (const [p, key] of [
        [0.5, 'p50'],
        [0.95, 'p95'],
        [0.99, 'p99'],
      ] as const) {
        const truth = exactPercentile(values, p);
        expect(Math.abs(q[key]! - truth), `${l.upstream} ${name} ${key}: ${q[key]} vs exact ${truth}`).toBeLessThanOrEqual(QUANTILE_RELATIVE_ERROR * truth);
      }
    }
  }

  expect(report.perHour).toEqual([...n.hours.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([hour, h]) => ({ hour, ...h })));
  expect(report.senderDomains.exact).toBe(true);
  expect(report.senderDomains.top).toEqual(n.senderDomains);
  expect(report.recipientDomains.exact).toBe(true);
  expect(report.recipientDomains.top).toEqual(n.recipientDomains);

  if (n.by) {
    expect(report.by!.other).toBeNull();
    const sort = <T extends { key: string }>(rows: readonly T[]) => [...rows].sort((a, b) => (a.key < b.key ? -1 : 1));
    expect(sort(report.by!.groups)).toEqual(sort(n.by));
  } else {
    expect(report.by).toBeNull();
  }
}

describe('mailtrail report', () => {
  let dir: string;
  let files: string[];
  let all: AuditRecord[];

  beforeAll(async () => {
    dir = await tempDir();
    // A realistic mixed trail (every outcome, failover, duplicates, refusals, sessions, alerts,
    // checkpoints) over several hours, split over a compressed rotated file and two plain ones...
    const generated = [...trailRecords({ records: 12_000, seed: 42, perSecond: 1, start: Date.parse('2026-11-25T06:00:00Z') })];
    // ...plus the odd cases by hand: null sender, a recipient without a domain, no upstream tried,
    // a refusal without a sender, a duplicate, a failover, a type this version does not know.
    const odd: object[] = [
      relay({
        time: '2026-11-25T06:00:00.500Z',
        from: '',
        rcpt: [
          { to: 'postmaster', status: 'accepted', reply: null },
          { to: 'Ana@Example.ORG', status: 'accepted', reply: null },
        ],
      }),
      relay({
        time: '2026-11-25T06:00:00.600Z',
        outcome: 'aborted',
        upstream: null,
        attempts: [],
        upstreamReply: null,
        clientReply: { code: 0, enhanced: null, text: '' },
        failure: {
          class: 'client_aborted',
          retryable: true,
          actor: 'sender',
          scope: 'message',
          detail: { rule: null, code: 'ECONNECTION', cause: null, timeoutType: null, message: null },
        },
        timing: { totalMs: 0, receiveMs: 0, waitMs: 0, connectMs: 0, envelopeMs: 0, dataMs: 0 },
      }),
      reject({
        time: '2026-11-25T06:00:00.700Z',
        from: null,
        to: null,
        command: 'AUTH',
        class: 'auth_failed',
        client: { ip: '10.9.9.9', port: 1, helo: null, user: null, tls: null, proxy: null },
      }),
      throttled({
        time: '2026-11-25T06:00:00.800Z',
        duplicateOf: '01M880124BS96NHR6QERZ7R4AD',
        attempts: [
          {
            upstream: 'ses',
            startedAt: '2026-11-25T06:00:00.700Z',
            ms: 5,
            phase: 'connecting',
            reply: null,
            error: { code: 'ESOCKET', cause: 'ECONNREFUSED', message: null },
            class: 'connect',
          },
          {
            upstream: 'backup',
            startedAt: '2026-11-25T06:00:00.750Z',
            ms: 40,
            phase: 'envelope',
            reply: { code: 454, enhanced: '4.7.0', text: 'Throttling failure: Maximum sending rate exceeded.' },
            error: null,
            class: 'throttled',
          },
        ],
      }),
      alert({ time: '2026-11-25T06:00:00.900Z', state: 'resolved' }),
      // Skipped without a connection (breaker open): not a latency sample of that upstream.
      throttled({
        time: '2026-11-25T06:00:00.950Z',
        upstream: { name: 'skipped-only', host: 'h', port: 25, tls: null, reusedConnection: null, queueId: null },
        upstreamReply: null,
        attempts: [
          {
            upstream: 'skipped-only',
            startedAt: '2026-11-25T06:00:00.950Z',
            ms: 0,
            phase: 'connecting',
            reply: null,
            error: { code: 'EBREAKEROPEN', cause: null, message: 'circuit breaker open' },
            class: 'upstream_unavailable',
          },
        ],
      }),
      // Refused by mailtrail itself after DATA (over limits.maxMessageSize): no upstream tried.
      oversize({ time: '2026-11-25T06:00:00.960Z' }),
      // The primary tried (refused), the backup skipped after it: the primary decided.
      throttled({
        time: '2026-11-25T06:00:00.970Z',
        outcome: 'deferred',
        upstream: { name: 'ses', host: 'h', port: 25, tls: null, reusedConnection: false, queueId: null },
        upstreamReply: null,
        attempts: [
          {
            upstream: 'ses',
            startedAt: '2026-11-25T06:00:00.900Z',
            ms: 70,
            phase: 'connecting',
            reply: null,
            error: { code: 'ESOCKET', cause: 'ECONNREFUSED', message: null },
            class: 'connect',
          },
          {
            upstream: 'backup',
            startedAt: '2026-11-25T06:00:00.970Z',
            ms: 0,
            phase: 'connecting',
            reply: null,
            error: { code: 'EBREAKEROPEN', cause: null, message: 'circuit breaker open' },
            class: 'upstream_unavailable',
          },
        ],
      }),
      { v: 1, type: 'future-type', time: '2026-11-25T06:00:01.000Z', id: 'X' },
    ];
    const records = [...odd, ...generated];
    files = [
      await writeTrail(dir, 'audit.log.2.gz', records.slice(0, 4000), { gzip: true }),
      await writeTrail(dir, 'audit.log.1', records.slice(4000, 9000)),
      join(dir, 'audit.log'),
    ];
    await writeFile(files[2]!, toLines(records.slice(9000)) + '{"v":1,"type":"relay","time":"2026-11-2');
    all = readRecords(files);
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('gives, for a mixed trail over several files, exactly the figures a direct count gives (percentiles within 1%)', async () => {
    const { code, report, stderr } = await runReport(files);
    expect(code).toBe(0);
    expect(report.records.relay).toBeGreaterThan(8000);
    // The trail really is mixed: every outcome, refusals, sessions, alerts, checkpoints, duplicates.
    for (const o of Object.values(report.outcomes)) expect(o).toBeGreaterThan(0);
    expect(
      report.records.reject * report.records.session * report.records.alert * report.records.checkpoint * report.duplicateOf * report.failovers,
    ).toBeGreaterThan(0);
    compare(report, naive(all, {}));
    expect(report.skipped).toEqual({ torn: 1, malformed: 0 });
    expect(stderr).toMatch(/skipped 1 torn last line/);
  });

  it.each(GROUP_BY)('gives exact totals per %s with --by', async (by) => {
    const { report } = await runReport([...files, '--by', by]);
    compare(report, naive(all, { by }));
    // Every relay record is in at least one group; each in exactly one unless grouped by recipient domain.
    const relays = report.by!.groups.reduce((s, g) => s + g.relay, 0);
    if (by === 'recipient-domain') expect(relays).toBeGreaterThanOrEqual(report.records.relay);
    else expect(relays).toBe(report.records.relay);
  });

  it('shows the refused recipient’s reply as the sample of a group whose first record is a partial delivery', async () => {
    const partial = relay({
      outcome: 'partial',
      rcpt: [
        { to: 'ana@example.org', status: 'accepted', reply: null },
        { to: 'gone@example.org', status: 'rejected', reply: { code: 550, enhanced: '5.1.1', text: '<gone@example.org>: User unknown' } },
      ],
      upstreamReply: { code: 250, enhanced: null, text: 'Ok: queued as Q1', phase: 'data' },
      failure: {
        class: 'recipient_rejected',
        retryable: false,
        actor: 'recipient',
        scope: 'recipient',
        detail: { rule: 'some-recipients-refused', code: null, cause: null, timeoutType: null, message: null },
      },
    });
    const file = await writeTrail(dir, 'partial.log', [partial]);
    const { report } = await runReport([file]);
    expect(report.errorGroups.groups.map((g) => g.sample.reply)).toEqual(['550 5.1.1 <gone@example.org>: User unknown']);
  });

  it('counts every refusal once: a reject record its `count`, a session record those it alone counts', async () => {
    const records = [
      reject({ class: 'relay_denied' }),
      reject({ class: 'connection_rate', command: 'CONNECT', count: 40 }),
      session({ refusals: { relay_denied: 7, too_many_errors: 1 }, refusalsSummarised: { relay_denied: 6 } }),
    ];
    const file = await writeTrail(dir, 'refusals.log', records);
    const { report } = await runReport([file, '--by', 'client']);
    expect(report.rejections.refusals).toBe(47);
    expect(report.rejectClasses).toEqual({ connection_rate: 40, relay_denied: 7 });
    expect(report.by!.groups.reduce((sum, g) => sum + g.rejects, 0)).toBe(47);
  });

  it('counts only the records inside --since and --until (until exclusive)', async () => {
    const since = '2026-11-25T08:00:00.000Z';
    const until = '2026-11-25T10:30:00.000Z';
    const { report } = await runReport([...files, '--since', '2026-11-25T08:00', '--until', '2026-11-25 10:30Z', '--by', 'upstream']);
    expect(report.range.since).toBe(since);
    expect(report.range.until).toBe(until);
    const n = naive(all, { since, until, by: 'upstream' });
    expect(n.rs.length).toBeGreaterThan(1000);
    expect(n.rs.length).toBeLessThan(all.length - 1000);
    compare(report, n);
  });

  it('takes --since as a duration back from now', async () => {
    // "now" is 2026-11-26T00:00:00Z in runReport.
    const { report } = await runReport([...files, '--since', '14h']);
    expect(report.range.since).toBe('2026-11-25T10:00:00.000Z');
    compare(report, naive(all, { since: '2026-11-25T10:00:00.000Z' }));
  });

  it('shows --top N rows of domains', async () => {
    const { report } = await runReport([...files, '--top', '3']);
    expect(report.recipientDomains.top).toHaveLength(3);
    expect(report.recipientDomains.top).toEqual(naive(all, { top: 3 }).recipientDomains);
  });

  it('reads the trail from standard input', async () => {
    const io = memoryIo();
    io.endStdin(readFileSync(files[1]!));
    expect(await reportCommand(['--json', '-'], io)).toBe(0);
    compare(JSON.parse(io.out()) as JsonReport, naive(readRecords([files[1]!]), {}));
  });

  it('prints the text report with every section', async () => {
    const io = memoryIo();
    expect(await reportCommand([...files, '--by', 'upstream'], io)).toBe(0);
    const text = io.out();
    for (const section of [
      'Grand totals',
      'Failure classes',
      'Refusals by class',
      'Error groups',
      'Latency per upstream',
      'Traffic per hour',
      'Top sender domains',
      'Top recipient domains',
      'By upstream',
    ]) {
      expect(text).toContain(section);
    }
    expect(text).toMatch(/success rate\s+\d+\.\d%/);
    expect(text).not.toMatch(/\u001b\[/);
  });

  describe('who decided', () => {
    // One of each: an upstream's 5xx, an upstream's 4xx, mailtrail's own 552 for a message over
    // limits.maxMessageSize, every upstream skipped (breaker open), and a refusal before DATA.
    const trail = [
      relay({
        time: '2026-11-25T10:00:01.000Z',
        outcome: 'rejected',
        upstreamReply: { code: 554, enhanced: '5.7.1', text: 'Message rejected: spam', phase: 'data' },
        clientReply: { code: 554, enhanced: '5.7.1', text: 'Message rejected: spam' },
        failure: {
          class: 'content_rejected',
          retryable: false,
          actor: 'sender',
          scope: 'message',
          detail: { rule: 'spam', code: null, cause: null, timeoutType: null, message: null },
        },
      }),
      throttled({ time: '2026-11-25T10:00:02.000Z' }),
      oversize({ time: '2026-11-25T10:00:03.000Z' }),
      throttled({
        time: '2026-11-25T10:00:04.000Z',
        upstreamReply: null,
        failure: {
          class: 'upstream_unavailable',
          retryable: true,
          actor: 'upstream',
          scope: 'connection',
          detail: { rule: 'breaker-open', code: 'EBREAKEROPEN', cause: null, timeoutType: null, message: 'circuit breaker open' },
        },
        attempts: [
          {
            upstream: 'ses',
            startedAt: '2026-11-25T10:00:04.000Z',
            ms: 0,
            phase: 'connecting',
            reply: null,
            error: { code: 'EBREAKEROPEN', cause: null, message: 'circuit breaker open' },
            class: 'upstream_unavailable',
          },
        ],
      }),
      reject({ time: '2026-11-25T10:00:05.000Z', to: 'x@example.net' }),
    ];

    it('counts rejections and deferrals by an upstream apart from mailtrail’s own, in --json', async () => {
      const file = await writeTrail(dir, 'decided.log', trail);
      const { report } = await runReport([file, '--by', 'upstream']);
      expect(report.rejections).toEqual({ byUpstream: 1, byMailtrail: 1, refusals: 1 });
      expect(report.decidedBy.upstream).toMatchObject({
        relay: 2,
        outcomes: { rejected: 1, deferred: 1 },
        failureClasses: { content_rejected: 1, throttled: 1 },
      });
      expect(report.decidedBy.mailtrail).toMatchObject({
        relay: 2,
        outcomes: { rejected: 1, deferred: 1 },
        failureClasses: { too_large: 1, upstream_unavailable: 1 },
      });
      const groups = Object.fromEntries(report.errorGroups.groups.map((g) => [g.class, g]));
      expect(groups.too_large).toMatchObject({
        upstream: null,
        decidedBy: { upstream: 0, mailtrail: 1 },
        normalized: 'message exceeds limits.maxMessageSize (<n> bytes)',
      });
      expect(groups.upstream_unavailable).toMatchObject({ upstream: 'ses', decidedBy: { upstream: 0, mailtrail: 1 } });
      expect(groups.content_rejected).toMatchObject({ upstream: 'ses', decidedBy: { upstream: 1, mailtrail: 0 } });
      const rows = Object.fromEntries(report.by!.groups.map((g) => [g.key, g]));
      expect(Object.keys(rows).sort()).toEqual(['(no upstream tried)', 'ses']);
      expect(rows.ses).toMatchObject({ relay: 2, outcomes: { rejected: 1, deferred: 1 }, byMailtrail: 0, rejects: 0 });
      expect(rows['(no upstream tried)']).toMatchObject({ relay: 2, outcomes: { rejected: 1, deferred: 1 }, byMailtrail: 2, rejects: 1 });
    });

    it('labels them apart in the text report: totals, failure classes, error groups and --by', async () => {
      const file = await writeTrail(dir, 'decided.log', trail);
      const io = memoryIo();
      expect(await reportCommand([file, '--by', 'sender-domain'], io)).toBe(0);
      const text = io.out();
      expect(text).toMatch(/^ {2}decided by an upstream +2 {2}an upstream was tried/m);
      expect(text).toMatch(/^ {2}decided by mailtrail +2 {2}no upstream tried/m);
      expect(text).toMatch(/^ {2}deferrals +2 {2}client told to retry \(4xx\): 1 by an upstream, 1 by mailtrail/m);
      expect(text).toMatch(/^ {2}rejected by an upstream +1 {2}5xx from an upstream that was tried$/m);
      expect(text).toMatch(/^ {2}rejected by mailtrail +1 {2}after DATA, no upstream tried/m);
      expect(text).toMatch(/^ {2}refused by mailtrail +1 {2}before relaying: reject records/m);
      expect(text).not.toContain('rejected by upstream ');
      const section = (title: string): string => text.slice(text.indexOf(title)).split('\n\n')[0]!;
      expect(section('Failure classes decided by an upstream')).not.toMatch(/too_large|upstream_unavailable/);
      expect(section('Failure classes decided by mailtrail')).toMatch(/too_large +1[\s\S]*upstream_unavailable +1/);
      expect(text).toMatch(/too_large {2}mailtrail \(no upstream tried\) {2}message exceeds limits\.maxMessageSize \(<n> bytes\)/);
      expect(text).toMatch(/upstream_unavailable {2}mailtrail \(ses not tried\) {2}EBREAKEROPEN/);
      expect(text).toMatch(/content_rejected {2}ses {2}554 5\.7\.1/);
      // By sender domain: 4 relayed, 2 of them decided by mailtrail, and the refusal.
      expect(text).toMatch(/^ {2}example\.com +4 +0 +0 +2 +2 +0 +0 +0 +0% +2 +1$/m);
      expect(text).toContain('not tried: relayed records mailtrail decided without trying an upstream');
    });
  });

  it('refuses an unknown --by with the usage (exit 2)', async () => {
    const io = memoryIo();
    expect(await runTrailCommand('report', [...files, '--by', 'planet'], io)).toBe(2);
    expect(io.err()).toMatch(/--by is one of upstream, sender-domain, recipient-domain, client, user/);
    expect(io.err()).toContain('Usage: mailtrail report');
  });

  it('says which file is missing (exit 1)', async () => {
    const io = memoryIo();
    expect(await runTrailCommand('report', [join(dir, 'nope.log')], io)).toBe(1);
    expect(io.err()).toMatch(/no such file: .*nope\.log/);
  });
});

describe('the latency histogram', () => {
  it('gives every percentile within 1% of the exact nearest-rank value, exactly below 100 ms', () => {
    let seed = 3;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const sets: Record<string, number[]> = {
      small: Array.from({ length: 5000 }, () => Math.floor(rand() * 100)),
      lognormal: Array.from({ length: 20000 }, () => Math.round(Math.exp(4 + 1.5 * Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand())))),
      wide: Array.from({ length: 20000 }, () => Math.floor(10 ** (rand() * 7))),
      zeros: [...Array.from({ length: 900 }, () => 0), ...Array.from({ length: 100 }, () => 1 + Math.floor(rand() * 5000))],
      one: [42],
    };
    for (const [name, values] of Object.entries(sets)) {
      const h = new LogHistogram();
      for (const v of values) h.add(v);
      for (let q = 0.01; q <= 1.0001; q += 0.01) {
        const truth = exactPercentile(values, Math.min(q, 1));
        const est = h.quantile(Math.min(q, 1))!;
        if (truth < 100) expect(est, `${name} q=${q.toFixed(2)}`).toBe(truth);
        else expect(Math.abs(est - truth), `${name} q=${q.toFixed(2)}: ${est} vs ${truth}`).toBeLessThanOrEqual(0.01 * truth);
      }
    }
  });

  it('is empty without values and ignores what is not a duration', () => {
    const h = new LogHistogram();
    h.add(-1);
    h.add(Number.NaN);
    expect(h.summary()).toEqual({ count: 0, min: null, max: null, mean: null, p50: null, p95: null, p99: null });
  });
});

describe('the top-K counter (Space-Saving)', () => {
  it('is exact while fewer distinct keys than its capacity were seen', () => {
    const s = new SpaceSaving(10);
    for (const k of ['a', 'b', 'a', 'c', 'a', 'b']) s.add(k);
    expect(s.exact).toBe(true);
    expect(s.top(2)).toEqual([
      { key: 'a', count: 3, error: 0 },
      { key: 'b', count: 2, error: 0 },
    ]);
  });

  it('never undercounts, bounds its overestimate, and keeps every key above total/capacity', () => {
    let seed = 11;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const truth = new Map<string, number>();
    const s = new SpaceSaving(50);
    for (let i = 0; i < 50_000; i++) {
      // Zipf-like: a few heavy keys, a long tail of 5,000.
      const key = `k${Math.floor(5000 * rand() ** 4)}`;
      truth.set(key, (truth.get(key) ?? 0) + 1);
      s.add(key);
    }
    expect(s.exact).toBe(false);
    const tracked = s.top(50);
    for (const e of tracked) {
      expect(e.count).toBeGreaterThanOrEqual(truth.get(e.key)!);
      expect(e.count - e.error).toBeLessThanOrEqual(truth.get(e.key)!);
    }
    for (const [key, n] of truth) if (n > 50_000 / 50) expect(tracked.map((e) => e.key)).toContain(key);
  });
});
