/**
 * The console's statistics (`GET /api/v1/stats`, docs/api.md): per minute over the last hour, per
 * 15 minutes over the last day, of messages by outcome, success rate, failures by class and latency
 * p50/p95 per upstream. Kept per minute and per SMTP user, so a console user limited to some SMTP
 * users sees the counts of their mail only. Fed live by the bus (relay and reject records as they are
 * written); after a restart the day before it is filled in once from the search index (the records
 * written before this process started), so the charts do not start empty.
 */
import type { RejectRecord, RelayRecord } from '../audit/records.js';
import type { RelayBus } from '../observe/relay-events.js';
import type { Scope } from './search/sql-query.js';

/** Upper bounds (ms) of the latency histogram's bins; quantiles are interpolated within a bin. */
const LATENCY_BOUNDS = [10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 20_000, 30_000, 60_000, 120_000];
const MINUTE = 60_000;
const DAY_MINUTES = 24 * 60;

/** One record as the statistics see it. */
export interface StatsInput {
  readonly time: number;
  readonly type: string;
  readonly user: string | null;
  readonly outcome: string;
  readonly class: string | null;
  readonly upstream: string | null;
  readonly totalMs: number | null;
  /** Refusals the record stands for (a `connection_rate` reject counts many). */
  readonly count?: number;
}

interface Counts {
  outcomes: Record<string, number>;
  classes: Record<string, number>;
  /** Per upstream: one count per bin of LATENCY_BOUNDS, and one for above the last. */
  latency: Record<string, number[]>;
}

/** Minute → SMTP user ('' for none) → counts: the form the worker sends the history in. */
export type StatsDump = [minute: number, user: string, counts: Counts][];

export interface StatsPoint {
  /** Start of the interval (ISO). */
  readonly time: string;
  readonly outcomes: Readonly<Record<string, number>>;
  /** Relayed messages (refusals not included). */
  readonly messages: number;
  /** (delivered + partial) / relayed; null without messages. */
  readonly successRate: number | null;
  readonly classes: Readonly<Record<string, number>>;
  readonly latency: Readonly<Record<string, { readonly count: number; readonly p50: number; readonly p95: number }>>;
}

export interface StatsView {
  readonly range: '1h' | '24h';
  readonly stepSeconds: number;
  readonly from: string;
  readonly to: string;
  readonly points: readonly StatsPoint[];
  /** When the live counts began; earlier points come from the index, if it had them. */
  readonly liveSince: string;
  readonly historyLoaded: boolean;
}

export class StatsBuckets {
  readonly #minutes = new Map<number, Map<string, Counts>>();

  /** Adds one record. */
  add(input: StatsInput): void {
    const minute = Math.floor(input.time / MINUTE);
    let users = this.#minutes.get(minute);
    if (!users) {
      users = new Map();
      this.#minutes.set(minute, users);
    }
    const key = input.user ?? '';
    let c = users.get(key);
    if (!c) {
      c = { outcomes: {}, classes: {}, latency: {} };
      users.set(key, c);
    }
    const n = input.count ?? 1;
    c.outcomes[input.outcome] = (c.outcomes[input.outcome] ?? 0) + n;
    if (input.class) c.classes[input.class] = (c.classes[input.class] ?? 0) + n;
    if (input.type === 'relay' && input.upstream && input.totalMs !== null) {
      const bins = (c.latency[input.upstream] ??= new Array<number>(LATENCY_BOUNDS.length + 1).fill(0));
      const i = LATENCY_BOUNDS.findIndex((b) => input.totalMs! <= b);
      bins[i === -1 ? LATENCY_BOUNDS.length : i]! += 1;
    }
  }

  /** Forgets minutes older than a day before `now`. */
  prune(now: number): void {
    const oldest = Math.floor(now / MINUTE) - DAY_MINUTES;
    for (const minute of this.#minutes.keys()) if (minute < oldest) this.#minutes.delete(minute);
  }

  dump(): StatsDump {
    const out: StatsDump = [];
    for (const [minute, users] of this.#minutes) for (const [user, counts] of users) out.push([minute, user, counts]);
    return out;
  }

  /** Adds counts made elsewhere (the index's history). */
  merge(dump: StatsDump): void {
    for (const [minute, user, counts] of dump) {
      let users = this.#minutes.get(minute);
      if (!users) {
        users = new Map();
        this.#minutes.set(minute, users);
      }
      const into = users.get(user) ?? { outcomes: {}, classes: {}, latency: {} };
      users.set(user, into);
      addCounts(into, counts);
    }
  }

  /** The counts of the last `minutes` minutes up to `now`, of the mail `scope` allows. */
  sum(minutes: number, scope: Scope, now: number): Counts {
    const last = Math.floor(now / MINUTE);
    const allowed = scope === null ? null : new Set(scope.users);
    const sum: Counts = { outcomes: {}, classes: {}, latency: {} };
    for (let m = last - minutes + 1; m <= last; m++) {
      for (const [user, counts] of this.#minutes.get(m) ?? []) if (allowed === null || allowed.has(user)) addCounts(sum, counts);
    }
    return sum;
  }

  /** The points of `range` up to `now`, counting only the mail `scope` allows. */
  view(range: '1h' | '24h', scope: Scope, now: number): StatsPoint[] {
    const stepMinutes = range === '1h' ? 1 : 15;
    const steps = range === '1h' ? 60 : 96;
    const last = Math.floor(now / MINUTE / stepMinutes) * stepMinutes;
    const allowed = scope === null ? null : new Set(scope.users);
    const points: StatsPoint[] = [];
    for (let s = steps - 1; s >= 0; s--) {
      const start = last - s * stepMinutes;
      const sum: Counts = { outcomes: {}, classes: {}, latency: {} };
      for (let m = start; m < start + stepMinutes; m++) {
        for (const [user, counts] of this.#minutes.get(m) ?? []) {
          if (allowed === null || allowed.has(user)) addCounts(sum, counts);
        }
      }
      points.push(point(start * MINUTE, sum));
    }
    return points;
  }
}

/** The statistics' view of a relay or reject record from the bus. */
export function statsInputOf(record: RelayRecord | RejectRecord): StatsInput {
  if (record.type === 'reject') {
    return {
      time: Date.parse(record.time),
      type: 'reject',
      user: record.client?.user ?? null,
      outcome: 'refused',
      class: record.class,
      upstream: null,
      totalMs: null,
      count: record.count ?? 1,
    };
  }
  return {
    time: Date.parse(record.time),
    type: 'relay',
    user: record.client?.user ?? null,
    outcome: record.outcome,
    class: record.failure?.class ?? null,
    upstream: record.upstream?.name ?? null,
    totalMs: record.timing?.totalMs ?? null,
  };
}

function addCounts(into: Counts, from: Counts): void {
  for (const [k, n] of Object.entries(from.outcomes)) into.outcomes[k] = (into.outcomes[k] ?? 0) + n;
  for (const [k, n] of Object.entries(from.classes)) into.classes[k] = (into.classes[k] ?? 0) + n;
  for (const [k, bins] of Object.entries(from.latency)) {
    const target = (into.latency[k] ??= new Array<number>(LATENCY_BOUNDS.length + 1).fill(0));
    bins.forEach((n, i) => (target[i]! += n));
  }
}

function point(start: number, c: Counts): StatsPoint {
  const messages = Object.entries(c.outcomes)
    .filter(([o]) => o !== 'refused')
    .reduce((s, [, n]) => s + n, 0);
  const good = (c.outcomes.delivered ?? 0) + (c.outcomes.partial ?? 0);
  const latency: Record<string, { count: number; p50: number; p95: number }> = {};
  for (const [upstream, bins] of Object.entries(c.latency)) {
    const count = bins.reduce((s, n) => s + n, 0);
    if (count > 0) latency[upstream] = { count, p50: quantile(bins, count, 0.5), p95: quantile(bins, count, 0.95) };
  }
  return {
    time: new Date(start).toISOString(),
    outcomes: c.outcomes,
    messages,
    successRate: messages === 0 ? null : Math.round((good / messages) * 10_000) / 10_000,
    classes: c.classes,
    latency,
  };
}

/** The q-quantile (ms) of a histogram, interpolated linearly within its bin. */
function quantile(bins: readonly number[], count: number, q: number): number {
  const target = q * count;
  let seen = 0;
  for (let i = 0; i < bins.length; i++) {
    const n = bins[i]!;
    if (n > 0 && seen + n >= target) {
      const low = i === 0 ? 0 : LATENCY_BOUNDS[i - 1]!;
      const high = LATENCY_BOUNDS[i] ?? low * 2;
      return Math.round(low + ((target - seen) / n) * (high - low));
    }
    seen += n;
  }
  return LATENCY_BOUNDS[LATENCY_BOUNDS.length - 1]!;
}

/** The counts of recent minutes per upstream: messages a minute and latency, for `GET /api/v1/upstreams`. */
export function upstreamActivity(buckets: StatsBuckets, scope: Scope, now: number): Map<string, { perMinute: number; p50: number | null; p95: number | null }> {
  const rate = buckets.view('1h', scope, now).slice(-5);
  const out = new Map<string, { perMinute: number; p50: number | null; p95: number | null }>();
  for (const p of rate) {
    for (const [upstream, l] of Object.entries(p.latency)) {
      const o = out.get(upstream) ?? { perMinute: 0, p50: null, p95: null };
      o.perMinute += l.count / rate.length;
      out.set(upstream, o);
    }
  }
  const window = buckets.sum(15, scope, now);
  for (const [upstream, bins] of Object.entries(window.latency)) {
    const count = bins.reduce((s, n) => s + n, 0);
    const o = out.get(upstream) ?? { perMinute: 0, p50: null, p95: null };
    if (count > 0) {
      o.p50 = quantile(bins, count, 0.5);
      o.p95 = quantile(bins, count, 0.95);
    }
    out.set(upstream, { ...o, perMinute: Math.round(o.perMinute * 100) / 100 });
  }
  return out;
}

/**
 * The statistics of this process: live from the bus, and the day before the process started from the
 * index once it has been read (`loadHistory`).
 */
export class LiveStats {
  readonly buckets = new StatsBuckets();
  readonly startedAt: number;
  #historyLoaded = false;
  readonly #unsubscribe: (() => void)[];

  constructor(bus: RelayBus, now: number = Date.now()) {
    this.startedAt = now;
    const add = (r: RelayRecord | RejectRecord): void => {
      this.buckets.add(statsInputOf(r));
      this.buckets.prune(Date.now());
    };
    this.#unsubscribe = [bus.subscribe('relay', add), bus.subscribe('reject', add)];
  }

  get historyLoaded(): boolean {
    return this.#historyLoaded;
  }

  /** Adds the day before the start, once. */
  async loadHistory(load: (since: number, until: number) => Promise<StatsDump>): Promise<void> {
    if (this.#historyLoaded) return;
    this.buckets.merge(await load(this.startedAt - 24 * 3_600_000, this.startedAt));
    this.#historyLoaded = true;
  }

  view(range: '1h' | '24h', scope: Scope, now: number = Date.now()): StatsView {
    const points = this.buckets.view(range, scope, now);
    const step = range === '1h' ? 60 : 900;
    return {
      range,
      stepSeconds: step,
      from: points[0]!.time,
      to: new Date(Date.parse(points[points.length - 1]!.time) + step * 1000).toISOString(),
      points,
      liveSince: new Date(this.startedAt).toISOString(),
      historyLoaded: this.#historyLoaded,
    };
  }

  close(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
  }
}
