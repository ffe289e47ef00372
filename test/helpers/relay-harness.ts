import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type AppOptions } from '../../src/app.js';
import type { AuditRecord, RejectRecord, RelayRecord, SessionRecord } from '../../src/audit/records.js';
import type { ClientsConfig, Config, LimitsConfig, UpstreamConfig } from '../../src/config/types.js';
import type { UpstreamAuth } from '../../src/config/upstream-auth.js';
import { createLogger, type Logger } from '../../src/logger.js';
import { spillDir } from '../../src/buffer/temp-files.js';
import { makeTestPki, type TestPki } from './pki.js';
import { sendMessage, type SendMessageOptions, type SendResult } from './smtp-client.js';

export interface UpstreamSpec {
  name?: string;
  port: number;
  host?: string;
  implicitTls?: boolean;
  /** A password (`{ user, pass }`, type implied) or a whole `auth` as loaded (an OAuth2 one). */
  auth?: { user: string; pass: string } | UpstreamAuth | null;
  tls?: Partial<UpstreamConfig['tls']>;
  timeouts?: Partial<UpstreamConfig['timeouts']>;
  pool?: Partial<UpstreamConfig['pool']>;
  /** null = no breaker; default as in production (5 failures, 30 s cooldown). */
  breaker?: Partial<NonNullable<UpstreamConfig['breaker']>> | null;
  rateLimit?: Partial<Omit<UpstreamConfig['rateLimit'], 'backoff'>> & { backoff?: Partial<UpstreamConfig['rateLimit']['backoff']> };
  /** Health probe; default off here (tests count upstream connections), on in production. */
  probe?: Partial<UpstreamConfig['probe']>;
}

export interface RelaySpec {
  upstreams: UpstreamSpec[];
  clients?: Partial<ClientsConfig>;
  limits?: Partial<LimitsConfig>;
  tls?: { cert: string; key: string } | null;
  implicitTlsListener?: boolean;
  /** A listener taking the PROXY protocol from these networks (its port: `proxyPort`). */
  proxyListener?: { trustedProxies: string[]; implicitTls?: boolean };
  /** `timeouts.proxyHeader`; default 5 s. */
  proxyHeaderTimeout?: number;
  /** `instance.id`; default `test-relay`. */
  instance?: string;
  relayTimeout?: number;
  clientIdle?: number;
  /** Client deadlines over the defaults (command: clientIdle + 1 min, session: 10 min, dataMinRate: 500 B/s). */
  deadlines?: Partial<Pick<Config['timeouts'], 'command' | 'session' | 'dataMinRate'>>;
  unknownOutcomeReply?: 451 | 250;
  auditFile?: string;
  /** Ordered routes over the upstreams' names; default none (every upstream in order). */
  routes?: Config['routes'];
  /** Audit settings over the defaults (chain on, no rotation, refuse on write failure, clear addresses). */
  audit?: Partial<Omit<Config['audit'], 'file'>>;
  /** The operational log; default silent. */
  logger?: Logger;
  /** The HTTP endpoint; default off. `{ port: 0 }` binds a free loopback port. */
  http?: Partial<NonNullable<Config['http']>> | null;
  /** The web console; default off. */
  console?: Partial<Config['console']>;
  /** Alerting; default no sinks and no rules. */
  alerts?: Partial<Config['alerts']>;
  /** Use this data folder (kept on stop) instead of a fresh temporary one, e.g. to restart a relay. */
  dataDir?: string;
  /** Shared state through Redis (`state.redis` and the rest over the defaults); default none. */
  state?: Partial<Config['state']> & { redis: string };
  /** The listeners' delivery mode; default passthrough. */
  mode?: Config['listen'][number]['mode'];
  /** Spool settings over the defaults (folder `<dataDir>/spool`, no free-space reserve). */
  spool?: Partial<Config['spool']>;
  /** What the app is given in place of the system (a free-space probe, failing file operations). */
  appOptions?: AppOptions;
}

export interface RunningRelay {
  readonly app: App;
  readonly port: number;
  /** Port of the implicit-TLS listener, when asked for. */
  readonly tlsPort: number | null;
  /** Port of the PROXY protocol listener, when asked for. */
  readonly proxyPort: number | null;
  /** `http://127.0.0.1:PORT` of the HTTP endpoint, when asked for. */
  readonly httpUrl: string | null;
  readonly dataDir: string;
  /** Where the relay keeps the bodies of large messages while it has them. */
  readonly spillDir: string;
  readonly auditFile: string;
  /** The test CA that signed the relay's certificate (when the harness made it). */
  readonly pki: TestPki | null;
  /** Sends through the relay's first listener, trusting its certificate. */
  send(opts: Omit<SendMessageOptions, 'port'> & { port?: number }): Promise<SendResult>;
  records(): Promise<AuditRecord[]>;
  relayRecords(): Promise<RelayRecord[]>;
  rejectRecords(): Promise<RejectRecord[]>;
  sessionRecords(): Promise<SessionRecord[]>;
  /** Files in the spill folder (spill files must always be removed). */
  tempFiles(): Promise<string[]>;
  stop(): Promise<void>;
}

const NO_CLIENT_LIMITS = { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null } as const;

export function upstreamConfig(spec: UpstreamSpec, index = 0): UpstreamConfig {
  return {
    name: spec.name ?? `up${index}`,
    host: spec.host ?? '127.0.0.1',
    port: spec.port,
    implicitTls: spec.implicitTls ?? false,
    auth: spec.auth ? ('type' in spec.auth ? spec.auth : { type: 'password', ...spec.auth }) : null,
    tls: { mode: 'none', ca: null, verify: true, servername: null, ...spec.tls },
    pool: { maxConnections: 5, maxMessages: 100, idleTimeout: 60_000, maxWait: 5_000, shared: false, ...spec.pool },
    timeouts: { connect: 5_000, greeting: 5_000, socket: 10_000, total: 20_000, ...spec.timeouts },
    ehloName: null,
    breaker: spec.breaker === null ? null : { failures: 5, window: null, failureRate: 0.5, cooldown: 30_000, ...spec.breaker },
    rateLimit: {
      messagesPerSecond: null,
      burst: 1,
      maxWait: null,
      ...spec.rateLimit,
      backoff: { initial: 100, max: 10_000, decay: 10_000, ...spec.rateLimit?.backoff },
    },
    probe: { enabled: false, interval: 30_000, timeout: 10_000, ...spec.probe },
  };
}

/** A Config built directly (the loader has its own tests), pointing at fake upstreams on loopback. */
export function relayConfig(spec: RelaySpec, dataDir: string): Config {
  return {
    listen: [
      { host: '127.0.0.1', port: 0, implicitTls: false, proxyProtocol: false, trustedProxies: [], mode: spec.mode ?? 'passthrough' },
      ...(spec.implicitTlsListener
        ? [{ host: '127.0.0.1', port: 0, implicitTls: true, proxyProtocol: false, trustedProxies: [], mode: spec.mode ?? 'passthrough' }]
        : []),
      ...(spec.proxyListener
        ? [
            {
              host: '127.0.0.1',
              port: 0,
              implicitTls: spec.proxyListener.implicitTls ?? false,
              proxyProtocol: true,
              trustedProxies: spec.proxyListener.trustedProxies,
              mode: spec.mode ?? 'passthrough',
            },
          ]
        : []),
    ],
    tls: spec.tls ?? null,
    clients: {
      networks: ['127.0.0.0/8', '::1/128'],
      users: [],
      requireTls: 'except-loopback',
      allowInsecureAuth: false,
      rateLimits: { perUser: NO_CLIENT_LIMITS, perIp: NO_CLIENT_LIMITS, maxTracked: 10_000 },
      // As in production (docs/config.md).
      authLockout: { failures: 10, window: 600_000, lockout: 300_000, maxLockout: 3_600_000, maxTracked: 10_000 },
      ...spec.clients,
    },
    limits: {
      maxMessageSize: 40 * 1024 * 1024,
      maxRecipients: 100,
      maxConnections: 500,
      maxConnectionsPerIp: 500,
      memoryBufferSize: 1024 * 1024,
      softErrorLimit: 10,
      hardErrorLimit: 20,
      errorDelay: 1_000,
      recordedRefusals: 5,
      // Off here, as maxConnectionsPerIp is raised: most tests open many connections from loopback.
      connectionRatePerIp: null,
      connectionRateExempt: spec.clients?.networks ?? ['127.0.0.0/8', '::1/128'],
      ...spec.limits,
    },
    timeouts: {
      clientIdle: spec.clientIdle ?? 30_000,
      command: (spec.clientIdle ?? 30_000) + 60_000,
      session: 600_000,
      dataMinRate: 500,
      ...spec.deadlines,
      relay: spec.relayTimeout ?? 20_000,
      proxyHeader: spec.proxyHeaderTimeout ?? 5_000,
      shutdown: 5_000,
    },
    upstreams: spec.upstreams.map(upstreamConfig),
    routes: spec.routes ?? [],
    http: spec.http ? { host: '127.0.0.1', port: 0, token: null, bestEffort: false, ...spec.http } : null,
    console: { enabled: false, users: [], sessionIdle: 30 * 60_000, secureCookies: false, ...spec.console },
    alerts: {
      cooldown: 600_000,
      sinks: [],
      rules: [],
      ...spec.alerts,
      spool: { oldest: 3_600_000, growing: 1_800_000, growingMin: 100, ...spec.alerts?.spool },
      delivery: { queueSize: 100, retries: 3, timeout: 10_000, backoff: 1_000, ...spec.alerts?.delivery },
    },
    audit: {
      file: spec.auditFile ?? join(dataDir, 'audit.log'),
      fsync: false,
      subject: false,
      chain: true,
      checkpoint: { every: 1000, interval: 60_000, signingKey: null, file: null },
      rotate: null,
      onWriteFailure: 'refuse',
      minFreeSpace: 0,
      privacy: 'clear',
      hmacKey: null,
      duplicateWindow: 24 * 3_600_000,
      ...spec.audit,
    },
    spool: {
      dir: join(dataDir, 'spool'),
      hybridWait: 10_000,
      retry: { first: 300_000, max: 3_600_000 },
      maxAge: 5 * 86_400_000,
      // Off here, as audit.minFreeSpace: a test machine's disk may be fuller than production's reserve.
      minFreeSpace: 0,
      dsn: true,
      unknownOutcome: 'hold',
      concurrency: 10,
      events: [],
      ...spec.spool,
    },
    log: { level: 'silent' },
    instance: { id: spec.instance ?? 'test-relay' },
    workers: { count: 1, allowLocalLimits: false },
    state: { redis: null, prefix: 'mailtrail:', expectedInstances: 1, timeout: 250, leaseTtl: 30_000, ...spec.state },
    hostname: 'mailtrail.test',
    dataDir,
    localSink: null,
    unknownOutcomeReply: { code: spec.unknownOutcomeReply ?? 451 },
  };
}

export async function startRelay(spec: RelaySpec): Promise<RunningRelay> {
  const dataDir = spec.dataDir ?? (await mkdtemp(join(tmpdir(), 'mailtrail-test-')));
  // Clients upgrade to TLS when STARTTLS is offered, so give the relay a certificate they can verify.
  const pki = spec.tls === undefined ? await makeTestPki() : null;
  const tls = pki ? { cert: pki.server.certPath, key: pki.server.keyPath } : (spec.tls ?? null);
  const config = relayConfig({ ...spec, tls }, dataDir);
  const app = new App(config, spec.logger ?? createLogger('silent'), spec.appOptions);
  const info = await app.start();
  const read = async (): Promise<AuditRecord[]> => {
    const text = await readFile(config.audit.file, 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditRecord);
  };
  return {
    app,
    port: info.listeners[0]!.port,
    tlsPort: info.listeners.find((l) => l.implicitTls)?.port ?? null,
    proxyPort: spec.proxyListener ? info.listeners[info.listeners.length - 1]!.port : null,
    httpUrl: info.http ? `http://${info.http.host}:${info.http.port}` : null,
    dataDir,
    spillDir: spillDir(dataDir),
    auditFile: config.audit.file,
    pki,
    send: (opts) => sendMessage({ port: info.listeners[0]!.port, ...(pki ? { ca: pki.ca } : {}), ...opts }),
    records: read,
    relayRecords: async () => (await read()).filter((r): r is RelayRecord => r.type === 'relay'),
    rejectRecords: async () => (await read()).filter((r): r is RejectRecord => r.type === 'reject'),
    sessionRecords: async () => (await read()).filter((r): r is SessionRecord => r.type === 'session'),
    tempFiles: () => readdir(spillDir(dataDir)),
    stop: async () => {
      await app.stop();
      if (spec.dataDir === undefined) await rm(dataDir, { recursive: true, force: true });
      await pki?.cleanup();
    },
  };
}

/** A small well-formed message. */
export function simpleMessage(opts: { from?: string; to?: string; subject?: string; messageId?: string; body?: string } = {}): Buffer {
  const from = opts.from ?? 'app@example.com';
  const to = opts.to ?? 'ana@example.org';
  return Buffer.from(
    [
      `From: App <${from}>`,
      `To: <${to}>`,
      `Subject: ${opts.subject ?? 'Hello'}`,
      `Message-ID: ${opts.messageId ?? `<${Math.random().toString(36).slice(2)}@example.com>`}`,
      'Date: Wed, 25 Nov 2026 10:00:00 +0000',
      '',
      opts.body ?? 'Hello there.',
      '',
    ].join('\r\n'),
  );
}
