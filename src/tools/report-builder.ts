/**
 * The figures of `mailtrail report`, built in one pass over the records in bounded memory: what
 * pflogsumm gives Postfix users, for a relay. Every figure is a plain count over the records in the
 * time range, except where the bound on memory makes it an estimate, and then the output says so:
 *
 * - latency percentiles: log-bucket histograms, within 1% of the exact value (quantiles.ts);
 * - top sender / recipient domains: Space-Saving over 10,000 domains, exact while fewer distinct
 *   domains were seen, otherwise each count carries its maximum overestimate (top-k.ts);
 * - error groups and `--by` groups: the first 10,000 distinct keys are counted exactly, later new
 *   keys are summed under "other" (the output says how many records went there);
 * - traffic per hour: one row per hour that has records (bounded by the time span, not the volume).
 *
 * Definitions (docs: README "Reading the trail"):
 * - success rate = delivered ÷ relay records, leaving out those `queued` into the spool (their fate is
 *   in later `delivery` and `spool` records, counted under "spool"); partial is not a success: some
 *   recipients were refused;
 * - who decided a relay record: an upstream when at least one was actually tried (its reply, or its
 *   failure: refused connection, timeout...), mailtrail when none was (no upstream: a message over
 *   limits.maxMessageSize, a trail it could not write, the client gone mid-DATA; or every upstream of
 *   the route skipped without a connection: breaker open, sending rate). Rejections, deferrals and
 *   failure classes are counted per decider, so mailtrail's own refusals never read as an upstream's;
 *   reject records (refusals before relaying) are counted apart from both;
 * - sender domains count messages (relay records); recipient domains count recipients;
 * - a relay record counts in every `--by recipient-domain` group one of its recipients is in;
 * - latency covers relay records an upstream decided, per that upstream: not those mailtrail decided
 *   (no upstream, or every one skipped without a connection: EBREAKEROPEN / ERATELIMIT, 0 ms);
 * - `--by upstream` groups relay records by the upstream that decided, and those mailtrail decided
 *   (with the reject records) under "(no upstream tried)".
 */
import { instanceOf } from './trail-instances.js';
import type { AlertRecord, AuditRecord, DeliveryRecord, RejectRecord, RelayRecord, SessionRecord, SpoolRecord } from '../audit/records.js';
import { RELAY_OUTCOMES, type DeliveryOutcome, type RelayOutcome } from '../classify/failure-class.js';
import { errorFingerprint, errorReply } from '../observe/error-fingerprint.js';
import { LogHistogram, QUANTILE_RELATIVE_ERROR, type QuantileSummary } from './quantiles.js';
import { SpaceSaving, type TopEntry } from './top-k.js';
import { inRange, type TimeRange } from './time-range.js';
import { ERR } from '../error-codes.js';

export const GROUP_BY = ['upstream', 'sender-domain', 'recipient-domain', 'client', 'user', 'instance'] as const;
export type GroupBy = (typeof GROUP_BY)[number];

export const OUTCOMES: readonly RelayOutcome[] = RELAY_OUTCOMES;
export const DELIVERY_OUTCOMES: readonly DeliveryOutcome[] = ['delivered', 'partial', 'deferred', 'rejected', 'unknown'];

/** Distinct keys counted exactly in error groups and `--by` groups; later new keys go to "other". */
export const MAX_GROUPS = 10_000;
/** Domains tracked by Space-Saving. */
export const DOMAIN_CAPACITY = 10_000;
/** Distinct upstream names given latency histograms (17.6 KB × 3 each); more go to "other". */
export const MAX_LATENCY_UPSTREAMS = 200;
/** Placeholder key when a record has no value for the grouping (no upstream tried, no AUTH user...). */
export const NONE = '(none)';
export const OTHER = '(other)';
/** The `--by upstream` key of records no upstream was tried for (mailtrail decided, or refused the client). */
export const NO_UPSTREAM = '(no upstream tried)';

/** Who decided a relay record's outcome (see the definitions above). */
export type Decider = 'upstream' | 'mailtrail';

export interface ReportOptions {
  readonly range: TimeRange;
  readonly by: GroupBy | null;
  /** Rows in the top-domain lists. */
  readonly top: number;
}

export type OutcomeCounts = Record<RelayOutcome, number>;

export interface ErrorGroup {
  readonly key: string;
  readonly class: string;
  readonly upstream: string | null;
  readonly normalized: string;
  readonly count: number;
  readonly firstSeen: string;
  readonly lastSeen: string;
  /** The first record of the group: its id and the upstream's reply (or the error, when none came). */
  readonly sample: { readonly id: string; readonly reply: string };
  /** The group's records by who decided them (an upstream skipped by its breaker: mailtrail). */
  readonly decidedBy: Record<Decider, number>;
}

export interface GroupRow {
  readonly key: string;
  readonly relay: number;
  readonly outcomes: OutcomeCounts;
  readonly successRate: number | null;
  /** Relay records of the group that mailtrail decided without trying an upstream (in `outcomes` too). */
  readonly byMailtrail: number;
  /** Reject records (mailtrail's own refusals) attributed to the group. */
  readonly rejects: number;
}

export interface HourRow {
  /** `YYYY-MM-DDTHH` (UTC). */
  readonly hour: string;
  readonly relay: number;
  readonly delivered: number;
  /** Relay records taken into the spool. */
  readonly queued: number;
  /** Relay records with any other outcome. */
  readonly failed: number;
  readonly rejects: number;
}

export interface LatencyRow {
  readonly upstream: string;
  readonly count: number;
  readonly totalMs: QuantileSummary;
  readonly connectMs: QuantileSummary;
  readonly dataMs: QuantileSummary;
}

export interface DomainList {
  /** True when every count is exact (fewer distinct domains than the tracking capacity). */
  readonly exact: boolean;
  readonly total: number;
  readonly top: readonly TopEntry[];
}

/** The relay records one decider decided. */
export interface DecidedCounts {
  readonly relay: number;
  readonly outcomes: OutcomeCounts;
  readonly failureClasses: Record<string, number>;
}

export interface Report {
  readonly range: { readonly since: string | null; readonly until: string | null; readonly first: string | null; readonly last: string | null };
  /** Records in the range, by type (`other`: types this version does not know). */
  readonly records: {
    readonly relay: number;
    readonly reject: number;
    readonly session: number;
    readonly alert: number;
    readonly checkpoint: number;
    readonly delivery: number;
    readonly spool: number;
    readonly other: number;
  };
  readonly outcomes: OutcomeCounts;
  readonly successRate: number | null;
  readonly deferrals: number;
  /** Relay records split by who decided them: `outcomes` and `failureClasses` are their sums. */
  readonly decidedBy: Record<Decider, DecidedCounts>;
  readonly rejections: {
    /** Relay records an upstream rejected (a 5xx from an upstream that was tried). */
    readonly byUpstream: number;
    /** Relay records mailtrail rejected itself after DATA, no upstream tried (over limits.maxMessageSize). */
    readonly byMailtrail: number;
    /** Reject records: clients mailtrail refused before relaying (policy or protocol). */
    readonly refusals: number;
  };
  readonly failureClasses: Record<string, number>;
  readonly rejectClasses: Record<string, number>;
  readonly recipients: { readonly accepted: number; readonly rejected: number; readonly deferred: number; readonly unknown: number; readonly queued: number };
  /** Messages taken into the spool: delivery attempts by outcome, and ends and changes by event. */
  readonly spool: { readonly deliveries: Record<DeliveryOutcome, number>; readonly events: Record<string, number> };
  readonly duplicateRisk: number;
  readonly duplicateOf: number;
  readonly failovers: number;
  readonly bytes: { readonly received: number; readonly delivered: number };
  readonly sessions: { readonly count: number; readonly bytes: number };
  readonly alerts: { readonly fired: number; readonly resolved: number };
  readonly errorGroups: { readonly groups: readonly ErrorGroup[]; readonly other: number };
  readonly latency: { readonly relativeError: number; readonly upstreams: readonly LatencyRow[]; readonly other: number };
  readonly perHour: readonly HourRow[];
  readonly senderDomains: DomainList;
  readonly recipientDomains: DomainList;
  readonly by: { readonly key: GroupBy; readonly groups: readonly GroupRow[]; readonly other: GroupRow | null } | null;
}

interface MutableGroup {
  relay: number;
  outcomes: OutcomeCounts;
  byMailtrail: number;
  rejects: number;
}

interface MutableDecided {
  relay: number;
  outcomes: OutcomeCounts;
  failureClasses: Map<string, number>;
}

interface MutableErrorGroup {
  class: string;
  upstream: string | null;
  normalized: string;
  count: number;
  firstSeen: string;
  lastSeen: string;
  sample: { id: string; reply: string };
  decidedBy: Record<Decider, number>;
}

interface HourCounts {
  relay: number;
  delivered: number;
  queued: number;
  failed: number;
  rejects: number;
}

interface Latency {
  total: LogHistogram;
  connect: LogHistogram;
  data: LogHistogram;
}

export class ReportBuilder {
  readonly #opts: ReportOptions;
  #first: string | null = null;
  #last: string | null = null;
  #records = { relay: 0, reject: 0, session: 0, alert: 0, checkpoint: 0, delivery: 0, spool: 0, other: 0 };
  #outcomes = zeroOutcomes();
  #decided: Record<Decider, MutableDecided> = { upstream: zeroDecided(), mailtrail: zeroDecided() };
  #failureClasses = new Map<string, number>();
  #rejectClasses = new Map<string, number>();
  /** Refusals: each reject record's `count`, plus those a session record counts without a record. */
  #refusals = 0;
  #recipients = { accepted: 0, rejected: 0, deferred: 0, unknown: 0, queued: 0 };
  #deliveries: Record<DeliveryOutcome, number> = { delivered: 0, partial: 0, deferred: 0, rejected: 0, unknown: 0 };
  #spoolEvents = new Map<string, number>();
  #duplicateRisk = 0;
  #duplicateOf = 0;
  #failovers = 0;
  #bytes = { received: 0, delivered: 0 };
  #sessions = { count: 0, bytes: 0 };
  #alerts = { fired: 0, resolved: 0 };
  #errors = new Map<string, MutableErrorGroup>();
  #errorsOther = 0;
  #latency = new Map<string, Latency>();
  #latencyOther = 0;
  #hours = new Map<string, HourCounts>();
  #senderDomains = new SpaceSaving(DOMAIN_CAPACITY);
  #recipientDomains = new SpaceSaving(DOMAIN_CAPACITY);
  #groups = new Map<string, MutableGroup>();
  #groupsOther: MutableGroup | null = null;

  constructor(opts: ReportOptions) {
    this.#opts = opts;
  }

  /** Counts one record (ignored when outside the time range). */
  add(record: AuditRecord): void {
    const time = (record as { time?: unknown }).time;
    if (!inRange(time, this.#opts.range)) return;
    if (typeof time === 'string') {
      if (this.#first === null || time < this.#first) this.#first = time;
      if (this.#last === null || time > this.#last) this.#last = time;
    }
    switch (record.type) {
      case 'relay':
        return this.#relay(record);
      case 'reject':
        return this.#reject(record);
      case 'session':
        return this.#session(record);
      case 'alert':
        return this.#alert(record);
      case 'delivery':
        return this.#delivery(record);
      case 'spool':
        return this.#spool(record);
      default:
        if ((record as { type: string }).type === 'checkpoint') this.#records.checkpoint += 1;
        else this.#records.other += 1;
    }
  }

  #relay(r: RelayRecord): void {
    this.#records.relay += 1;
    const outcome = r.outcome;
    const decider = deciderOf(r);
    const decided = this.#decided[decider];
    decided.relay += 1;
    if (outcome in this.#outcomes) {
      this.#outcomes[outcome] += 1;
      decided.outcomes[outcome] += 1;
    }
    if (r.failure) {
      increment(this.#failureClasses, r.failure.class);
      increment(decided.failureClasses, r.failure.class);
    }
    for (const rc of r.rcpt ?? []) {
      if (rc.status in this.#recipients) this.#recipients[rc.status] += 1;
      this.#recipientDomains.add(domainOf(rc.to));
    }
    this.#senderDomains.add(domainOf(r.from));
    if (r.duplicateRisk) this.#duplicateRisk += 1;
    if (r.duplicateOf) this.#duplicateOf += 1;
    if (new Set((r.attempts ?? []).map((a) => a.upstream)).size > 1) this.#failovers += 1;
    const size = r.message?.size ?? 0;
    this.#bytes.received += size;
    if (outcome === 'delivered' || outcome === 'partial') this.#bytes.delivered += size;
    this.#errorGroup(r, decider);
    if (decider === 'upstream') this.#latencyOf(r);
    const hour = this.#hour(r.time);
    if (hour) {
      hour.relay += 1;
      if (outcome === 'delivered') hour.delivered += 1;
      else if (outcome === 'queued') hour.queued += 1;
      else hour.failed += 1;
    }
    if (this.#opts.by)
      for (const key of relayKeys(r, this.#opts.by))
        this.#countGroup(key, (g) => {
          g.relay += 1;
          if (outcome in g.outcomes) g.outcomes[outcome] += 1;
          if (decider === 'mailtrail') g.byMailtrail += 1;
        });
  }

  #delivery(r: DeliveryRecord): void {
    this.#records.delivery += 1;
    if (r.outcome in this.#deliveries) this.#deliveries[r.outcome] += 1;
  }

  #spool(r: SpoolRecord): void {
    this.#records.spool += 1;
    increment(this.#spoolEvents, String(r.event));
  }

  #reject(r: RejectRecord): void {
    this.#records.reject += 1;
    // Trails written before `count` existed have one refusal per record.
    this.#refused(r, r.class, r.count ?? 1);
  }

  #session(r: SessionRecord): void {
    this.#records.session += 1;
    this.#sessions.count += 1;
    this.#sessions.bytes += r.bytes ?? 0;
    // Refusals past limits.recordedRefusals of the connection have no reject record: they count here.
    for (const [cls, n] of Object.entries(r.refusalsSummarised ?? {})) this.#refused({ ...r, from: null, to: null }, cls, n ?? 0);
  }

  #refused(r: RefusalFacts, cls: string, n: number): void {
    this.#refusals += n;
    this.#rejectClasses.set(cls, (this.#rejectClasses.get(cls) ?? 0) + n);
    const hour = this.#hour(r.time);
    if (hour) hour.rejects += n;
    if (this.#opts.by) this.#countGroup(rejectKey(r, this.#opts.by), (g) => void (g.rejects += n));
  }

  #alert(r: AlertRecord): void {
    this.#records.alert += 1;
    if (r.state === 'fired') this.#alerts.fired += 1;
    else if (r.state === 'resolved') this.#alerts.resolved += 1;
  }

  #errorGroup(r: RelayRecord, decider: Decider): void {
    const fp = errorFingerprint(r);
    if (!fp) return;
    const g = this.#errors.get(fp.key);
    if (g) {
      g.count += 1;
      g.decidedBy[decider] += 1;
      if (r.time < g.firstSeen) {
        g.firstSeen = r.time;
        g.sample = sampleOf(r);
      }
      if (r.time > g.lastSeen) g.lastSeen = r.time;
      return;
    }
    if (this.#errors.size >= MAX_GROUPS) {
      this.#errorsOther += 1;
      return;
    }
    const decidedBy = { upstream: 0, mailtrail: 0 };
    decidedBy[decider] = 1;
    this.#errors.set(fp.key, {
      class: fp.class,
      upstream: fp.upstream,
      normalized: fp.normalized,
      count: 1,
      firstSeen: r.time,
      lastSeen: r.time,
      sample: sampleOf(r),
      decidedBy,
    });
  }

  /** For a record an upstream decided: the timings are that upstream's. */
  #latencyOf(r: RelayRecord): void {
    if (!r.upstream || !r.timing) return;
    let l = this.#latency.get(r.upstream.name);
    if (!l) {
      if (this.#latency.size >= MAX_LATENCY_UPSTREAMS) {
        this.#latencyOther += 1;
        return;
      }
      l = { total: new LogHistogram(), connect: new LogHistogram(), data: new LogHistogram() };
      this.#latency.set(r.upstream.name, l);
    }
    l.total.add(r.timing.totalMs);
    l.connect.add(r.timing.connectMs);
    l.data.add(r.timing.dataMs);
  }

  #hour(time: string): HourCounts | null {
    if (typeof time !== 'string' || time.length < 13) return null;
    const key = time.slice(0, 13);
    let h = this.#hours.get(key);
    if (!h) {
      h = { relay: 0, delivered: 0, queued: 0, failed: 0, rejects: 0 };
      this.#hours.set(key, h);
    }
    return h;
  }

  #countGroup(key: string, count: (g: MutableGroup) => void): void {
    let g = this.#groups.get(key);
    if (!g) {
      if (this.#groups.size >= MAX_GROUPS) {
        this.#groupsOther ??= zeroGroup();
        count(this.#groupsOther);
        return;
      }
      g = zeroGroup();
      this.#groups.set(key, g);
    }
    count(g);
  }

  result(): Report {
    const relay = this.#records.relay;
    return {
      range: { since: this.#opts.range.since, until: this.#opts.range.until, first: this.#first, last: this.#last },
      records: { ...this.#records },
      outcomes: { ...this.#outcomes },
      successRate: successRate(this.#outcomes, relay),
      deferrals: this.#outcomes.deferred,
      decidedBy: { upstream: decidedCounts(this.#decided.upstream), mailtrail: decidedCounts(this.#decided.mailtrail) },
      rejections: {
        byUpstream: this.#decided.upstream.outcomes.rejected,
        byMailtrail: this.#decided.mailtrail.outcomes.rejected,
        refusals: this.#refusals,
      },
      failureClasses: sortedCounts(this.#failureClasses),
      rejectClasses: sortedCounts(this.#rejectClasses),
      recipients: { ...this.#recipients },
      spool: { deliveries: { ...this.#deliveries }, events: sortedCounts(this.#spoolEvents) },
      duplicateRisk: this.#duplicateRisk,
      duplicateOf: this.#duplicateOf,
      failovers: this.#failovers,
      bytes: { ...this.#bytes },
      sessions: { ...this.#sessions },
      alerts: { ...this.#alerts },
      errorGroups: {
        groups: [...this.#errors.entries()].map(([key, g]) => ({ key, ...g })).sort((a, b) => b.count - a.count || (a.firstSeen < b.firstSeen ? -1 : 1)),
        other: this.#errorsOther,
      },
      latency: {
        relativeError: QUANTILE_RELATIVE_ERROR,
        upstreams: [...this.#latency.entries()]
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([upstream, l]) => ({ upstream, count: l.total.count, totalMs: l.total.summary(), connectMs: l.connect.summary(), dataMs: l.data.summary() })),
        other: this.#latencyOther,
      },
      perHour: [...this.#hours.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([hour, h]) => ({ hour, ...h })),
      senderDomains: domainList(this.#senderDomains, this.#opts.top),
      recipientDomains: domainList(this.#recipientDomains, this.#opts.top),
      by: this.#opts.by
        ? {
            key: this.#opts.by,
            groups: [...this.#groups.entries()]
              .map(([key, g]) => groupRow(key, g))
              .sort((a, b) => b.relay + b.rejects - (a.relay + a.rejects) || (a.key < b.key ? -1 : 1)),
            other: this.#groupsOther ? groupRow(OTHER, this.#groupsOther) : null,
          }
        : null,
    };
  }
}

/** Error codes of an attempt that never connected: the upstream was skipped (docs/audit-record.md). */
export const SKIP_CODES: ReadonlySet<string> = new Set([ERR.BREAKER_OPEN, ERR.RATE_LIMIT]);

/**
 * An upstream decided when one was actually tried: the deciding attempt is the last real try
 * (docs/audit-record.md, `relay`), whatever was skipped after it. Otherwise mailtrail decided alone:
 * no attempt at all (too large, trail not writable, client gone), or only skips.
 */
export function deciderOf(r: RelayRecord): Decider {
  for (const a of r.attempts ?? []) if (!SKIP_CODES.has(a.error?.code ?? '')) return 'upstream';
  return 'mailtrail';
}

/** Lower-case domain of an address; `<>` for the null sender, `(none)` without an @. */
export function domainOf(address: string | null | undefined): string {
  if (address === null || address === undefined) return NONE;
  if (address === '') return '<>';
  const at = address.lastIndexOf('@');
  return at === -1 ? NONE : address.slice(at + 1).toLowerCase();
}

/** The `--by` keys of a relay record (several for recipient-domain: each distinct domain once). */
export function relayKeys(r: RelayRecord, by: GroupBy): string[] {
  switch (by) {
    case 'upstream':
      return [deciderOf(r) === 'upstream' ? (r.upstream?.name ?? NONE) : NO_UPSTREAM];
    case 'sender-domain':
      return [domainOf(r.from)];
    case 'recipient-domain': {
      const domains = [...new Set((r.rcpt ?? []).map((x) => domainOf(x.to)))];
      return domains.length > 0 ? domains : [NONE];
    }
    case 'client':
      return [r.client?.ip ?? NONE];
    case 'user':
      return [r.client?.user ?? NONE];
    case 'instance':
      return [instanceOf(r) ?? NONE];
  }
}

/** What grouping and the hourly counts need of a refusal: a reject record, or a session record's summary. */
type RefusalFacts = Pick<RejectRecord, 'time' | 'client' | 'from' | 'to'> & { readonly instance?: string };

/** The `--by` key of a refusal (no upstream was involved: NO_UPSTREAM by upstream). */
export function rejectKey(r: RefusalFacts, by: GroupBy): string {
  switch (by) {
    case 'upstream':
      return NO_UPSTREAM;
    case 'sender-domain':
      return domainOf(r.from);
    case 'recipient-domain':
      return domainOf(r.to);
    case 'client':
      return r.client?.ip ?? NONE;
    case 'user':
      return r.client?.user ?? NONE;
    case 'instance':
      return r.instance ?? NONE;
  }
}

/** Delivered of the relay records that decided the message's fate (not `queued`: that is decided later). */
function successRate(outcomes: OutcomeCounts, relay: number): number | null {
  return rate(outcomes.delivered, relay - outcomes.queued);
}

/** Ratio rounded to 4 decimals (97.12%), null when there is nothing to divide. */
export function rate(part: number, whole: number): number | null {
  return whole === 0 ? null : Math.round((part / whole) * 10_000) / 10_000;
}

function zeroOutcomes(): OutcomeCounts {
  return { delivered: 0, partial: 0, deferred: 0, rejected: 0, unknown: 0, aborted: 0, queued: 0 };
}

function zeroGroup(): MutableGroup {
  return { relay: 0, outcomes: zeroOutcomes(), byMailtrail: 0, rejects: 0 };
}

function zeroDecided(): MutableDecided {
  return { relay: 0, outcomes: zeroOutcomes(), failureClasses: new Map() };
}

function decidedCounts(d: MutableDecided): DecidedCounts {
  return { relay: d.relay, outcomes: { ...d.outcomes }, failureClasses: sortedCounts(d.failureClasses) };
}

function increment(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function sortedCounts(map: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...map.entries()].sort(([ka, a], [kb, b]) => b - a || (ka < kb ? -1 : 1)));
}

function groupRow(key: string, g: MutableGroup): GroupRow {
  return { key, relay: g.relay, outcomes: { ...g.outcomes }, successRate: successRate(g.outcomes, g.relay), byMailtrail: g.byMailtrail, rejects: g.rejects };
}

function domainList(s: SpaceSaving, n: number): DomainList {
  return { exact: s.exact, total: s.total, top: s.top(n) };
}

/** The upstream's reply as it came, or the error that stood in for one (ECONNREFUSED...). */
function sampleOf(r: RelayRecord): { id: string; reply: string } {
  const reply = errorReply(r);
  if (reply) return { id: r.id, reply: `${reply.code}${reply.enhanced ? ` ${reply.enhanced}` : ''} ${reply.text}`.trim() };
  const d = r.failure?.detail;
  return { id: r.id, reply: [d?.code, d?.cause, d?.timeoutType, d?.message].filter(Boolean).join(' ') || '(no reply)' };
}
