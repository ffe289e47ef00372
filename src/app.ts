import { setMaxListeners } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Config, UpstreamConfig } from './config/types.js';
import { AuditWriter } from './audit/audit-writer.js';
import { AuthLockout, type AuthEvent } from './admission/auth-lockout.js';
import { MemoryLockoutStore, type LockoutStore } from './admission/lockout-store.js';
import { RedisLockoutStore } from './admission/redis-lockout-store.js';
import { RedisTokenBuckets } from './admission/redis-token-buckets.js';
import { MemoryTokenBuckets, type TokenBuckets } from './admission/token-buckets.js';
import { Checkpointer } from './audit/checkpoint.js';
import { loadSigner } from './audit/checkpoint-signer.js';
import { DuplicateTracker, type DuplicateLinks } from './transaction/duplicate-tracker.js';
import { RedisDuplicates } from './transaction/redis-duplicates.js';
import { RecordPrivacy } from './audit/privacy.js';
import { Recorder } from './audit/recorder.js';
import { DataDirLock } from './data-dir-lock.js';
import { IdGenerator } from './ids.js';
import { prepareSpillDir } from './buffer/temp-files.js';
import { AlertEngine } from './observe/alerts/alert-engine.js';
import { DeliveryQueue } from './observe/alerts/delivery-queue.js';
import { EmailSink } from './observe/alerts/email-sink.js';
import { OWN_CLAIMS, type IncidentClaims } from './observe/alerts/incident-claims.js';
import { IncidentStore } from './observe/alerts/incident-store.js';
import { RedisIncidentClaims } from './observe/alerts/redis-incident-claims.js';
import { WebhookSink } from './observe/alerts/webhook-sink.js';
import { ErrorGroups } from './observe/error-groups.js';
import { EventBus } from './event-bus.js';
import type { RelayBus, RelayEvents } from './observe/relay-events.js';
import { ObservabilityServer, type HttpSources } from './observe/http-server.js';
import type { Logger } from './logger.js';
import { Metrics } from './observe/metrics.js';
import { Readiness } from './observe/readiness.js';
import { RecentTransactions } from './observe/recent-transactions.js';
import { UpstreamProbes } from './routing/upstream-probe.js';
import { BreakerRecords } from './observe/breaker-records.js';
import { Deadline } from './upstream/deadline.js';
import { RelayEngine } from './routing/relay-engine.js';
import { Router, type UpstreamHealth } from './routing/router.js';
import { localUpstreamState, sharedUpstreamState, type UpstreamStateFactory } from './routing/upstream-state.js';
import { isShared } from './config/sections/state.js';
import { RedisLink } from './state/redis-link.js';
import type { SharedStateStatus } from './state/state-events.js';
import { TransactionProcessor } from './transaction/transaction.js';
import { startupWarnings, type StartupWarning } from './observe/startup-warnings.js';
import { LocalSink } from './sink/local-sink.js';
import { Admission } from './admission/admission.js';
import { ClientRateLimits } from './admission/client-rate-limits.js';
import { listenerTls } from './listener/ephemeral-cert.js';
import { SmtpListeners } from './listener/listener.js';
import { ERR } from './error-codes.js';
import { CredentialFileError } from './config/upstream-auth.js';
import { upstreamLogin, type UpstreamLogin } from './upstream/upstream-login.js';
import type { TokenFetch } from './upstream/oauth2/token-events.js';
import type { FreeSpaceProbe } from './audit/free-space.js';
import { SpoolStore } from './spool/spool-store.js';
import type { SpoolFileOps } from './spool/spool-files.js';
import { spoolRecord } from './spool/spool-records.js';
import { usesSpool } from './transaction/delivery-mode.js';

export interface RunningInfo {
  readonly listeners: readonly { host: string; port: number; implicitTls: boolean; mode: 'passthrough' | 'spool' | 'hybrid' }[];
  readonly auditFile: string;
  readonly upstreams: readonly { name: string; host: string; port: number; tls: string }[];
  readonly sinkDir: string | null;
  /** The spool and the messages it holds at start-up; null when no listener or user spools. */
  readonly spool: { readonly dir: string; readonly entries: number } | null;
  /** The HTTP endpoint (metrics, health, API), or null when off or its best-effort bind failed. */
  readonly http: { readonly host: string; readonly port: number } | null;
  /** What the operator should know before sending real mail; start() logs none of it (the caller shows them). */
  readonly warnings: readonly StartupWarning[];
  /** With `state.redis`: whether the fleet's Redis answered at start-up (else the instance starts degraded). */
  readonly sharedState: SharedStateStatus | null;
  /** Set by a supervisor announcing its workers (workers/supervisor.ts); absent for one process. */
  readonly workers?: { readonly count: number; readonly instances: readonly string[] };
}

/**
 * What the caller may change of how the relay runs. Production passes at most `httpServer`; a test may
 * put in place of the system under the relay the spool's free-space probe (a full disk without
 * filling one) and its file operations (a failing fsync).
 */
export interface AppOptions {
  /**
   * false: build what the HTTP endpoint serves (with `http` configured) but bind no endpoint; a
   * supervisor serves it for its workers (workers/, docs/fleet.md). Default true.
   */
  readonly httpServer?: boolean;
  readonly spool?: { readonly freeSpace?: FreeSpaceProbe; readonly fileOps?: Partial<SpoolFileOps> };
}

/** Everything that watches the relay through the bus: built in start(), stopped in stop(). */
interface Observers {
  readonly probes: UpstreamProbes;
  readonly breakerRecords: BreakerRecords;
  readonly readiness: Readiness;
  readonly metrics: Metrics | null;
  readonly recent: RecentTransactions | null;
  readonly errors: ErrorGroups | null;
  readonly alerts: AlertEngine;
  readonly delivery: DeliveryQueue;
  readonly emailSinks: readonly EmailSink[];
  readonly http: ObservabilityServer | null;
  /** What the HTTP endpoint serves; null when `http` is off. */
  readonly sources: HttpSources | null;
}

/**
 * Where the limits and the state that a fleet shares are kept: in this process, or in the fleet's
 * Redis (`state.redis`). Chosen once, in start(); nothing else knows which.
 */
interface StateParts {
  /** Each upstream's rate, slow-down, breaker and connection leases. */
  readonly upstreams: UpstreamStateFactory;
  /** The buckets of `clients.rateLimits`. */
  readonly clientBuckets: TokenBuckets;
  /** The buckets of `limits.connectionRatePerIp`. */
  readonly connectionBuckets: TokenBuckets;
  /** The AUTH lockout's failures and locks (with `clients.authLockout`). */
  readonly lockouts: (maxTracked: number) => LockoutStore;
  readonly duplicates: DuplicateLinks;
  readonly incidentClaims: IncidentClaims;
}

function localState(config: Config): StateParts {
  const maxTracked = config.clients.rateLimits.maxTracked;
  return {
    upstreams: localUpstreamState,
    clientBuckets: new MemoryTokenBuckets(maxTracked),
    connectionBuckets: new MemoryTokenBuckets(maxTracked),
    lockouts: (max) => new MemoryLockoutStore(max),
    duplicates: new DuplicateTracker({ window: config.audit.duplicateWindow }),
    incidentClaims: OWN_CLAIMS,
  };
}

function sharedState(config: Config, link: RedisLink): StateParts {
  const maxTracked = config.clients.rateLimits.maxTracked;
  return {
    upstreams: sharedUpstreamState(link),
    clientBuckets: new RedisTokenBuckets(link, 'client_rate', 'client:', maxTracked),
    connectionBuckets: new RedisTokenBuckets(link, 'connection_rate', 'client:', maxTracked),
    lockouts: (max) => new RedisLockoutStore(link, max),
    duplicates: new RedisDuplicates(link, config.audit.duplicateWindow),
    incidentClaims: new RedisIncidentClaims(link),
  };
}

/** How long stop() lets queued alert notifications go out before dropping them. */
const ALERT_DELIVERY_GRACE_MS = 2_000;

/**
 * The composition root: the only place that constructs the parts and wires them together. Nothing
 * else holds global state; tests build as many apps as they like side by side.
 */
export class App {
  readonly config: Config;
  readonly bus: RelayBus;
  #log: Logger;
  #shutdown = new AbortController();
  #lock: DataDirLock | null = null;
  #dataDirUnlocked: string | null = null;
  #sink: LocalSink | null = null;
  #router: Router | null = null;
  #writer: AuditWriter | null = null;
  #listeners: SmtpListeners | null = null;
  #processor: TransactionProcessor | null = null;
  #recorder: Recorder | null = null;
  #observers: Observers | null = null;
  /** The fleet's Redis, with `state.redis`. */
  #link: RedisLink | null = null;
  #spool: SpoolStore | null = null;
  #spoolUnlocked: string | null = null;
  #options: AppOptions;
  /** Listeners up and not stopping: what readiness reports about the SMTP side. */
  #accepting = false;

  constructor(config: Config, log: Logger, options: AppOptions = {}) {
    this.config = config;
    this.#log = log;
    this.#options = options;
    this.bus = new EventBus<RelayEvents>((err, event) => log.error({ err, event }, 'event subscriber failed'));
    // Every transaction in flight listens on the shutdown signal; that is by design, not a leak.
    setMaxListeners(0, this.#shutdown.signal);
  }

  get auditWriteErrors(): number {
    return this.#recorder?.writeErrors ?? 0;
  }

  /** The spool (docs/spool.md): null before start, and when no listener or user is in spool or hybrid mode. */
  get spool(): SpoolStore | null {
    return this.#spool;
  }

  /** Circuit breaker state and adaptive slow-down of each upstream (empty before start). */
  upstreamHealth(): UpstreamHealth[] {
    return this.#router?.health() ?? [];
  }

  /** Throws StartError naming the part of the configuration that could not be brought up. */
  async start(): Promise<RunningInfo> {
    const { config } = this;
    await stage('dataDir', () => this.#openDataDir());
    const upstreams = await stage('local sink', () => this.#startSink(config.upstreams));
    const ids = new IdGenerator();
    const logins = await stage('upstreams', () => this.#buildLogins(upstreams));
    this.#link = isShared(config.state) ? new RedisLink(config.state, config.instance.id, this.bus, this.#log) : null;
    const state = this.#link === null ? localState(config) : sharedState(config, this.#link);
    // A Redis that cannot be reached does not stop the start: the instance starts degraded.
    await this.#link?.start();
    this.#router = Router.build({
      logins,
      upstreams,
      routes: config.routes,
      hostname: config.hostname,
      // Each waiter for a sending slot is one client transaction, so the client connection limit bounds them.
      maxWaiters: config.limits.maxConnections,
      events: this.bus,
      log: this.#log,
      state: state.upstreams,
    });
    const engine = new RelayEngine(this.#router, config.timeouts.relay);
    this.#writer = await stage('audit.file', () => AuditWriter.open({ ...config.audit, log: this.#log }));
    this.#recorder = this.#buildRecorder(this.#writer, ids);
    // Observers subscribe before the first client can connect, so they see every record.
    this.#observers = this.#buildObservers(upstreams, this.#recorder, ids, state.incidentClaims);
    // How the link started is told to them too (metrics, the built-in alert): they subscribed after it.
    if (this.#link) this.bus.publish('shared-state', this.#link.status);
    const http = (await stage('http', () => this.#observers!.http?.start())) ?? null;
    // Before any client: recovery settles what the process before left, and its records are written.
    this.#spool = await stage('spool.dir', () => this.#openSpool(this.#recorder!, ids));
    this.#processor = new TransactionProcessor({
      config,
      engine,
      recorder: this.#recorder,
      duplicates: state.duplicates,
      ids,
      log: this.#log,
      shutdownSignal: Deadline.fromAbortSignal(this.#shutdown.signal),
      spool: this.#spool,
    });
    const tls = await stage('tls', () => listenerTls(config));
    this.#listeners = new SmtpListeners({
      config,
      admission: new Admission(config.clients),
      clientLimits: new ClientRateLimits(config.clients.rateLimits, state.clientBuckets),
      connectionBuckets: state.connectionBuckets,
      authLockout: this.#buildAuthLockout(state.lockouts),
      processor: this.#processor,
      recorder: this.#recorder,
      bus: this.bus,
      ids,
      log: this.#log,
      tls,
    });
    await stage('listen', () => this.#listeners!.start());
    this.#accepting = true;
    this.#observers.probes.start();
    return {
      listeners: this.#listeners.addresses,
      auditFile: config.audit.file,
      upstreams: upstreams.map((u) => ({ name: u.name, host: u.host, port: u.port, tls: u.implicitTls ? 'implicit TLS' : `TLS ${u.tls.mode}` })),
      sinkDir: this.#sink?.dir ?? null,
      spool: this.#spool ? { dir: this.#spool.dir, entries: this.#spool.counts().total } : null,
      http: http?.address ?? null,
      sharedState: this.#link?.status ?? null,
      warnings: startupWarnings(config, {
        ephemeralCert: tls.ephemeral,
        upstreams,
        httpNotStarted: http?.error ?? null,
        auditTornTail: this.#writer.atOpen.tornTail,
        auditUnchained: this.#writer.atOpen.unchainedFile,
        dataDirUnlocked: this.#dataDirUnlocked,
        spoolUnlocked: this.#spoolUnlocked,
      }),
    };
  }

  /** What the HTTP endpoint serves (null before start or with `http` off): a supervisor asks its workers for it. */
  get httpSources(): HttpSources | null {
    return this.#observers?.sources ?? null;
  }

  /** The metrics as prom-client's JSON, for a supervisor to add up over its workers; null with `http` off. */
  async metricsJson(): Promise<unknown[] | null> {
    return (await this.#observers?.metrics?.registry.getMetricsAsJSON()) ?? null;
  }

  /** Reopen the audit file (SIGHUP after logrotate). */
  reopenAudit(): void {
    this.#writer?.reopen();
  }

  /**
   * Graceful stop: no new connections; transactions in flight finish within the shutdown grace (then
   * they are aborted and answered 451, or recorded as unknown outcome if their body already went
   * out); pools closed; the trail flushed and closed.
   */
  async stop(): Promise<void> {
    // Not ready from the first moment (a load balancer stops sending); no alerts about failures the
    // shutdown itself causes; no probe of an upstream (or local sink) that is being closed.
    this.#accepting = false;
    this.#observers?.alerts.stop();
    await this.#observers?.probes.stop();
    const listeners = this.#listeners;
    const stopped = listeners?.stop();
    await this.#drain(this.config.timeouts.shutdown);
    if (this.#processor && this.#processor.inFlight > 0) {
      this.#shutdown.abort(Object.assign(new Error('mailtrail is shutting down'), { code: ERR.SHUTDOWN }));
      await this.#drain(5_000);
    }
    listeners?.closeIdleSessions();
    await stopped;
    // Every connection's session record (and the connection-rate windows') before the trail closes.
    await listeners?.finish();
    // Every transaction is done: the spool's last writes, then its lock.
    await this.#spool?.close();
    this.#router?.close();
    // After the pools: their leases are given back through it.
    await this.#link?.close();
    await this.#sink?.stop();
    // The final checkpoint, then the file closed; rotated files finish compressing.
    this.#recorder?.close();
    await this.#writer?.idle();
    await this.#stopObservers();
    await this.#lock?.release();
  }

  /**
   * The data folder: created if missing, locked against a second process, and cleared of the spill
   * files a crash left behind (whole messages; nothing else would ever remove them).
   */
  async #openDataDir(): Promise<void> {
    const { dataDir } = this.config;
    mkdirSync(dataDir, { recursive: true });
    const attempt = await DataDirLock.acquire(dataDir);
    this.#lock = attempt.lock;
    // Not locked: a start-up warning (start() returns it; the banner and the log show it).
    this.#dataDirUnlocked = attempt.lock === null ? attempt.why : null;
    const sweep = await prepareSpillDir(dataDir);
    if (sweep.removed > 0) {
      this.#log.info({ dataDir, count: sweep.removed, bytes: sweep.bytes }, 'removed spill files left by an earlier run');
    }
    if (sweep.failed > 0) {
      this.#log.warn({ dataDir, count: sweep.failed }, 'could not remove spill files left by an earlier run');
    }
  }

  /**
   * Each upstream's login; an OAuth2 one with its token cache, whose requests are published on the bus
   * (metrics) and logged when their outcome changes. A credential file gone since the configuration was
   * checked stops the start, named by its key.
   */
  #buildLogins(upstreams: readonly UpstreamConfig[]): Map<string, UpstreamLogin | null> {
    const lastOk = new Map<string, boolean>();
    const onTokenFetch = (fetch: TokenFetch): void => {
      this.bus.publish('upstream-token', fetch);
      if (lastOk.get(fetch.upstream) === fetch.ok) return;
      lastOk.set(fetch.upstream, fetch.ok);
      if (fetch.ok) this.#log.info({ upstream: fetch.upstream, ms: Math.round(fetch.ms) }, 'upstream OAuth2 token obtained');
      else
        this.#log.warn(
          { upstream: fetch.upstream, code: fetch.error?.code, cause: fetch.error?.originalCode, error: fetch.error?.message },
          'upstream OAuth2 token request failed',
        );
    };
    return new Map(
      upstreams.map((upstream, i) => {
        try {
          return [upstream.name, upstreamLogin(upstream, onTokenFetch)] as const;
        } catch (err) {
          if (err instanceof CredentialFileError) throw new StartError(`upstreams[${i}].auth.${err.key}`, err);
          throw err;
        }
      }),
    );
  }

  /**
   * The spool, when some listener or user is in spool or hybrid mode (no folder, no lock, no cost
   * otherwise): opened, recovered, and every entry committed without its acceptance record in the
   * trail gets a `recovered` record (docs/spool.md, "Recovery"). Entries whose final dot may have gone
   * out unanswered are left as they are, listed by unknownOutcomes(), for the queue to settle.
   */
  async #openSpool(recorder: Recorder, ids: IdGenerator): Promise<SpoolStore | null> {
    const { config } = this;
    if (!usesSpool(config.listen, config.clients.users)) return null;
    const log = this.#log;
    const {
      store,
      recovery: r,
      unlocked,
    } = await SpoolStore.open({
      dir: config.spool.dir,
      minFreeSpace: config.spool.minFreeSpace,
      log,
      ...this.#options.spool,
    });
    this.#spoolUnlocked = unlocked;
    log.info({ dir: store.dir, entries: r.entries, ms: r.ms }, 'spool opened');
    if (r.tmpRemoved > 0 || r.orphanBodies.length > 0) {
      log.info(
        { dir: store.dir, tmp: r.tmpRemoved, bodies: r.orphanBodies.length },
        'removed spool files a crash left before their commit (never acknowledged)',
      );
    }
    if (r.requeued.length > 0) log.info({ count: r.requeued.length, ids: r.requeued.slice(0, 100) }, 'spool entries left delivering queued again');
    if (r.damaged.length > 0) log.error({ dir: store.dir, damaged: r.damaged.slice(0, 100) }, 'spool entries that cannot be read moved to damaged/');
    if (r.unknownOutcomes.length > 0) {
      const ids = r.unknownOutcomes.map((e) => e.id);
      log.warn(
        { count: ids.length, ids: ids.slice(0, 100) },
        'spool entries whose final dot got no answer before the last stop (the upstream may have them): left to settle',
      );
    }
    for (const entry of r.unrecorded) {
      try {
        const written = recorder.spool(
          spoolRecord({
            id: ids.next(),
            spoolId: entry.id,
            event: 'recovered',
            reason: 'in the spool without its acceptance record (a crash between the two): it is delivered as queued',
          }),
        );
        if (written) await store.markRecorded(entry.id);
      } catch (err) {
        // The next start tries again; the entry is delivered either way.
        log.error({ err, id: entry.id }, 'could not record a recovered spool entry');
      }
    }
    return store;
  }

  /**
   * Probes, readiness, metrics, the recent-transaction cache, error groups and the alert engine with
   * its sinks; all fed by the bus only. The HTTP endpoint serves them when `http` is configured.
   */
  #buildObservers(upstreams: readonly UpstreamConfig[], recorder: Recorder, ids: IdGenerator, claims: IncidentClaims): Observers {
    const { config, bus } = this;
    const log = this.#log;
    const names = upstreams.map((u) => u.name);
    const probes = new UpstreamProbes(
      this.#router!.channels.map((c) => c.pool),
      this.#router!,
      bus,
      log,
    );
    const readiness = new Readiness(bus, {
      upstreams: names,
      probed: probes.probed,
      listeners: () => (this.#accepting ? (this.#listeners?.addresses ?? []) : []),
      ...(this.#link ? { sharedState: () => this.#link!.status } : {}),
    });
    const served = config.http !== null;
    const metrics = served
      ? new Metrics(bus, {
          upstreams: names,
          oauth2Upstreams: upstreams.filter((u) => u.auth?.type === 'oauth2').map((u) => u.name),
          sinks: config.alerts.sinks.map((s) => s.name),
          sessionsActive: () => this.#listeners?.activeSessions ?? 0,
          processMetrics: true,
          sharedState: this.#link !== null,
        })
      : null;
    const recent = served ? new RecentTransactions(bus) : null;
    const errors = served ? new ErrorGroups(bus) : null;
    const { alerts: alertsConfig } = config;
    const emailSinks: EmailSink[] = [];
    const sinks = alertsConfig.sinks.map((s) => {
      if (s.kind === 'webhook') return new WebhookSink(s);
      const sink = new EmailSink(s, config.hostname, alertsConfig.delivery.timeout);
      emailSinks.push(sink);
      return sink;
    });
    const delivery = new DeliveryQueue(sinks, alertsConfig.delivery, bus, log);
    const alerts = new AlertEngine({
      config: alertsConfig,
      upstreams,
      bus,
      recorder,
      ids,
      delivery,
      emailServers: new Map(emailSinks.map((s) => [s.name, s.server])),
      store: new IncidentStore(join(config.dataDir, 'alerts-open.json'), log),
      claims,
      log,
      hostname: config.hostname,
      ...(config.clients.authLockout ? { authQuietMs: 2 * config.clients.authLockout.maxLockout } : {}),
    });
    alerts.start();
    const sources: HttpSources | null = served
      ? {
          metrics,
          readiness: () => readiness.report(),
          transaction: (id) => recent?.get(id),
          byMessageId: (messageId) => recent?.byMessageId(messageId) ?? [],
          errors: () => errors?.list() ?? [],
        }
      : null;
    const http = config.http === null || sources === null || this.#options.httpServer === false ? null : new ObservabilityServer(config.http, sources, log);
    const breakerRecords = new BreakerRecords(bus, recorder, ids);
    return { probes, breakerRecords, readiness, metrics, recent, errors, alerts, delivery, emailSinks, http, sources };
  }

  /** Last: queued alert notices get a short grace; the endpoint answers until the very end. */
  async #stopObservers(): Promise<void> {
    const o = this.#observers;
    if (!o) return;
    await o.delivery.stop(ALERT_DELIVERY_GRACE_MS);
    for (const sink of o.emailSinks) sink.close();
    o.metrics?.close();
    o.recent?.close();
    o.errors?.close();
    o.breakerRecords.close();
    o.readiness.close();
    await o.http?.stop();
  }

  async #drain(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (this.#processor && this.#processor.inFlight > 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /**
   * The AUTH lockout over its store (this process's, or the fleet's on Redis, so a lockout spans the
   * instances). Its events feed metrics and alerts; each lockout is logged.
   */
  #buildAuthLockout(lockouts: StateParts['lockouts']): AuthLockout {
    const config = this.config.clients.authLockout;
    const store = config === null ? null : lockouts(config.maxTracked);
    return new AuthLockout(config, store, (event: AuthEvent) => {
      if (event.kind === 'lockout') {
        const { scope, address, level, durationMs } = event;
        this.#log.warn({ scope, address, level, durationMs }, 'AUTH locked after repeated failures');
      }
      this.bus.publish('auth', event);
    });
  }

  /** The recorder with `audit.*`: privacy, write-failure policy, checkpoints when the chain is on. */
  #buildRecorder(writer: AuditWriter, ids: IdGenerator): Recorder {
    const audit = this.config.audit;
    let checkpoints: Checkpointer | null = null;
    if (audit.chain) {
      checkpoints = new Checkpointer(writer, ids, this.#log, {
        every: audit.checkpoint.every,
        interval: audit.checkpoint.interval,
        signer: audit.checkpoint.signingKey === null ? null : loadSigner(audit.checkpoint.signingKey),
        copyFile: audit.checkpoint.file,
        instance: this.config.instance.id,
      });
      checkpoints.start();
    }
    return new Recorder(writer, this.bus, this.#log, {
      onWriteFailure: audit.onWriteFailure,
      privacy: new RecordPrivacy(audit.privacy, audit.hmacKey),
      checkpoints,
      instance: this.config.instance.id,
    });
  }

  /** In the embedded default, start the local sink and point the `local-sink` upstream at its port. */
  async #startSink(upstreams: readonly UpstreamConfig[]): Promise<readonly UpstreamConfig[]> {
    const sinkConfig = this.config.localSink;
    if (!sinkConfig) return upstreams;
    this.#sink = new LocalSink(sinkConfig.dir, sinkConfig.keep, this.#log);
    await this.#sink.start();
    const port = this.#sink.port;
    return upstreams.map((u) => (u.name === 'local-sink' ? { ...u, host: '127.0.0.1', port } : u));
  }
}

/**
 * A part of the configuration that could not be brought up at start-up (a port in use, an audit
 * folder that cannot be written, an unreadable certificate), named by its key, with the system error.
 */
export class StartError extends Error {
  readonly code = ERR.START;
  readonly part: string;

  constructor(part: string, cause: Error) {
    super(`${part}: ${cause.message}`, { cause });
    this.part = part;
  }
}

async function stage<T>(part: string, run: () => T | Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw err instanceof StartError ? err : new StartError(part, err as Error);
  }
}
