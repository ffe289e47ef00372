/**
 * Start-up warnings: what the relay runs with that its operator should know before sending real mail
 * (a throw-away certificate, an upstream reached without TLS, an HTTP endpoint open to anyone, a trail
 * that did not end cleanly). The parts report facts; this turns them into warnings with a stable code,
 * one sentence for a person and the fields for the log. App.start() returns them, and the command line
 * shows each once to a person (the banner) and once to machines (the JSON log): see
 * docs/observability.md, "Start-up output".
 */
import type { Config, HttpConfig, UpstreamConfig } from '../config/types.js';

export const STARTUP_WARNING_CODES = [
  'tls_ephemeral',
  'upstream_plaintext',
  'upstream_unverified',
  'http_not_started',
  'http_without_token',
  'audit_torn_tail',
  'audit_unchained',
  'data_dir_unlocked',
  'spool_unlocked',
] as const;

export type StartupWarningCode = (typeof STARTUP_WARNING_CODES)[number];

export interface StartupWarning {
  readonly code: StartupWarningCode;
  /** One sentence for a person (the banner); also the log line's msg. */
  readonly message: string;
  /** The facts, for the log line. */
  readonly fields: Readonly<Record<string, unknown>>;
}

/** What App.start() found, for the warnings that depend on it. */
export interface StartupFacts {
  /** No tls.cert / tls.key: the listeners use a throw-away self-signed certificate. */
  readonly ephemeralCert: boolean;
  /** The upstreams as started (with the local sink in place of its placeholder). */
  readonly upstreams: readonly UpstreamConfig[];
  /** Why a best-effort HTTP endpoint did not start (an errno code), or null. */
  readonly httpNotStarted: string | null;
  /** The trail file ended in the middle of a record (a crash mid-write). */
  readonly auditTornTail: boolean;
  /** The file whose last record has no chain fields (written with audit.chain off), or null. */
  readonly auditUnchained: string | null;
  /** Why the data folder could not be locked against a second process, or null when it is. */
  readonly dataDirUnlocked: string | null;
  /** Why the spool folder could not be locked, or null when it is (or there is no spool). */
  readonly spoolUnlocked?: string | null;
}

export function startupWarnings(config: Config, facts: StartupFacts): StartupWarning[] {
  const warnings: StartupWarning[] = [];
  if (facts.ephemeralCert) {
    warnings.push({
      code: 'tls_ephemeral',
      message: 'no tls.cert / tls.key: the listeners use an ephemeral self-signed certificate (clients must skip verification; set both for production)',
      fields: { hostname: config.hostname },
    });
  }
  warnings.push(...upstreamWarnings(facts.upstreams));
  if (config.http && facts.httpNotStarted !== null) {
    warnings.push({
      code: 'http_not_started',
      message: `HTTP endpoint not started on ${hostPort(config.http.host, config.http.port)} (${facts.httpNotStarted}): metrics, health and API are off; set MAILTRAIL_HTTP=host:port`,
      fields: { host: config.http.host, port: config.http.port, error: facts.httpNotStarted },
    });
  } else {
    warnings.push(...httpWarnings(config.http));
  }
  if (facts.auditTornTail) {
    warnings.push({
      code: 'audit_torn_tail',
      message: `${config.audit.file} ends with a torn record (a crash mid-write); the next record starts on a new line`,
      fields: { file: config.audit.file },
    });
  }
  if (facts.auditUnchained !== null) {
    warnings.push({
      code: 'audit_unchained',
      message: `the last record of ${facts.auditUnchained} has no seq/prev/hash (written with audit.chain off): a new chain starts at seq 1`,
      fields: { file: facts.auditUnchained },
    });
  }
  if (facts.dataDirUnlocked !== null) {
    warnings.push({
      code: 'data_dir_unlocked',
      message: `${config.dataDir} is not locked (${facts.dataDirUnlocked}): a second mailtrail process on it would go unnoticed`,
      fields: { dataDir: config.dataDir, reason: facts.dataDirUnlocked },
    });
  }
  if (facts.spoolUnlocked != null) {
    warnings.push({
      code: 'spool_unlocked',
      message: `${config.spool.dir} is not locked (${facts.spoolUnlocked}): a second mailtrail process on it would go unnoticed, and its start-up recovery could requeue this one's messages`,
      fields: { spoolDir: config.spool.dir, reason: facts.spoolUnlocked },
    });
  }
  return warnings;
}

/** The warnings a configuration carries by itself, before anything starts (check-config shows them). */
export function configWarnings(config: Config): StartupWarning[] {
  return startupWarnings(config, {
    ephemeralCert: config.tls === null,
    upstreams: config.upstreams,
    httpNotStarted: null,
    auditTornTail: false,
    auditUnchained: null,
    dataDirUnlocked: null,
  });
}

/**
 * An upstream beyond loopback reached without TLS, or without checking its certificate: the messages
 * (and the upstream credentials, when it has some) can be read or taken on the way.
 */
function upstreamWarnings(upstreams: readonly UpstreamConfig[]): StartupWarning[] {
  const warnings: StartupWarning[] = [];
  for (const u of upstreams) {
    if (isLoopback(u.host)) continue;
    const fields = { upstream: u.name, host: u.host, port: u.port };
    if (!u.implicitTls && u.tls.mode === 'none') {
      warnings.push({
        code: 'upstream_plaintext',
        message: `upstream ${u.name} (${hostPort(u.host, u.port)}) without TLS (tls.mode: none): messages${u.auth ? ' and its credentials' : ''} cross the network unencrypted`,
        fields,
      });
    } else if (!u.tls.verify) {
      warnings.push({
        code: 'upstream_unverified',
        message: `upstream ${u.name} (${hostPort(u.host, u.port)}): its certificate is not verified (tls.verify: false), so anyone on the way can pose as it`,
        fields,
      });
    }
  }
  return warnings;
}

/** The API shows recent transactions, addresses included (docs/observability.md). */
function httpWarnings(http: HttpConfig | null): StartupWarning[] {
  if (!http || http.token !== null || isLoopback(http.host)) return [];
  return [
    {
      code: 'http_without_token',
      message: `HTTP endpoint on ${hostPort(http.host, http.port)} is reachable beyond loopback without a token: anyone who can connect can read recent transactions (set http.token)`,
      fields: { host: http.host, port: http.port },
    },
  ];
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
}

function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}
