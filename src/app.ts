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
import { QueueAdmin } from './spool/queue-admin.js';
import { QueueControl } from './spool/queue-control.js';
import { StoreQueueActions } from './spool/store-queue-actions.js';
import { ManagerQueueActions } from './spool/manager-queue-actions.js';
import { QueueManager } from './spool/queue-manager.js';
import { DeliveryEvents, deliveryEndpointLabels } from './spool/delivery-events.js';
import { usesSpool } from './transaction/delivery-mode.js';
import { Access } from './console/access.js';
import { ConsoleApi } from './console/console-api.js';
import { LiveStream } from './console/live-stream.js';
import { ConsoleLogin } from './console/login.js';
import type { SpoolControl } from './console/queue.js';
import { ScopedErrors } from './console/scoped-errors.js';
import { SearchIndex } from './console/search/search-index.js';
import { SessionStore } from './console/sessions.js';
import { LiveStats } from './console/stats.js';
import { SpoolQueue } from './console/spool-queue.js';
import { StaticFiles } from './console/static-files.js';
import { TokenStates } from './console/token-states.js';
import { isLoopbackHost } from './config/fields.js';

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
  readonly spool?: {
    readonly freeSpace?: FreeSpaceProbe;
    readonly fileOps?: Partial<SpoolFileOps>;
    /** false: messages are accepted into the spool and never delivered from it (tests of acceptance alone). */
    readonly deliver?: boolean;
    /** How often the queue is looked at without a reason (the expiry sweep, parked upstreams' trials), ms. */
    readonly tickMs?: number;
  };
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
  readonly console: ConsoleParts | null;
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

/** The console's parts that run on their own (docs/console.md). */
interface ConsoleParts {
  readonly api: ConsoleApi;
  readonly index: SearchIndex | null;
  readonly stats: LiveStats;
  readonly stream: LiveStream;
  readonly errors: ScopedErrors;
  readonly tokens: TokenStates;
}

/** How often the search index looks for new lines in the trail. */
const INDEX_POLL_MS = 250;

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
  #control: QueueControl | null = null;
  #queue: QueueManager | null = null;
  #deliveryEvents: DeliveryEvents | null = null;
  #options: AppOptions;
  /** Listeners up and not stopping: what readiness reports about the SMTP side. */
  #accepting = false;
  /** The spool, when one is configured: the console's queue endpoints act through it. */
  #spoolControl: SpoolControl | null = null;
  /** stop() has begun. */
  #stopping = false;

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

  /** Delivery from the spool, and the operator's actions on it: null when there is no spool (or it is not delivered). */
  get queue(): QueueManager | null {
    return this.#queue;
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
    if (this.#spool !== null && this.#options.spool?.deliver !== false) {
      this.#queue = await stage('spool', () => this.#startQueue(this.#spool!, engine, this.#recorder!, ids, upstreams));
    }
    this.#control = this.#buildQueueControl(this.#spool, this.#queue, this.#recorder, ids);
    this.#processor = new TransactionProcessor({
      config,
      engine,
      recorder: this.#recorder,
      duplicates: state.duplicates,
      ids,
      log: this.#log,
      shutdownSignal: Deadline.fromAbortSignal(this.#shutdown.signal),
      spool: this.#spool,
      queue: this.#queue,
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

  /**
   * The spool the console's queue endpoints act through (docs/api.md, "Queue"): the spool passes
   * itself here when it is configured. Without one, those endpoints answer 404 `no_spool`.
   */
  attachSpool(spool: SpoolControl): void {
    this.#spoolControl = spool;
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
    this.#stopping = true;
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
    // Deliveries from the spool get the shutdown grace, then are stopped (settled at the next start).
    await this.#queue?.stop(this.config.timeouts.shutdown);
    await this.#deliveryEvents?.stop(ALERT_DELIVERY_GRACE_MS);
    // Every transaction is done: the queue actions being answered, the spool's last writes, then its lock.
    await this.#control?.close();
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
   * The queue's control protocol on the data folder's lock socket (docs/spool.md, "Operating the
   * queue"): `mailtrail queue` asks the running relay there. One socket for both: the lock already
   * tells a live relay from a dead one, and its file mode keeps it to the relay's own user. Actions act
   * through the queue manager; a relay without a spool answers that it has none.
   */
  #buildQueueControl(spool: SpoolStore | null, queue: QueueManager | null, recorder: Recorder, ids: IdGenerator): QueueControl {
    const { config } = this;
    const admin =
      spool === null
        ? null
        : new QueueAdmin(
            { summaries: () => spool.list(), get: (id) => spool.get(id) },
            // The queue manager's actions wait for an attempt in flight; without it (a relay started
            // not to deliver), the store's own refuse an entry being delivered.
            queue !== null
              ? new ManagerQueueActions(queue, spool)
              : new StoreQueueActions({
                  store: spool,
                  recorder,
                  ids,
                  log: this.#log,
                  hostname: config.hostname,
                  dsn: config.spool.dsn,
                  maxAge: config.spool.maxAge,
                }),
          );
    // The console's queue endpoints act through the same admin as `mailtrail queue`.
    if (admin !== null) this.#spoolControl = new SpoolQueue(admin, () => new Map([...(queue?.parked.keys() ?? [])].map((name) => [name, 1])));
    const control = new QueueControl(admin, this.#log);
    this.#lock?.serve((socket) => control.handle(socket));
    return control;
  }

  /**
   * Delivery from the spool (docs/spool.md): the delivery-event outbox when `spool.events` has
   * endpoints, then the queue manager, which first settles the entries whose final dot got no answer
   * before the last stop.
   */
  async #startQueue(store: SpoolStore, engine: RelayEngine, recorder: Recorder, ids: IdGenerator, upstreams: readonly UpstreamConfig[]): Promise<QueueManager> {
    const { config } = this;
    if (config.spool.events.length > 0) {
      this.#deliveryEvents = new DeliveryEvents({
        dir: join(store.dir, 'events'),
        endpoints: config.spool.events,
        host: config.hostname,
        ids,
        bus: this.bus,
        log: this.#log,
      });
      await this.#deliveryEvents.start();
    }
    const queue = new QueueManager({
      store,
      engine,
      recorder,
      ids,
      bus: this.bus,
      events: this.#deliveryEvents,
      upstreams,
      settings: {
        first: config.spool.retry.first,
        max: config.spool.retry.max,
        maxAge: config.spool.maxAge,
        unknownOutcome: config.spool.unknownOutcome,
        concurrency: config.spool.concurrency,
        dsn: config.spool.dsn,
        hostname: config.hostname,
      },
      log: this.#log,
      ...(this.#options.spool?.tickMs === undefined ? {} : { tickMs: this.#options.spool.tickMs }),
    });
    await queue.start();
    return queue;
  }

  /**
   * Probes, readiness, metrics, the recent-transaction cache, error groups and the alert engine with
   * its sinks; all fed by the bus only. The HTTP endpoint serves them when `http` is configured.
   */
  #buildObservers(upstreams: readonly UpstreamConfig[], recorder: Recorder, ids: IdGenerator, claims: IncidentClaims): Observers {
    const { config, bus } = this;
    const log = this.#log;
    const names = upstreams.map((u) => u.name);
    // The spool is opened after the observers (its recovery writes records they must see): they read it lazily.
    const spools = usesSpool(config.listen, config.clients.users);
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
      ...(spools ? { spool: () => this.#spool?.acceptProblem() ?? null } : {}),
      ...(this.#link ? { sharedState: () => this.#link!.status } : {}),
    });
    const spoolFigures = {
      counts: () => this.#spool?.counts() ?? { queued: 0, delivering: 0, held: 0, oldestWaitingAt: null },
      freeBytes: () => this.#spool?.measureFreeBytes() ?? null,
      minFreeSpace: config.spool.minFreeSpace,
    };
    const served = config.http !== null;
    const metrics = served
      ? new Metrics(bus, {
          upstreams: names,
          oauth2Upstreams: upstreams.filter((u) => u.auth?.type === 'oauth2').map((u) => u.name),
          sinks: config.alerts.sinks.map((s) => s.name),
          sessionsActive: () => this.#listeners?.activeSessions ?? 0,
          processMetrics: true,
          spool: spools ? { ...spoolFigures, eventEndpoints: deliveryEndpointLabels(config.spool.events) } : null,
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
      spool: spools ? spoolFigures : null,
    });
    alerts.start();
    const consoleParts = config.http !== null && config.console.enabled ? this.#buildConsole(config.http, readiness, errors, names) : null;
    const sources: HttpSources | null = served
      ? {
          metrics,
          readiness: () => readiness.report(),
          transaction: (id) => recent?.get(id),
          byMessageId: (messageId) => recent?.byMessageId(messageId) ?? [],
          spoolFollowUp: (spoolId) => recent?.spoolFollowUp(spoolId) ?? [],
          errors: () => errors?.list() ?? [],
          // The console reads this process's trail; a supervisor serves none (docs/console.md).
          console: consoleParts?.api ?? null,
        }
      : null;
    const http = config.http === null || sources === null || this.#options.httpServer === false ? null : new ObservabilityServer(config.http, sources, log);
    const breakerRecords = new BreakerRecords(bus, recorder, ids);
    return { probes, breakerRecords, readiness, metrics, recent, errors, alerts, delivery, emailSinks, http, sources, console: consoleParts };
  }

  /**
   * The console: login and sessions, the search index in its worker (beside the trail), the live
   * statistics and stream from the bus. The index starts at once; the statistics of the day before
   * the start are read from it once it has caught up with the trail.
   */
  #buildConsole(http: NonNullable<Config['http']>, readiness: Readiness, errors: ErrorGroups | null, upstreams: readonly string[]): ConsoleParts {
    const { config, bus } = this;
    const log = this.#log;
    const c = config.console;
    const sessions = new SessionStore(c.sessionIdle);
    const login = new ConsoleLogin(c.users, http.token, config.clients.authLockout, (event) => {
      if (event.kind === 'lockout')
        log.warn({ scope: event.scope, address: event.address, durationMs: event.durationMs }, 'console login locked after repeated failures');
    });
    // Nothing to log in with: only on loopback (the schema refuses it elsewhere), where the console is open.
    const open = login.open && isLoopbackHost(http.host);
    const trail = config.audit.file;
    const index =
      trail === '-'
        ? null
        : new SearchIndex(
            { trail, indexPath: `${trail}.search.db`, pollMs: INDEX_POLL_MS, privacy: { mode: config.audit.privacy, key: config.audit.hmacKey } },
            log,
          );
    index?.start();
    const stats = new LiveStats(bus);
    if (index) void this.#loadStatsHistory(index, stats);
    const stream = new LiveStream(bus);
    const scoped = new ScopedErrors(
      bus,
      () => errors?.list() ?? [],
      c.users.flatMap((u) => u.scope?.users ?? []),
    );
    const tokens = new TokenStates(
      bus,
      config.upstreams.filter((u) => u.auth?.type === 'oauth2').map((u) => u.name),
    );
    const api = new ConsoleApi({
      access: new Access(sessions, http.token, open, c.secureCookies),
      sessions,
      login,
      index,
      stats,
      stream,
      errors: scoped,
      readiness: () => readiness.report(),
      upstreams,
      tokens,
      spool: () => this.#spoolControl,
      privacy: { mode: config.audit.privacy, key: config.audit.hmacKey },
      files: new StaticFiles(),
      bus,
      log,
    });
    return { api, index, stats, stream, errors: scoped, tokens };
  }

  /** Waits for the index to catch up (it may be building), then adds the day before the start. */
  async #loadStatsHistory(index: SearchIndex, stats: LiveStats): Promise<void> {
    for (let tries = 0; tries < 3_600 && !this.#stopping; tries++) {
      const status = await index.status().catch(() => null);
      if (status?.state === 'following') {
        await stats
          .loadHistory((since, until) => index.history(since, until))
          .catch((err: unknown) => this.#log.warn({ err }, 'console statistics: no history from the index'));
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 2_000).unref());
    }
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
    if (o.console) {
      o.console.stream.close();
      o.console.api.close();
      o.console.stats.close();
      o.console.errors.close();
      o.console.tokens.close();
      await o.console.index?.stop();
    }
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
