/**
 * `mailtrail serve --workers N` (docs/fleet.md, "Several processes on one machine"): N worker
 * processes share the listeners through Node's cluster module; this process supervises them.
 *
 * Why cluster and not SO_REUSEPORT: Node 20 (the oldest Node mailtrail supports) cannot set
 * SO_REUSEPORT on a TCP server (`reusePort` came in Node 22.12). The cluster module's default on
 * Linux is round-robin: this process accepts every connection and hands it to the next worker in
 * turn, which spreads connections evenly; letting the workers accept from one shared socket instead
 * (SCHED_NONE) leaves the choice to the kernel, which wakes the same few processes under load.
 * The cost of round-robin is one more hop per connection (not per message), measured in
 * `npm run bench`.
 *
 * The supervisor: starts the workers and waits for all of them before it announces anything (one
 * banner, one `mailtrail started` line); serves the one HTTP endpoint, adding up the workers'
 * metrics (prom-client's aggregation) and asking each for readiness and the API; passes SIGTERM /
 * SIGINT (graceful stop: each worker finishes its transactions) and SIGHUP (reopen the trails) to
 * every worker; restarts a worker that dies, with a growing delay when it dies right after start;
 * and holds the data folder's lock, so no other relay takes the folder the workers' folders are in.
 */
import cluster, { type Worker } from 'node:cluster';
import { mkdirSync } from 'node:fs';
import { AggregatorRegistry, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { RunningInfo } from '../app.js';
import type { Config } from '../config/types.js';
import { DataDirLock } from '../data-dir-lock.js';
import type { Logger } from '../logger.js';
import type { ErrorGroup } from '../observe/error-groups.js';
import { ObservabilityServer, type HttpSources } from '../observe/http-server.js';
import type { ReadinessReport } from '../observe/readiness.js';
import type { RecentRecord, SpoolFollowUp } from '../observe/recent-transactions.js';
import { announceStart, type StartupStreams } from '../startup-output.js';
import { isMessage, type FromWorker, type Query, type ToWorker } from './worker-messages.js';

/** The environment variable that tells a forked process which worker it is (1-based). */
export const WORKER_ENV = 'MAILTRAIL_WORKER';

/** How long the supervisor waits for a worker's answer to an HTTP query. */
const QUERY_TIMEOUT_MS = 2_000;
/** A worker that dies sooner than this after its start is restarted after a growing delay. */
const QUICK_DEATH_MS = 5_000;
const MAX_RESTART_DELAY_MS = 30_000;

interface Slot {
  readonly n: number;
  worker: Worker | null;
  startedAt: number;
  ready: boolean;
  /** Restarts in a row after quick deaths, for the delay. */
  quickDeaths: number;
  restartTimer: NodeJS.Timeout | null;
}

export class Supervisor {
  #config: Config;
  #count: number;
  #log: Logger;
  #slots: Slot[];
  #stopping = false;
  #lock: DataDirLock | null = null;
  #http: ObservabilityServer | null = null;
  #nextQuery = 1;
  #pending = new Map<number, (value: unknown) => void>();
  #registry = new Registry();
  #restarts = new Counter({ name: 'mailtrail_worker_restarts_total', help: 'Workers restarted after they died.', registers: [this.#registry] });

  constructor(config: Config, count: number, log: Logger) {
    this.#config = config;
    this.#count = count;
    this.#log = log;
    this.#slots = Array.from({ length: count }, (_, i) => ({ n: i + 1, worker: null, startedAt: 0, ready: false, quickDeaths: 0, restartTimer: null }));
    const slots = this.#slots;
    new Gauge({
      name: 'mailtrail_workers',
      help: 'Worker processes by state: ready (serving) or down (starting, restarting).',
      labelNames: ['state'] as const,
      registers: [this.#registry],
      collect() {
        const ready = slots.filter((s) => s.ready).length;
        this.set({ state: 'ready' }, ready);
        this.set({ state: 'down' }, slots.length - ready);
      },
    });
  }

  /** Starts every worker; resolves with the process exit code once they have all stopped. */
  async run(streams: StartupStreams): Promise<number> {
    mkdirSync(this.#config.dataDir, { recursive: true });
    try {
      this.#lock = (await DataDirLock.acquire(this.#config.dataDir)).lock;
    } catch (err) {
      process.stderr.write(`mailtrail: cannot start: dataDir: ${(err as Error).message}\n`);
      return 1;
    }
    const started = await Promise.all(this.#slots.map((slot) => this.#fork(slot)));
    const failed = started.find((s) => s.kind === 'failed');
    if (failed?.kind === 'failed') {
      process.stderr.write(`mailtrail: cannot start: ${failed.message}\n`);
      await this.#stopAll();
      return 1;
    }
    const infos = started.map((s) => (s.kind === 'ready' ? s.info : null)).filter((i): i is RunningInfo => i !== null);
    const http = await this.#startHttp();
    const first = infos[0]!;
    announceStart(
      {
        ...first,
        auditFile: `${this.#config.audit.file}.w1 … .w${this.#count}`,
        http,
        workers: { count: this.#count, instances: this.#slots.map((s) => `${this.#config.instance.id}.w${s.n}`) },
      },
      this.#config,
      streams,
      this.#log,
    );
    return new Promise<number>((resolve) => {
      const stop = (signal: string): void => {
        if (this.#stopping) return;
        this.#log.info({ signal }, 'shutting down: every worker finishes its transactions in flight');
        void this.#stopAll().then(() => {
          this.#log.info('stopped');
          resolve(0);
        });
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      process.on('SIGHUP', () => {
        this.#broadcast({ t: 'reopen' });
        this.#log.info({ workers: this.#count }, 'audit files reopened (SIGHUP passed to every worker)');
      });
    });
  }

  /** Forks worker `slot.n`; resolves when it is ready, failed to start, or died first. */
  #fork(slot: Slot): Promise<{ kind: 'ready'; info: RunningInfo } | { kind: 'failed'; message: string }> {
    const worker = cluster.fork({ [WORKER_ENV]: String(slot.n) });
    slot.worker = worker;
    slot.startedAt = Date.now();
    slot.ready = false;
    return new Promise((resolve) => {
      let settled = false;
      worker.on('message', (message: unknown) => {
        if (!isMessage<FromWorker>(message)) return;
        if (message.t === 'answer') {
          this.#pending.get(message.id)?.(message.value);
          this.#pending.delete(message.id);
        } else if (message.t === 'ready') {
          slot.ready = true;
          settled = true;
          resolve({ kind: 'ready', info: message.info });
        } else if (message.t === 'start-failed') {
          settled = true;
          resolve({ kind: 'failed', message: `worker ${slot.n}: ${message.message}` });
        }
      });
      worker.on('exit', (code, signal) => {
        // Only a worker that served is restarted here; one that failed to start was answered above.
        const served = slot.ready;
        slot.ready = false;
        slot.worker = null;
        if (!settled) {
          settled = true;
          resolve({ kind: 'failed', message: `worker ${slot.n} exited before it was ready (${signal ?? `exit code ${code}`})` });
          return;
        }
        if (!this.#stopping && served) this.#restart(slot, code, signal);
      });
    });
  }

  /** A worker died while serving: logged, and started again (later, if it keeps dying at once). */
  #restart(slot: Slot, code: number | null, signal: string | null): void {
    const lived = Date.now() - slot.startedAt;
    slot.quickDeaths = lived < QUICK_DEATH_MS ? slot.quickDeaths + 1 : 0;
    const delay = slot.quickDeaths === 0 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 1_000 * 2 ** (slot.quickDeaths - 1));
    const instance = `${this.#config.instance.id}.w${slot.n}`;
    this.#log.error({ worker: slot.n, workerInstance: instance, code, signal, livedMs: lived, restartInMs: delay }, 'worker died; restarting it');
    this.#restarts.inc();
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null;
      if (this.#stopping) return;
      void this.#fork(slot).then((result) => {
        if (result.kind === 'ready') {
          this.#log.info({ worker: slot.n, workerInstance: instance }, 'worker restarted');
          return;
        }
        // Tried again, later each time (the delay doubles up to MAX_RESTART_DELAY_MS).
        this.#log.error({ worker: slot.n, workerInstance: instance, reason: result.message }, 'worker did not start again');
        if (!this.#stopping) this.#restart(slot, null, null);
      });
    }, delay);
  }

  /** Every worker stops gracefully (each finishes its transactions); then the endpoint and the lock go. */
  async #stopAll(): Promise<void> {
    this.#stopping = true;
    for (const slot of this.#slots) if (slot.restartTimer) clearTimeout(slot.restartTimer);
    const exits = this.#slots
      .map((slot) => slot.worker)
      .filter((w): w is Worker => w !== null)
      .map((worker) => new Promise<void>((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve()))));
    this.#broadcast({ t: 'stop' });
    await Promise.all(exits);
    await this.#http?.stop();
    await this.#lock?.release();
  }

  #broadcast(message: ToWorker): void {
    for (const slot of this.#slots) {
      if (slot.worker?.isConnected()) slot.worker.send(message);
    }
  }

  /** The one HTTP endpoint of the machine, serving what the workers know (docs/fleet.md). */
  async #startHttp(): Promise<{ host: string; port: number } | null> {
    const http = this.#config.http;
    if (http === null) return null;
    const sources: HttpSources = {
      metrics: { contentType: this.#registry.contentType, render: () => this.#metrics() },
      readiness: () => this.#readiness(),
      transaction: async (key) => (await this.#askAll<RecentRecord | null>({ what: 'transaction', key })).find((r) => r !== null) ?? undefined,
      byMessageId: async (key) =>
        (await this.#askAll<RecentRecord[] | null>({ what: 'byMessageId', key })).flatMap((r) => r ?? []).sort((a, b) => (a.time < b.time ? -1 : 1)),
      // A message is spooled by the worker that accepted it, in its own data folder: one answers.
      spoolFollowUp: async (key) => (await this.#askAll<SpoolFollowUp[] | null>({ what: 'spoolFollowUp', key })).flatMap((r) => r ?? []),
      errors: async () => (await this.#askAll<ErrorGroup[] | null>({ what: 'errors' })).flatMap((g) => g ?? []).sort((a, b) => b.count - a.count),
      // Each worker keeps its own trail, and the console searches one (docs/console.md, "Limits").
      console: null,
    };
    this.#http = new ObservabilityServer(http, sources, this.#log);
    const started = await this.#http.start();
    return started.address;
  }

  /** Every worker's metrics added up (gauges as their `aggregator` says), and the supervisor's own. */
  async #metrics(): Promise<string> {
    const own = await this.#registry.getMetricsAsJSON();
    const parts = (await this.#askAll<MetricObjectWithValues<MetricValue<string>>[] | null>({ what: 'metrics' })).filter((m) => m !== null);
    return AggregatorRegistry.aggregate([...parts, own]).metrics();
  }

  /** Ready when every worker is up and ready; the report names each worker's reasons. */
  async #readiness(): Promise<ReadinessReport & { workers: { instance: string; ready: boolean; reasons: readonly string[] }[] }> {
    const reports = await Promise.all(
      this.#slots.map((slot) => (slot.ready && slot.worker ? this.#ask<ReadinessReport | null>(slot.worker, { what: 'readiness' }) : Promise.resolve(null))),
    );
    const workers = this.#slots.map((slot, i) => {
      const report = reports[i];
      return { instance: `${this.#config.instance.id}.w${slot.n}`, ready: report?.ready ?? false, reasons: report?.reasons ?? ['worker not running'] };
    });
    const first = reports.find((r): r is ReadinessReport => r != null);
    const reasons = workers.flatMap((w) => w.reasons.map((r) => `${w.instance}: ${r}`));
    // Each worker has its own spool (its data folder): the machine takes messages while every one does.
    const spools = reports.flatMap((r) => (r?.spool ? [r.spool] : []));
    const spool = spools.length === 0 ? null : (spools.find((s) => !s.accepting) ?? spools[0]!);
    // With state.redis each worker has its own link to Redis: a degraded one is what the operator must see.
    const sharedState = reports.find((r) => r?.sharedState?.mode === 'degraded')?.sharedState ?? first?.sharedState ?? null;
    return { ready: workers.every((w) => w.ready), reasons, listeners: first?.listeners ?? [], upstreams: first?.upstreams ?? [], spool, sharedState, workers };
  }

  async #askAll<T>(query: Query): Promise<T[]> {
    const live = this.#slots.filter((s) => s.ready && s.worker).map((s) => s.worker!);
    return (await Promise.all(live.map((w) => this.#ask<T>(w, query)))).filter((v): v is Awaited<T> => v !== undefined);
  }

  /** One worker's answer, or undefined when it does not answer in time (it may be stopping). */
  #ask<T>(worker: Worker, query: Query): Promise<T | undefined> {
    const id = this.#nextQuery++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(undefined);
      }, QUERY_TIMEOUT_MS);
      this.#pending.set(id, (value) => {
        clearTimeout(timer);
        resolve(value as T);
      });
      worker.send({ t: 'query', id, query } satisfies ToWorker);
    });
  }
}
