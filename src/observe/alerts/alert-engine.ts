import { AUDIT_SCHEMA_VERSION, type AlertRecord, type Built, type RelayRecord } from '../../audit/records.js';
import type { AuditRefusal } from '../../audit/audit-refusal.js';
import type { Recorder } from '../../audit/recorder.js';
import type { AuthEvent } from '../../admission/auth-lockout.js';
import type { AlertCondition, AlertRuleConfig, AlertsConfig, UpstreamConfig } from '../../config/types.js';
import type { IdGenerator } from '../../ids.js';
import { isInfrastructureClass, type FailureClass } from '../../classify/failure-class.js';
import type { RelayBus } from '../relay-events.js';
import type { Logger } from '../../logger.js';
import type { ProbeResult } from '../../routing/routing-events.js';
import type { SharedStateStatus } from '../../state/state-events.js';
import type { DeliveryQueue } from './delivery-queue.js';
import type { IncidentClaims } from './incident-claims.js';
import type { IncidentStore } from './incident-store.js';
import { Incidents, type Incident, type IncidentKey } from './incidents.js';
import { formatDuration, type AlertNotification } from './notification.js';
import { attemptFacts, evidence, UpstreamStats, type AttemptFact, type FailureSeen } from './upstream-stats.js';
import { SPOOL_ALERT_RULES, SpoolWatch, type SpoolAlertSource } from './spool-alerts.js';

export interface AlertEngineDeps {
  readonly config: AlertsConfig;
  readonly upstreams: readonly UpstreamConfig[];
  readonly bus: RelayBus;
  readonly recorder: Recorder;
  readonly ids: IdGenerator;
  readonly delivery: DeliveryQueue;
  /** SMTP server of each email sink, so an alert is never mailed through the upstream it is about. */
  readonly emailServers: ReadonlyMap<string, { readonly host: string; readonly port: number }>;
  /** Keeps open incidents across restarts; null = memory only. */
  readonly store: IncidentStore | null;
  /** Who in the fleet announces an incident; default this instance, always. */
  readonly claims?: IncidentClaims;
  readonly log: Logger;
  readonly hostname: string;
  /** How often windowed rules and held-back incidents are checked (ms). Default 5 s. */
  readonly tickMs?: number;
  /** The `auth-lockout` alert resolves after this long without a new AUTH lockout (ms). Default 2 h. */
  readonly authQuietMs?: number;
  /** The spool, when something spools: its built-in alerts (spool-alerts.ts) are judged on the timer. */
  readonly spool?: SpoolAlertSource | null;
}

/** Classes a passing probe disproves: they show while connecting (greeting, EHLO, STARTTLS, AUTH). */
function probeClears(cls: string): boolean {
  return isInfrastructureClass(cls) || cls === 'upstream_auth';
}

/** What the operator should look at, for the classes only the operator can fix. */
const ACTION: Readonly<Record<string, string>> = {
  upstream_auth: 'check the credentials configured for this upstream',
  tls: 'check the upstream certificate and the TLS settings for this upstream',
  quota: "the account's sending quota at the provider is used up",
  dns: 'the upstream host name does not resolve',
};

/** The incident key's upstream for alerts about the relay itself, not one upstream. */
const RELAY_ITSELF = '';
/** The built-in rule that pages when the audit trail stops taking records (every message gets 451). */
const AUDIT_TRAIL_RULE = 'audit-trail';
/** The built-in rule that pages when the spool parks an upstream (an account-wide failure: credentials, quota, TLS). */
const SPOOL_PARKED_RULE = 'spool-parked';
/** The built-in rule that pages when repeated failed AUTH locks an address or a username. */
const AUTH_LOCKOUT_RULE = 'auth-lockout';
const AUTH_LOCKOUT_KEY: IncidentKey = { rule: AUTH_LOCKOUT_RULE, upstream: RELAY_ITSELF, class: 'auth_locked' };
/** The built-in rule that pages while the fleet's Redis cannot be reached (`state.redis`): limits are local shares. */
const SHARED_STATE_RULE = 'shared-state';
const SHARED_STATE_KEY: IncidentKey = { rule: SHARED_STATE_RULE, upstream: RELAY_ITSELF, class: 'internal' };
/** Twice the default clients.authLockout.maxLockout: one incident while a guesser keeps coming back. */
const DEFAULT_AUTH_QUIET_MS = 2 * 3_600_000;

/** Events waiting for evaluation; past this, new ones are dropped (evaluation is far cheaper than relaying). */
const MAX_INBOX = 10_000;

type Inbound = { readonly kind: 'relay'; readonly record: RelayRecord } | { readonly kind: 'probe'; readonly result: ProbeResult };

/**
 * Evaluates the alert rules per upstream from `relay` and `probe` events. Subscribers only queue the
 * event; evaluation runs on a later turn of the event loop (setImmediate), so the relay path pays
 * for an array push. `class` and `consecutiveFailures` are decided per event; `failureRate`,
 * `latency` and `noSuccess` on a timer as well, since time alone can change them. Each fire and
 * resolve is written to the trail as an `alert` record, logged, and queued for the rule's sinks.
 */
export class AlertEngine {
  #deps: AlertEngineDeps;
  #incidents: Incidents;
  #stats = new Map<string, UpstreamStats>();
  #inbox: Inbound[] = [];
  #drainScheduled = false;
  #dropped = 0;
  #timer: NodeJS.Timeout | null = null;
  #unsubscribe: (() => void)[] = [];
  #startedAt = Date.now();
  #longestWindow: number;
  #classRules: ReadonlySet<string>;
  /** The rules with `class` rules first: while one has announced a class, the streak rule stays quiet about it. */
  #probeOrder: readonly AlertRuleConfig[];
  /** When the last AUTH lockout began; null when the `auth-lockout` incident is not open. */
  #lastLockoutAt: number | null = null;
  #spool: SpoolWatch | null;

  constructor(deps: AlertEngineDeps) {
    this.#deps = deps;
    this.#classRules = new Set(deps.config.rules.filter((r) => r.condition.kind === 'class').map((r) => r.name));
    this.#probeOrder = [...deps.config.rules].sort((x, y) => Number(y.condition.kind === 'class') - Number(x.condition.kind === 'class'));
    this.#incidents = new Incidents(
      deps.config.cooldown,
      {
        fire: (incident, now) => this.#announce('fired', incident, incident.summary, now),
        resolve: (incident, reason, now) => this.#announce('resolved', incident, reason, now),
        elsewhere: (state, incident, text, by, now) => this.#announce(state, incident, text, now, by),
        changed: (open) => deps.store?.save(open),
      },
      deps.claims,
    );
    this.#longestWindow = Math.max(0, ...deps.config.rules.map((r) => windowOf(r.condition)));
    this.#spool = deps.spool ? new SpoolWatch(deps.spool, deps.config.spool) : null;
  }

  /** Open incidents (for tests and the shutdown log). */
  get open(): readonly Incident[] {
    return this.#incidents.open;
  }

  start(): void {
    const { config, bus, store } = this.#deps;
    if (config.rules.length === 0) return;
    this.#startedAt = Date.now();
    this.#restore(store?.load() ?? []);
    this.#unsubscribe.push(
      bus.subscribe('relay', (record) => this.#receive({ kind: 'relay', record })),
      bus.subscribe('probe', (result) => this.#receive({ kind: 'probe', result })),
      // Built in, whatever the rules: a trail that takes no records stops all relaying.
      bus.subscribe('audit-state', (s) => this.#onAuditState(s.reason, s.refusing, Date.now())),
      // Built in too: password guessing, or an application with a wrong password.
      bus.subscribe('auth', (e) => this.#onAuth(e, Date.now())),
      // Built in: the spool stopped delivering through an upstream until the operator fixes it (docs/spool.md, "Parking").
      bus.subscribe('spool-parked', (p) => this.#onSpoolParked(p.upstream, p.class, p.reason, p.until, Date.now())),
      bus.subscribe('spool-unparked', (p) =>
        this.#incidents.clear({ rule: SPOOL_PARKED_RULE, upstream: p.upstream, class: null }, `deliveries from the spool resumed: ${p.reason}`, Date.now()),
      ),
      // And the fleet's Redis out of reach: every limit is a local share until it is back.
      bus.subscribe('shared-state', (s) => this.#onSharedState(s, Date.now())),
    );
    this.#timer = setInterval(() => this.#tick(Date.now()), this.#deps.tickMs ?? 5_000);
    this.#timer.unref();
  }

  stop(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#inbox.length = 0;
  }

  #receive(event: Inbound): void {
    if (this.#inbox.length >= MAX_INBOX) {
      if (this.#dropped++ === 0) this.#deps.log.warn('alert evaluation is behind; events dropped');
      return;
    }
    this.#inbox.push(event);
    if (this.#drainScheduled) return;
    this.#drainScheduled = true;
    setImmediate(() => this.#drain());
  }

  #drain(): void {
    this.#drainScheduled = false;
    const events = this.#inbox.splice(0);
    this.#dropped = 0;
    const now = Date.now();
    for (const event of events) {
      if (event.kind === 'relay') this.#onRelay(event.record, now);
      else this.#onProbe(event.result, now);
    }
  }

  #onAuditState(reason: AuditRefusal | null, refusing: boolean, now: number): void {
    const key: IncidentKey = { rule: AUDIT_TRAIL_RULE, upstream: RELAY_ITSELF, class: 'internal' };
    if (reason === null) {
      this.#incidents.clear(key, 'the audit trail takes records again', now);
      return;
    }
    const why =
      reason === 'low-space'
        ? "the audit trail's filesystem is below audit.minFreeSpace"
        : 'the audit trail cannot be written (disk full, permissions: see the log)';
    const summary = refusing
      ? `${why}; every message is refused with 451 before relaying until it is fixed`
      : `${why}; messages are relayed without their audit records (audit.onWriteFailure: continue) until it is fixed`;
    this.#incidents.raise(key, { summary, shownClass: 'internal', sinks: this.#deps.config.sinks.map((s) => s.name) }, now);
  }

  #onSpoolParked(upstream: string, cls: string, reason: string, until: number, now: number): void {
    const key: IncidentKey = { rule: SPOOL_PARKED_RULE, upstream, class: null };
    const action = ACTION[cls] ? `; ${ACTION[cls]}` : '';
    const summary = `deliveries from the spool through this upstream are parked after ${cls} (${reason})${action}; messages stay queued until its health probe passes or a trial at ${new Date(until).toISOString()}`;
    this.#incidents.raise(key, { summary, shownClass: cls, sinks: this.#deps.config.sinks.map((s) => s.name) }, now);
  }

  #onSharedState(status: SharedStateStatus, now: number): void {
    if (status.mode === 'shared') {
      this.#incidents.clear(SHARED_STATE_KEY, 'the shared state in Redis is reachable again', now);
      return;
    }
    const summary = `Redis (state.redis) cannot be reached (${status.reason ?? 'unknown'}): this instance relays on with local shares of every fleet-wide limit, and its breakers, duplicate links and alerts are its own until Redis is back`;
    this.#incidents.raise(SHARED_STATE_KEY, { summary, shownClass: 'internal', sinks: this.#deps.config.sinks.map((s) => s.name) }, now);
  }

  #onAuth(event: AuthEvent, now: number): void {
    if (event.kind !== 'lockout') return;
    this.#lastLockoutAt = now;
    const { address, durationMs, failures, windowMs } = event;
    const what =
      event.scope === 'address'
        ? `AUTH from ${address} locked for ${formatDuration(durationMs)} after ${failures} failures within ${formatDuration(windowMs)}`
        : `a username locked for ${formatDuration(durationMs)} after ${failures} failed AUTHs naming it within ${formatDuration(windowMs)}, the last from ${address}`;
    const summary = `${what}: password guessing, or an application with a wrong password`;
    this.#incidents.raise(AUTH_LOCKOUT_KEY, { summary, shownClass: 'auth_locked', sinks: this.#deps.config.sinks.map((s) => s.name) }, now);
  }

  /** The `auth-lockout` incident resolves once no lockout has begun for the quiet period. */
  #checkAuthQuiet(now: number): void {
    const quiet = this.#deps.authQuietMs ?? DEFAULT_AUTH_QUIET_MS;
    if (this.#lastLockoutAt === null || now - this.#lastLockoutAt < quiet) return;
    this.#lastLockoutAt = null;
    this.#incidents.clear(AUTH_LOCKOUT_KEY, `no AUTH lockout for ${formatDuration(quiet)}`, now);
  }

  /** Built in, whatever the rules (unless `rules: []`): the spool's own alerts, every sink, no upstream. */
  #checkSpool(now: number): void {
    if (this.#spool === null) return;
    const sinks = this.#deps.config.sinks.map((s) => s.name);
    for (const verdict of this.#spool.check(now)) {
      const key: IncidentKey = { rule: verdict.rule, upstream: RELAY_ITSELF, class: null };
      if (verdict.open) this.#incidents.raise(key, { summary: verdict.summary, shownClass: null, sinks }, now);
      else this.#incidents.clear(key, verdict.reason, now);
    }
  }

  #onRelay(record: RelayRecord, now: number): void {
    for (const fact of attemptFacts(record)) {
      const stats = this.#statsOf(fact.upstream);
      stats.addAttempt(fact, now);
      for (const rule of this.#deps.config.rules) this.#afterAttempt(rule, fact, stats, now);
    }
    if (record.upstream && record.outcome !== 'aborted') this.#statsOf(record.upstream.name).addLatency(record.timing.totalMs, now);
  }

  #afterAttempt(rule: AlertRuleConfig, fact: AttemptFact, stats: UpstreamStats, now: number): void {
    const c = rule.condition;
    const key: IncidentKey = { rule: rule.name, upstream: fact.upstream, class: null };
    if (c.kind === 'class') {
      if (fact.class !== null && c.classes.includes(fact.class)) {
        this.#raise(rule, { ...key, class: fact.class }, classSummary('a message', { ...fact, class: fact.class }), fact.class, now);
      } else if (fact.kind === 'success') {
        this.#incidents.clearWhere(rule.name, fact.upstream, () => true, 'a message was delivered', now);
      }
    } else if (c.kind === 'consecutiveFailures') {
      this.#judgeStreak(rule, c.count, fact.upstream, stats, '', fact.kind === 'success' ? 'a message was delivered' : 'the upstream answered again', now);
    } else if (c.kind === 'noSuccess') {
      if (fact.kind === 'success') this.#incidents.clear(key, 'a message was delivered', now);
      else this.#checkNoSuccess(rule, c.for, fact.upstream, stats, now);
    }
  }

  #onProbe(result: ProbeResult, now: number): void {
    const stats = this.#statsOf(result.upstream);
    const failure = result.ok ? null : { class: result.class ?? 'internal', evidence: evidence(result.reply, result.error), hint: result.hint };
    stats.addProbe(failure, probeClears);
    for (const rule of this.#probeOrder) {
      const c = rule.condition;
      if (c.kind === 'consecutiveFailures')
        this.#judgeStreak(rule, c.count, result.upstream, stats, ' (messages and health probes)', 'a health probe passed', now);
      if (c.kind !== 'class') continue;
      if (failure !== null && result.class !== null && c.classes.includes(result.class)) {
        const summary = classSummary('the health probe', failure);
        this.#raise(rule, { rule: rule.name, upstream: result.upstream, class: result.class }, summary, result.class, now);
      } else if (result.ok) {
        this.#incidents.clearWhere(rule.name, result.upstream, (cls) => cls !== null && probeClears(cls), 'a health probe passed', now);
      }
    }
  }

  /**
   * `consecutiveFailures` after a try or a probe: at `count` failures in a row the incident opens
   * (`counted` says what the streak is made of), and a streak back at 0 resolves it with `cleared`.
   */
  #judgeStreak(rule: AlertRuleConfig, count: number, upstream: string, stats: UpstreamStats, counted: string, cleared: string, now: number): void {
    const key: IncidentKey = { rule: rule.name, upstream, class: null };
    if (stats.consecutiveFailures >= count) {
      this.#raise(rule, key, `${stats.consecutiveFailures} failures in a row${counted}, the last ${lastFailure(stats)}`, stats.lastFailure?.class ?? null, now);
    } else if (stats.consecutiveFailures === 0) {
      this.#incidents.clear(key, cleared, now);
    }
  }

  #tick(now: number): void {
    this.#checkAuthQuiet(now);
    this.#checkSpool(now);
    for (const stats of this.#stats.values()) stats.prune(this.#longestWindow, now);
    for (const rule of this.#deps.config.rules) {
      for (const upstream of this.#upstreamNames()) this.#evaluateOverTime(rule, upstream, now);
    }
    this.#incidents.recheck(now);
  }

  #evaluateOverTime(rule: AlertRuleConfig, upstream: string, now: number): void {
    const c = rule.condition;
    const stats = this.#statsOf(upstream);
    const key: IncidentKey = { rule: rule.name, upstream, class: null };
    // A window rule can clear an incident restored from before a restart only once a whole window has
    // been watched (not on the empty window right after the restart); one opened by this run may
    // clear as soon as the condition no longer holds, since every sample since start is in hand.
    const openedHere = this.#incidents.open.some((i) => i.rule === key.rule && i.upstream === upstream && i.openedAt >= this.#startedAt);
    const watchedLongEnough = (window: number): boolean => openedHere || now - this.#startedAt >= window;
    if (c.kind === 'failureRate') {
      const { failed, total } = stats.failureRate(c.window, now);
      const ratio = total === 0 ? 0 : failed / total;
      if (total >= c.minVolume && ratio >= c.ratio) {
        const summary = `${percent(ratio)} of ${total} tries failed in the last ${formatDuration(c.window)} (threshold ${percent(c.ratio)}), the last ${lastFailure(stats)}`;
        this.#raise(rule, key, summary, stats.lastFailure?.class ?? null, now);
      } else if (watchedLongEnough(c.window)) {
        this.#incidents.clear(key, `failure rate ${percent(ratio)} of ${total} tries over ${formatDuration(c.window)}`, now);
      }
    } else if (c.kind === 'latency') {
      const { p95, count } = stats.p95(c.window, now);
      if (count >= c.minVolume && p95 > c.p95) {
        const summary = `p95 relay time ${formatDuration(p95)} over ${count} messages in the last ${formatDuration(c.window)} (threshold ${formatDuration(c.p95)})`;
        this.#raise(rule, key, summary, null, now);
      } else if (watchedLongEnough(c.window)) {
        this.#incidents.clear(key, `p95 relay time ${formatDuration(p95)} over ${count} messages`, now);
      }
    } else if (c.kind === 'noSuccess') {
      this.#checkNoSuccess(rule, c.for, upstream, stats, now);
    }
  }

  #checkNoSuccess(rule: AlertRuleConfig, forMs: number, upstream: string, stats: UpstreamStats, now: number): void {
    if (stats.failingSince === null || now - stats.failingSince < forMs) return;
    const summary = `nothing delivered for ${formatDuration(now - stats.failingSince)} while tries kept failing, the last ${lastFailure(stats)}`;
    this.#raise(rule, { rule: rule.name, upstream, class: null }, summary, stats.lastFailure?.class ?? null, now);
  }

  #raise(rule: AlertRuleConfig, key: IncidentKey, summary: string, shownClass: string | null, now: number): void {
    if (rule.condition.kind !== 'class' && this.#announcedByClassRule(key.upstream, shownClass)) return;
    this.#incidents.raise(key, { summary, shownClass, sinks: rule.sinks }, now);
  }

  /**
   * One root cause, one alert: while a `class` rule's alert about this upstream and class is out,
   * the same failures do not open incidents of other rules (wrong credentials would otherwise also
   * page as "5 failures in a row"). Once it resolves, the other rules judge the failures again.
   */
  #announcedByClassRule(upstream: string, cls: string | null): boolean {
    if (cls === null) return false;
    return this.#incidents.open.some((i) => i.upstream === upstream && i.class === cls && i.notified && this.#classRules.has(i.rule));
  }

  /** Incidents of rules or upstreams no longer configured are resolved; the rest carry on. */
  #restore(saved: readonly Incident[]): void {
    const now = Date.now();
    this.#incidents.restore(saved, this.#deps.config.cooldown, now);
    const rules = new Set(this.#deps.config.rules.map((r) => r.name));
    const upstreams = new Set(this.#deps.upstreams.map((u) => u.name));
    for (const incident of saved) {
      // Judged again at the next check: resolved then if the condition no longer holds.
      if (
        incident.rule === AUDIT_TRAIL_RULE ||
        incident.rule === SHARED_STATE_RULE ||
        (this.#spool !== null && (SPOOL_ALERT_RULES as readonly string[]).includes(incident.rule))
      )
        continue;
      // Parking is not kept across a restart: the queue starts unparked, so the incident is over.
      if (incident.rule === SPOOL_PARKED_RULE) {
        this.#incidents.clear(incident, 'mailtrail restarted: the spool starts with every upstream unparked', now);
        continue;
      }
      // Its quiet period starts again with this run: it resolves if no lockout comes.
      if (incident.rule === AUTH_LOCKOUT_RULE) {
        this.#lastLockoutAt = now;
        continue;
      }
      if (!rules.has(incident.rule) || !upstreams.has(incident.upstream)) {
        this.#incidents.clear(incident, 'no longer evaluated: the rule or upstream was removed from the configuration', now);
      }
    }
    if (saved.length > 0) this.#deps.log.info({ open: this.#incidents.open.length }, 'open alerts restored');
  }

  /**
   * Writes the `alert` record, logs it and queues the notices; `by`: another instance of the fleet
   * announced it, so this one notifies no sink and its record says who did.
   */
  #announce(state: 'fired' | 'resolved', incident: Incident, text: string, now: number, by: string | null = null): void {
    const { recorder, ids, delivery, log, hostname } = this.#deps;
    const sinks = by !== null ? [] : incident.sinks.filter((name) => this.#maySend(name, incident.upstream));
    const about = incident.upstream === RELAY_ITSELF ? incident.rule : `${incident.rule} on upstream ${incident.upstream}`;
    const said = state === 'fired' ? `${about}: ${text}` : `${about}: ${text}; open for ${formatDuration(now - incident.openedAt)}`;
    const message = by === null ? said : `${said} (announced by instance ${by})`;
    const upstream = incident.upstream === RELAY_ITSELF ? null : incident.upstream;
    const time = new Date(now).toISOString();
    const record: Built<AlertRecord> = {
      v: AUDIT_SCHEMA_VERSION,
      type: 'alert',
      time,
      id: ids.next(now),
      state,
      rule: incident.rule,
      upstream,
      class: incident.shownClass as FailureClass | null,
      message,
      sinks,
    };
    recorder.alert(record);
    if (by !== null) {
      log.info(
        { alert: record, announcedBy: by },
        state === 'fired' ? 'alert fired, announced by another instance' : 'alert resolved, announced by another instance',
      );
      return;
    }
    if (state === 'fired') log.warn({ alert: record }, 'alert fired');
    else log.info({ alert: record }, 'alert resolved');
    const notification: AlertNotification = {
      id: record.id,
      state,
      rule: incident.rule,
      upstream,
      class: record.class,
      message,
      time,
      since: new Date(incident.openedAt).toISOString(),
      host: hostname,
    };
    for (const sink of sinks) delivery.enqueue(sink, notification);
  }

  /** An email sink whose server is the upstream the alert is about would share its fate: skipped. */
  #maySend(sink: string, upstream: string): boolean {
    const server = this.#deps.emailServers.get(sink);
    if (!server) return true;
    const target = this.#deps.upstreams.find((u) => u.name === upstream);
    const same = target !== undefined && target.host.toLowerCase() === server.host.toLowerCase() && target.port === server.port;
    if (same) this.#deps.log.warn({ sink, upstream }, 'alert not mailed through the upstream it is about');
    return !same;
  }

  #statsOf(upstream: string): UpstreamStats {
    let stats = this.#stats.get(upstream);
    if (!stats) {
      stats = new UpstreamStats();
      this.#stats.set(upstream, stats);
    }
    return stats;
  }

  #upstreamNames(): string[] {
    return [...new Set([...this.#deps.upstreams.map((u) => u.name), ...this.#stats.keys()])];
  }
}

function windowOf(c: AlertCondition): number {
  return c.kind === 'failureRate' || c.kind === 'latency' ? c.window : 0;
}

/**
 * "a message failed with upstream_auth (535 5.7.139 …); <what to do>". The deciding rule's hint, when it
 * has one, replaces the class's usual advice: a password the provider refuses on principle is not a
 * wrong password.
 */
function classSummary(what: string, f: FailureSeen): string {
  const action = f.hint ?? ACTION[f.class];
  return `${what} failed with ${f.class}${f.evidence ? ` (${f.evidence})` : ''}${action ? `; ${action}` : ''}`;
}

function lastFailure(stats: UpstreamStats): string {
  const f = stats.lastFailure;
  if (!f) return 'failure unknown';
  return `${f.class}${f.evidence ? ` (${f.evidence})` : ''}${f.hint ? `; ${f.hint}` : ''}`;
}

function percent(ratio: number): string {
  return `${Math.round(ratio * 1000) / 10}%`;
}
