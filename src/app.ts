import { setMaxListeners } from 'node:events';
import { mkdirSync } from 'node:fs';
import type { Config, UpstreamConfig } from './config/types.js';
import { AuditWriter } from './audit/audit-writer.js';
import { Recorder } from './audit/recorder.js';
import { IdGenerator } from './ids.js';
import { EventBus } from './observe/event-bus.js';
import type { Logger } from './observe/logger.js';
import { ConnectionPool } from './relay/connection-pool.js';
import { RelayEngine } from './relay/relay-engine.js';
import { TransactionProcessor } from './relay/transaction.js';
import { LocalSink } from './sink/local-sink.js';
import { Admission } from './smtp/admission.js';
import { listenerTls } from './smtp/ephemeral-cert.js';
import { SmtpListeners } from './smtp/listener.js';

export interface RunningInfo {
  readonly listeners: readonly { host: string; port: number; implicitTls: boolean }[];
  readonly auditFile: string;
  readonly upstreams: readonly { name: string; host: string; port: number }[];
  readonly sinkDir: string | null;
  readonly ephemeralCert: boolean;
}

/**
 * The composition root: the only place that constructs the parts and wires them together. Nothing
 * else holds global state; tests build as many apps as they like side by side.
 */
export class App {
  readonly config: Config;
  readonly bus: EventBus;
  #log: Logger;
  #shutdown = new AbortController();
  #sink: LocalSink | null = null;
  #pools: ConnectionPool[] = [];
  #writer: AuditWriter | null = null;
  #listeners: SmtpListeners | null = null;
  #processor: TransactionProcessor | null = null;
  #recorder: Recorder | null = null;

  constructor(config: Config, log: Logger) {
    this.config = config;
    this.#log = log;
    this.bus = new EventBus((err, event) => log.error({ err, event }, 'event subscriber failed'));
    // Every transaction in flight listens on the shutdown signal; that is by design, not a leak.
    setMaxListeners(0, this.#shutdown.signal);
  }

  get auditWriteErrors(): number {
    return this.#recorder?.writeErrors ?? 0;
  }

  async start(): Promise<RunningInfo> {
    const { config } = this;
    mkdirSync(config.dataDir, { recursive: true });
    const upstreams = await this.#startSink(config.upstreams);
    const ids = new IdGenerator();
    this.#pools = upstreams.map((u) => new ConnectionPool(u, config.hostname));
    const engine = new RelayEngine(this.#pools, config.timeouts.relay);
    this.#writer = new AuditWriter(config.audit.file, config.audit.fsync);
    this.#recorder = new Recorder(this.#writer, this.bus, this.#log);
    this.#processor = new TransactionProcessor({
      config,
      engine,
      recorder: this.#recorder,
      ids,
      log: this.#log,
      shutdownSignal: this.#shutdown.signal,
    });
    const tls = await listenerTls(config, this.#log);
    this.#listeners = new SmtpListeners({
      config,
      admission: new Admission(config.clients),
      processor: this.#processor,
      recorder: this.#recorder,
      ids,
      log: this.#log,
      tls,
    });
    await this.#listeners.start();
    return {
      listeners: this.#listeners.addresses,
      auditFile: config.audit.file,
      upstreams: upstreams.map((u) => ({ name: u.name, host: u.host, port: u.port })),
      sinkDir: this.#sink?.dir ?? null,
      ephemeralCert: tls.ephemeral,
    };
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
    const listeners = this.#listeners;
    const stopped = listeners?.stop();
    await this.#drain(this.config.timeouts.shutdown);
    if (this.#processor && this.#processor.inFlight > 0) {
      this.#shutdown.abort(Object.assign(new Error('mailtrail is shutting down'), { code: 'ESHUTDOWN' }));
      await this.#drain(5_000);
    }
    listeners?.closeIdleSessions();
    await stopped;
    for (const pool of this.#pools) pool.close();
    await this.#sink?.stop();
    this.#writer?.close();
  }

  async #drain(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (this.#processor && this.#processor.inFlight > 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 25));
    }
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
