import { UPSTREAM_FAILURE_CLASSES } from '../classify/failure-class.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LRUCache } from 'lru-cache';
import type { DeliveryRecord, RelayRecord, SpoolRecord } from '../audit/records.js';
import type { RelayBus } from './relay-events.js';
import type { ProbeResult } from '../routing/routing-events.js';
import type { AuthEvent } from '../admission/auth-lockout.js';
import type { TokenFetch } from '../upstream/oauth2/token-events.js';

export interface MetricsOptions {
  /** Upstream names, so their series exist (at 0) before the first message. */
  readonly upstreams: readonly string[];
  /** Names of the upstreams that log in with OAuth2, so their token series exist (at 0) before the first request. */
  readonly oauth2Upstreams?: readonly string[];
  /** Alert sink names, likewise. */
  readonly sinks?: readonly string[];
  /** Client sessions open now (read at scrape time). */
  readonly sessionsActive: () => number;
  /** Also export the process metrics (CPU, memory, event loop lag, GC, handles). */
  readonly processMetrics: boolean;
  /** The spool, when a listener or user spools (docs/spool.md): its series exist then, and only then. */
  readonly spool?: SpoolGauges | null;
  /** With `state.redis` (Redis): the shared-state series exist from the start. */
  readonly sharedState?: boolean;
}

/** What the spool's gauges read at scrape time. */
export interface SpoolGauges {
  /** Entries by state, and when the oldest one waiting for delivery (queued or delivering) was accepted (ms). */
  counts(): { readonly queued: number; readonly delivering: number; readonly held: number; readonly oldestWaitingAt: number | null };
  /** Free bytes on the spool's filesystem (statfs), or null when it cannot tell. */
  freeBytes(): number | null;
  /** spool.minFreeSpace: below it new messages get 452. */
  readonly minFreeSpace: number;
  /** Labels of the delivery-event endpoints (spool.events), so their series exist (at 0). */
  readonly eventEndpoints: readonly string[];
}

/** The ends of a spooled message (docs/spool.md): a `spool` record with one of these events. */
const SPOOL_ENDS = ['delivered', 'bounced', 'expired', 'deleted'] as const;
/** Messages whose last failed attempt's class is remembered for their end's `class` label. */
const MAX_REMEMBERED_CLASSES = 100_000;

/** Label value for "no class" (a delivery) and "no upstream" (nothing was tried). */
const NONE = 'none';

const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const;

/** Whole transaction, client upload included: most are sub-second, a slow provider takes tens of seconds. */
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120];
/** DNS + TCP + TLS + greeting + EHLO + AUTH. */
const CONNECT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const SIZE_BUCKETS = [1, 10, 100, 1024, 5 * 1024, 10 * 1024, 25 * 1024, 50 * 1024].map((k) => k * 1024);

/**
 * The Prometheus metrics, fed only by bus events (the relay path never calls them). Each instance
 * has its own registry: no global state, so several apps can run in one process. With several workers
 * (docs/fleet.md) the supervisor adds their series up, except where a gauge names its `aggregator`
 * (an upstream is up when every worker says so; its breaker state is the worst of theirs). Label values are
 * upstream names, failure classes, outcomes and rule/sink names from the config: never an address.
 */
export class Metrics {
  readonly registry = new Registry();
  #unsubscribe: (() => void)[] = [];

  readonly #transactions = new Counter({
    name: 'mailtrail_relay_transactions_total',
    help: 'Relay transactions by outcome, failure class ("none" when delivered) and deciding upstream.',
    labelNames: ['outcome', 'class', 'upstream'] as const,
    registers: [this.registry],
  });
  readonly #duration = new Histogram({
    name: 'mailtrail_relay_duration_seconds',
    help: 'Whole relay transaction from DATA to the reply (timing.totalMs of the relay record).',
    labelNames: ['upstream', 'outcome'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly #connect = new Histogram({
    name: 'mailtrail_upstream_connect_seconds',
    help: 'Opening a new upstream connection: DNS, TCP, TLS, greeting, EHLO and AUTH (reused connections not counted).',
    labelNames: ['upstream'] as const,
    buckets: CONNECT_BUCKETS,
    registers: [this.registry],
  });
  readonly #attempts = new Counter({
    name: 'mailtrail_upstream_attempts_total',
    help: 'Tries at each upstream, failed-over ones included, by failure class ("none" when accepted).',
    labelNames: ['upstream', 'class'] as const,
    registers: [this.registry],
  });
  readonly #up = new Gauge({
    name: 'mailtrail_upstream_up',
    aggregator: 'min',
    help: '1 when the last health probe of the upstream passed (connect, EHLO, STARTTLS, AUTH), else 0.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly #breaker = new Gauge({
    name: 'mailtrail_upstream_state',
    aggregator: 'max',
    help: 'Circuit breaker of the upstream: 0 closed (in use), 1 half-open (one trial), 2 open (skipped).',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly #probeFailures = new Counter({
    name: 'mailtrail_upstream_probe_failures_total',
    help: 'Failed health probes by failure class.',
    labelNames: ['upstream', 'class'] as const,
    registers: [this.registry],
  });
  readonly #lastSuccess = new Gauge({
    name: 'mailtrail_upstream_last_success_timestamp_seconds',
    aggregator: 'max',
    help: 'Unix time of the last message the upstream accepted (delivered or partial).',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly #tokenRequests = new Counter({
    name: 'mailtrail_upstream_token_requests_total',
    help: 'OAuth2 token requests to the identity provider of an upstream, by result: ok or failed.',
    labelNames: ['upstream', 'result'] as const,
    registers: [this.registry],
  });
  /** When each OAuth2 upstream's cached token expires (epoch ms), read at scrape time. */
  readonly #tokenExpiry = new Map<string, number>();
  readonly #rejects = new Counter({
    name: 'mailtrail_client_rejects_total',
    help: 'Clients refused by mailtrail before relaying, by class (auth_failed, relay_denied, ...): every refusal, recorded on its own or summarised.',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly #authFailures = new Counter({
    name: 'mailtrail_auth_failures_total',
    help: 'Client AUTH attempts refused for wrong credentials (unknown username or wrong password), the one that starts a lockout included.',
    registers: [this.registry],
  });
  readonly #authLocked = new Counter({
    name: 'mailtrail_auth_locked_total',
    help: 'Client AUTH attempts refused without a check because their address or username was locked.',
    registers: [this.registry],
  });
  readonly #authLockouts = new Counter({
    name: 'mailtrail_auth_lockouts_total',
    help: 'Lockouts begun after repeated failed AUTH, by what was locked: a client address or a username.',
    labelNames: ['scope'] as const,
    registers: [this.registry],
  });
  readonly #messageSize = new Histogram({
    name: 'mailtrail_message_size_bytes',
    help: 'Size of relayed messages as received.',
    buckets: SIZE_BUCKETS,
    registers: [this.registry],
  });
  readonly #auditWriteErrors = new Counter({
    name: 'mailtrail_audit_write_errors_total',
    help: 'Records that could not be written to the audit trail.',
    registers: [this.registry],
  });
  readonly #auditWritable = new Gauge({
    name: 'mailtrail_audit_writable',
    aggregator: 'min',
    help: 'Whether the audit trail takes records (1), or messages are refused before relaying because it cannot or is below audit.minFreeSpace (0).',
    registers: [this.registry],
  });
  readonly #unclassified = new Counter({
    name: 'mailtrail_unclassified_failures_total',
    help: 'Failures no classifier rule matched (class internal, rule unclassified): gaps in the rules table.',
    registers: [this.registry],
  });
  readonly #alerts = new Counter({
    name: 'mailtrail_alerts_total',
    help: 'Alerts fired and resolved, by rule.',
    labelNames: ['rule', 'state'] as const,
    registers: [this.registry],
  });
  readonly #notifications = new Counter({
    name: 'mailtrail_alert_notifications_total',
    help: 'Alert notifications by sink and result: sent, failed (after retries) or dropped (queue full).',
    labelNames: ['sink', 'result'] as const,
    registers: [this.registry],
  });

  /**
   * Every series an alert rule reads exists at 0 from the start: Prometheus's increase() needs a
   * sample before the first failure, or the first failure of a class (one quota refusal, one
   * notification that could not be delivered) never shows as an increase and never alerts.
   */
  #zeroSeries(options: MetricsOptions): void {
    for (const upstream of options.upstreams) {
      this.#transactions.inc({ outcome: 'delivered', class: NONE, upstream }, 0);
      this.#breaker.set({ upstream }, BREAKER_VALUE.closed);
      for (const cls of [NONE, ...UPSTREAM_FAILURE_CLASSES]) {
        this.#attempts.inc({ upstream, class: cls }, 0);
        if (cls !== NONE) this.#probeFailures.inc({ upstream, class: cls }, 0);
      }
    }
    for (const upstream of options.oauth2Upstreams ?? []) {
      for (const result of ['ok', 'failed'] as const) this.#tokenRequests.inc({ upstream, result }, 0);
    }
    for (const sink of options.sinks ?? []) {
      for (const result of ['sent', 'failed', 'dropped'] as const) this.#notifications.inc({ sink, result }, 0);
    }
    this.#authFailures.inc(0);
    this.#authLocked.inc(0);
    for (const scope of ['address', 'user'] as const) this.#authLockouts.inc({ scope }, 0);
    if (options.spool) this.#spoolSeries(options.spool, options.upstreams);
    this.#auditWriteErrors.inc(0);
    this.#auditWritable.set(1);
    this.#unclassified.inc(0);
  }

  readonly #bus: RelayBus;

  constructor(bus: RelayBus, options: MetricsOptions) {
    this.#bus = bus;
    new Gauge({
      name: 'mailtrail_sessions_active',
      help: 'Client SMTP sessions open now.',
      registers: [this.registry],
      collect() {
        this.set(options.sessionsActive());
      },
    });
    const tokenExpiry = this.#tokenExpiry;
    new Gauge({
      name: 'mailtrail_upstream_token_expiry_seconds',
      help: 'Seconds until the OAuth2 access token cached for the upstream expires (negative once it has); absent before the first token.',
      labelNames: ['upstream'] as const,
      registers: [this.registry],
      collect() {
        const now = Date.now();
        for (const [upstream, expiresAt] of tokenExpiry) this.set({ upstream }, Math.round((expiresAt - now) / 100) / 10);
      },
    });
    if (options.processMetrics) {
      collectDefaultMetrics({ register: this.registry });
      // Gauges named *_total break the naming rules (`promtool check metrics` fails on them); the
      // same counts stay available without the suffix (nodejs_active_handles, ..._requests, ...).
      for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
        this.registry.removeSingleMetric(name);
      }
    }
    this.#zeroSeries(options);
    this.#unsubscribe.push(
      bus.subscribe('relay', (r) => this.#onRelay(r)),
      bus.subscribe('refusal', (r) => this.#rejects.inc({ class: r.class })),
      bus.subscribe('probe', (p) => this.#onProbe(p)),
      bus.subscribe('upstream-state', (s) => this.#breaker.set({ upstream: s.upstream }, BREAKER_VALUE[s.state])),
      bus.subscribe('audit-write-error', () => this.#auditWriteErrors.inc()),
      bus.subscribe('audit-state', (s) => this.#auditWritable.set(s.writable ? 1 : 0)),
      bus.subscribe('alert', (a) => this.#alerts.inc({ rule: a.rule, state: a.state })),
      bus.subscribe('alert-delivery', (d) => this.#notifications.inc({ sink: d.sink, result: d.result })),
      bus.subscribe('auth', (e) => this.#onAuth(e)),
      bus.subscribe('upstream-token', (t) => this.#onToken(t)),
    );
    if (options.sharedState) this.#sharedStateMetrics(bus);
  }

  /** With `state.redis` only: whether the fleet's state is shared now, and what was decided locally instead. */
  #sharedStateMetrics(bus: RelayBus): void {
    const up = new Gauge({
      name: 'mailtrail_shared_state_up',
      help: 'With state.redis: 1 while the fleet-wide limits and state are shared through Redis, 0 while degraded (Redis unreachable, local shares).',
      registers: [this.registry],
      // With workers: up only while every worker shares (the sum would count the workers).
      aggregator: 'min',
    });
    const degraded = new Counter({
      name: 'mailtrail_shared_state_degraded_total',
      help: 'Times the shared state turned degraded (Redis unreachable or too slow).',
      registers: [this.registry],
    });
    const fallbacks = new Counter({
      name: 'mailtrail_shared_state_fallbacks_total',
      help: "Decisions taken on this instance's local share because Redis could not be asked, by shared part.",
      labelNames: ['part'] as const,
      registers: [this.registry],
    });
    this.#unsubscribe.push(
      bus.subscribe('shared-state', (s) => {
        up.set(s.mode === 'shared' ? 1 : 0);
        if (s.mode === 'degraded') degraded.inc();
      }),
      bus.subscribe('shared-state-fallback', (f) => fallbacks.inc({ part: f.part })),
    );
  }

  /**
   * The spool's series (docs/observability.md, "Spool"): gauges read from the spool at scrape time,
   * counters fed by the `delivery` and `spool` records and the delivery-event outbox. Every series an
   * alert reads exists at 0 from the start.
   */
  #spoolSeries(spool: SpoolGauges, upstreams: readonly string[]): void {
    const r = [this.registry];
    new Gauge({
      name: 'mailtrail_spool_messages',
      help: 'Messages in the spool by state: queued (waiting for their next attempt), delivering (an attempt in flight), held (kept for the operator).',
      labelNames: ['state'] as const,
      registers: r,
      collect() {
        const c = spool.counts();
        for (const state of ['queued', 'delivering', 'held'] as const) this.set({ state }, c[state]);
      },
    });
    new Gauge({
      name: 'mailtrail_spool_oldest_age_seconds',
      help: 'Age of the oldest message waiting for delivery (queued or delivering; held ones left out); 0 when none waits.',
      registers: r,
      collect() {
        const at = spool.counts().oldestWaitingAt;
        this.set(at === null ? 0 : Math.max(0, Math.round((Date.now() - at) / 1000)));
      },
    });
    new Gauge({
      name: 'mailtrail_spool_free_bytes',
      help: "Free bytes on the spool's filesystem (statfs at scrape time).",
      registers: r,
      collect() {
        const free = spool.freeBytes();
        if (free !== null) this.set(free);
      },
    });
    new Gauge({
      name: 'mailtrail_spool_min_free_bytes',
      help: 'spool.minFreeSpace: below it the spool refuses new messages with 452 4.3.1 (0: no check).',
      registers: r,
    }).set(spool.minFreeSpace);
    const attempts = new Counter({
      name: 'mailtrail_spool_attempts_total',
      help: 'Delivery attempts of spooled messages by failure class ("none" when delivered).',
      labelNames: ['class'] as const,
      registers: r,
    });
    const ends = new Counter({
      name: 'mailtrail_spool_ends_total',
      help: 'Spooled messages ended, by end (delivered, bounced, expired, deleted) and the failure class of their last failed attempt ("none" when there was none).',
      labelNames: ['end', 'class'] as const,
      registers: r,
    });
    const parked = new Gauge({
      name: 'mailtrail_spool_parked',
      help: "1 while the upstream's queue is parked (an account-wide failure: no attempt through it until it passes a probe), else 0.",
      labelNames: ['upstream'] as const,
      registers: r,
    });
    const events = new Counter({
      name: 'mailtrail_delivery_events_total',
      help: 'Delivery-event webhook tries per endpoint by result: sent (2xx), failed (retried later), dropped (given up past the age limit).',
      labelNames: ['endpoint', 'result'] as const,
      registers: r,
    });
    const pending = new Gauge({
      name: 'mailtrail_delivery_events_pending',
      help: 'Delivery events waiting in the outbox for the endpoint.',
      labelNames: ['endpoint'] as const,
      registers: r,
    });
    for (const cls of [NONE, ...UPSTREAM_FAILURE_CLASSES]) attempts.inc({ class: cls }, 0);
    for (const end of SPOOL_ENDS) {
      ends.inc({ end, class: NONE }, 0);
      if (end === 'bounced' || end === 'expired') for (const cls of UPSTREAM_FAILURE_CLASSES) ends.inc({ end, class: cls }, 0);
    }
    for (const upstream of upstreams) parked.set({ upstream }, 0);
    for (const endpoint of spool.eventEndpoints) {
      for (const result of ['sent', 'failed', 'dropped'] as const) events.inc({ endpoint, result }, 0);
      pending.set({ endpoint }, 0);
    }
    // The class of each message's last failed attempt, for the label of its end (bounded: an entry is
    // forgotten at its end, or when 100,000 newer ones crowd it out).
    const lastClass = new LRUCache<string, string>({ max: MAX_REMEMBERED_CLASSES });
    const onDelivery = (d: DeliveryRecord): void => {
      const cls = d.failure?.class ?? NONE;
      attempts.inc({ class: cls });
      if (cls !== NONE) lastClass.set(d.spoolId, cls);
    };
    const onSpool = (s: SpoolRecord): void => {
      if (s.event === 'parked' || s.event === 'unparked') {
        if (s.upstream !== null) parked.set({ upstream: s.upstream }, s.event === 'parked' ? 1 : 0);
        return;
      }
      if (s.spoolId === null || !(SPOOL_ENDS as readonly string[]).includes(s.event)) return;
      ends.inc({ end: s.event, class: s.event === 'delivered' ? NONE : (lastClass.get(s.spoolId) ?? NONE) });
      lastClass.delete(s.spoolId);
    };
    this.#unsubscribe.push(
      this.#bus.subscribe('delivery', onDelivery),
      this.#bus.subscribe('spool', onSpool),
      this.#bus.subscribe('delivery-event-sent', (e) => events.inc({ endpoint: e.endpoint, result: 'sent' })),
      this.#bus.subscribe('delivery-event-failed', (e) => events.inc({ endpoint: e.endpoint, result: 'failed' })),
      this.#bus.subscribe('delivery-event-dropped', (e) => events.inc({ endpoint: e.endpoint, result: 'dropped' })),
      this.#bus.subscribe('delivery-event-pending', (e) => pending.set({ endpoint: e.endpoint }, e.pending)),
    );
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Stops listening to the bus (the registry keeps its values). */
  close(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
  }

  #onToken(fetch: TokenFetch): void {
    this.#tokenRequests.inc({ upstream: fetch.upstream, result: fetch.ok ? 'ok' : 'failed' });
    if (fetch.expiresAt !== null) this.#tokenExpiry.set(fetch.upstream, fetch.expiresAt);
  }

  #onRelay(record: RelayRecord): void {
    const upstream = record.upstream?.name ?? NONE;
    const outcome = record.outcome;
    this.#transactions.inc({ outcome, class: record.failure?.class ?? NONE, upstream });
    this.#duration.observe({ upstream, outcome }, record.timing.totalMs / 1000);
    this.#messageSize.observe(record.message.size);
    if (record.failure?.detail.rule === 'unclassified') this.#unclassified.inc();
    for (const attempt of record.attempts) this.#attempts.inc({ upstream: attempt.upstream, class: attempt.class ?? NONE });
    const last = record.attempts[record.attempts.length - 1];
    // Only a connection opened for this message and that got past connecting measures a connect.
    if (record.upstream?.reusedConnection === false && last && last.phase !== 'connecting') {
      this.#connect.observe({ upstream }, record.timing.connectMs / 1000);
    }
    if (record.upstream && (outcome === 'delivered' || outcome === 'partial')) {
      this.#lastSuccess.set({ upstream }, Date.parse(record.time) / 1000);
    }
  }

  #onAuth(event: AuthEvent): void {
    if (event.kind === 'failure') this.#authFailures.inc();
    else if (event.kind === 'refused') this.#authLocked.inc();
    else this.#authLockouts.inc({ scope: event.scope });
  }

  #onProbe(result: ProbeResult): void {
    this.#up.set({ upstream: result.upstream }, result.ok ? 1 : 0);
    if (!result.ok) this.#probeFailures.inc({ upstream: result.upstream, class: result.class ?? NONE });
  }
}
