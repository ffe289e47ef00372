/**
 * The configuration used when there is no config file: a safe local setup that works out of the box.
 * It listens on loopback only, lets loopback clients relay without AUTH, and delivers to the built-in
 * local sink (or to MAILTRAIL_UPSTREAM when set). It is built through the same schema as a file, so
 * defaults have one source and an environment value is validated like the file key it stands for.
 */
import { join } from 'node:path';
import { ConfigError, type ConfigProblem } from './config-error.js';
import { isLoopbackHost } from './fields.js';
import { deepFreeze, validateConfig } from './schema.js';
import type { Config } from './types.js';

const DEFAULT_LISTEN = { host: '127.0.0.1', port: 2525 } as const;
/** Metrics, health and the recent-transaction API; loopback only. */
const DEFAULT_HTTP = { host: '127.0.0.1', port: 8025 } as const;
const LOOPBACK_NETWORKS = ['127.0.0.0/8', '::1/128'] as const;
const SINK_KEEP = 100;

/** Key paths of the raw default that an environment variable supplies, for error messages. */
const ENV_FOR_PATH: readonly (readonly [prefix: string, variable: string])[] = [
  ['listen[0]', 'MAILTRAIL_LISTEN'],
  ['upstreams[0].url', 'MAILTRAIL_UPSTREAM'],
  ['upstreams[0].tls', 'MAILTRAIL_UPSTREAM_TLS'],
  ['dataDir', 'MAILTRAIL_DATA_DIR'],
  ['http', 'MAILTRAIL_HTTP'],
];

/**
 * The embedded default, honouring MAILTRAIL_LISTEN (`host:port`), MAILTRAIL_UPSTREAM
 * (`smtp[s]://user:pass@host:port`) with MAILTRAIL_UPSTREAM_TLS (`required`, the default, or
 * `opportunistic` / `none` for a plain local catcher), MAILTRAIL_DATA_DIR and MAILTRAIL_HTTP
 * (`host:port` or `off`); relative paths resolve against `cwd`.
 * Throws ConfigError, with the variable name as the path, when one of them is invalid.
 */
export function embeddedDefault(env: NodeJS.ProcessEnv, cwd: string): Config {
  const problems: ConfigProblem[] = [];
  const listen = listenFromEnv(nonEmpty(env.MAILTRAIL_LISTEN), problems);
  const upstreamUrl = nonEmpty(env.MAILTRAIL_UPSTREAM);
  const httpEnv = nonEmpty(env.MAILTRAIL_HTTP);
  const http = httpFromEnv(httpEnv, problems);
  const raw = {
    http,
    // The console on a loopback endpoint: opened without a login there (docs/console.md, "Who may log in").
    console: { enabled: http !== null && isLoopbackHost(http.host) },
    listen: [listen],
    clients: { networks: [...LOOPBACK_NETWORKS] },
    dataDir: nonEmpty(env.MAILTRAIL_DATA_DIR) ?? 'data',
    upstreams: [upstreamUrl === undefined ? localSinkUpstream() : envUpstream(upstreamUrl, nonEmpty(env.MAILTRAIL_UPSTREAM_TLS))],
  };
  const result = validateConfig(raw, cwd);
  if (!result.ok) problems.push(...result.problems.map(nameTheVariable));
  if (problems.length > 0 || !result.ok) throw new ConfigError(problems);
  const config = httpEnv === undefined ? withBestEffortHttp(result.config) : result.config;
  return upstreamUrl === undefined ? withLocalSink(config) : config;
}

/**
 * The default port may be taken (another mailtrail, a mail catcher on 8025): the relay must still
 * start, so the endpoint is best effort. A port asked for with MAILTRAIL_HTTP is not.
 */
function withBestEffortHttp(config: Config): Config {
  return config.http === null ? config : deepFreeze({ ...config, http: { ...config.http, bestEffort: true } });
}

/** `host:port` like MAILTRAIL_LISTEN, or `off`; unset = 127.0.0.1:8025. */
function httpFromEnv(text: string | undefined, problems: ConfigProblem[]): { host: string; port: string | number } | null {
  if (text === undefined) return { ...DEFAULT_HTTP };
  if (text.trim().toLowerCase() === 'off') return null;
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(text.trim());
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined || match[3] === undefined) {
    problems.push({ path: 'MAILTRAIL_HTTP', message: 'expected host:port (e.g. 127.0.0.1:8025) or off' });
    return null;
  }
  return { host, port: match[3] };
}

/** MAILTRAIL_UPSTREAM, with MAILTRAIL_UPSTREAM_TLS as `tls.mode` when set (checked by the schema). */
function envUpstream(url: string, tlsMode: string | undefined) {
  return tlsMode === undefined ? { name: 'upstream', url } : { name: 'upstream', url, tls: { mode: tlsMode } };
}

/** Placeholder upstream for the sink; the URL only has to pass the schema, the port is replaced below. */
function localSinkUpstream() {
  return { name: 'local-sink', url: 'smtp://127.0.0.1', tls: { mode: 'none' } };
}

/**
 * The sink listens on an ephemeral port chosen at start-up, so the upstream's port is 0 here and the
 * app fills in the real one. A URL cannot say "port 0" (the schema refuses it for real upstreams).
 */
function withLocalSink(config: Config): Config {
  const [sink] = config.upstreams;
  if (sink === undefined) throw new Error('embedded default has no upstream');
  return deepFreeze({
    ...config,
    upstreams: [{ ...sink, port: 0 }],
    localSink: { dir: join(config.dataDir, 'sink'), keep: SINK_KEEP },
  });
}

/** `host:port` or `[ipv6]:port`; host and port are then checked by the schema like `listen[].host/port`. */
function listenFromEnv(text: string | undefined, problems: ConfigProblem[]): { host: string; port: string | number } {
  if (text === undefined) return { ...DEFAULT_LISTEN };
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(text.trim());
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined || match[3] === undefined) {
    problems.push({ path: 'MAILTRAIL_LISTEN', message: 'expected host:port (e.g. 127.0.0.1:2525)' });
    return { ...DEFAULT_LISTEN };
  }
  return { host, port: match[3] };
}

function nameTheVariable(problem: ConfigProblem): ConfigProblem {
  const hit = ENV_FOR_PATH.find(([prefix]) => problem.path === prefix || problem.path.startsWith(`${prefix}.`));
  return hit === undefined ? problem : { path: hit[1], message: problem.message };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
