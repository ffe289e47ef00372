/**
 * The config file's schema: every key, its type, its default. This is the single source of truth for
 * defaults (docs/config.md documents the same keys and a test keeps the two in step).
 *
 * `validateConfig` applies the schema to an already env-interpolated object and normalises the result
 * into the `Config` shape (URL split into host/port/credentials, relative paths resolved, every
 * optional value made explicit) and deep-freezes it.
 */
import { isIP } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { isPasswordHash } from '../auth/password.js';
import { issueMessage, problemsFromIssues, type ConfigProblem } from './config-error.js';
import type { Config, UpstreamConfig } from './types.js';
import { parseDuration, parseSize } from './units.js';

const MiB = 2 ** 20;
/** Node's timers overflow above 2^31-1 ms and then fire immediately: a huge timeout would become none. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const UPSTREAM_NAME = /^[a-z0-9][a-z0-9_-]*$/i;
/** RFC 1123 labels, plus "_" which container and cloud host names sometimes carry. */
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;
/** "@example.com" (any sender in the domain) or "alerts@example.org" (one address). */
const SENDER_PATTERN = /^[^\s@]*@[^\s@]+$/;

/** Cross-field checks must run even when a sibling field failed, or problems would surface one round at a time. */
const ALWAYS = { when: () => true } as const;

// ---------------------------------------------------------------------------------------------------
// Field builders

/** Values interpolated from the environment are strings; accept "25" where a number is expected. */
function fromNumericString(value: unknown): unknown {
  return typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
}

function fromBooleanString(value: unknown): unknown {
  if (value === 'true') return true;
  if (value === 'false') return false;
  return value;
}

function quantity(parse: (v: unknown) => number | null, message: string, min: number, max: number) {
  return z.unknown().transform((value, ctx) => {
    const n = parse(value);
    if (n === null) ctx.addIssue({ code: 'custom', message });
    else if (n < min) ctx.addIssue({ code: 'custom', message: `must be at least ${min}` });
    else if (n > max) ctx.addIssue({ code: 'custom', message: `must be at most ${max}` });
    else return n;
    return z.NEVER;
  });
}

/** Bytes: a number or a string such as `35MB` (MB = 2^20). */
function size(fallback: number) {
  return quantity(parseSize, 'not a size (e.g. 35MB)', 1, Number.MAX_SAFE_INTEGER).default(fallback);
}

/** Milliseconds: a number or a string such as `500ms`, `10s`, `5m`, `1h`. */
function duration(fallback: number, min = 1) {
  return quantity(parseDuration, 'not a duration (e.g. 10s)', min, MAX_TIMER_MS).default(fallback);
}

function count(fallback: number) {
  return z.preprocess(fromNumericString, z.int().min(1)).default(fallback);
}

function flag(fallback: boolean) {
  return z.preprocess(fromBooleanString, z.boolean()).default(fallback);
}

function port() {
  return z.preprocess(fromNumericString, z.int().min(0).max(65535));
}

function path() {
  return z.string().min(1);
}

function hostName() {
  return z.string().refine((s) => HOST_NAME.test(s), 'not a host name');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Array refinement: flags every entry whose `key` repeats an earlier one (compared after `fold`). */
function unique(key: string, message: string, fold: (s: string) => string = (s) => s) {
  return (items: readonly unknown[], ctx: z.RefinementCtx) => {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      const value = isRecord(item) ? item[key] : undefined;
      if (typeof value !== 'string') return;
      if (seen.has(fold(value))) ctx.addIssue({ code: 'custom', message, path: [i, key] });
      seen.add(fold(value));
    });
  };
}

// ---------------------------------------------------------------------------------------------------
// Networks and upstream URLs

/** "10.0.0.0/8" as given; a bare IP becomes a single-address CIDR. Zone ids ("%eth0") are refused. */
export function normaliseCidr(text: string): string | null {
  const [ip = '', prefix, ...rest] = text.trim().split('/');
  const family = ip.includes('%') ? 0 : isIP(ip);
  if (family === 0 || rest.length > 0) return null;
  const bits = family === 4 ? 32 : 128;
  if (prefix === undefined) return `${ip.toLowerCase()}/${bits}`;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > bits) return null;
  return `${ip.toLowerCase()}/${Number(prefix)}`;
}

const cidr = z.string().transform((text, ctx) => {
  const normalised = normaliseCidr(text);
  if (normalised === null) ctx.addIssue({ code: 'custom', message: 'not an IPv4 or IPv6 CIDR (e.g. 10.0.0.0/8)' });
  return normalised ?? z.NEVER;
});

export interface SmtpUrl {
  readonly implicitTls: boolean;
  readonly host: string;
  readonly port: number;
  /** Percent-decoded userinfo, or null when the URL has none. */
  readonly credentials: { readonly user: string; readonly pass: string } | null;
}

/**
 * Splits `smtp[s]://user:pass@host:port`. Returns a value-free problem text on failure: the URL may
 * carry credentials, so it is never quoted.
 */
export function parseSmtpUrl(text: string): SmtpUrl | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'not an smtp:// or smtps:// URL';
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') return 'not an smtp:// or smtps:// URL';
  if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
    return 'must not have a path, query or fragment';
  }
  // Non-special schemes keep IPv6 brackets and case in `hostname`.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (isIP(host) === 0 && !HOST_NAME.test(host)) return 'has no valid host';
  const implicitTls = url.protocol === 'smtps:';
  const port = url.port === '' ? (implicitTls ? 465 : 587) : Number(url.port);
  if (port === 0) return 'port must be between 1 and 65535';
  const credentials = urlCredentials(url);
  if (typeof credentials === 'string') return credentials;
  return { implicitTls, host, port, credentials };
}

function urlCredentials(url: URL): SmtpUrl['credentials'] | string {
  if (url.username === '' && url.password === '') return null;
  if (url.username === '' || url.password === '') return 'credentials need both a user and a password';
  try {
    return { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) };
  } catch {
    return 'credentials are not valid percent-encoding';
  }
}

const smtpUrl = z.string().transform((text, ctx) => {
  const parsed = parseSmtpUrl(text);
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
  return typeof parsed === 'string' ? z.NEVER : parsed;
});

// ---------------------------------------------------------------------------------------------------
// Sections

const listener = z.strictObject({
  host: z
    .string()
    .refine((s) => isIP(s) !== 0 || HOST_NAME.test(s), 'not an IP address or host name')
    .default('127.0.0.1'),
  port: port(),
  implicitTls: flag(false),
});

/** Port 0 (ephemeral) may repeat; anything else on the same host and port would fail to bind. */
function distinctListeners(items: readonly unknown[], ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    if (!isRecord(item) || item.port === 0) return;
    const key = `${String(item.host ?? '127.0.0.1')}:${String(item.port)}`;
    if (seen.has(key)) ctx.addIssue({ code: 'custom', message: 'same host and port as an earlier listener', path: [i] });
    seen.add(key);
  });
}

const user = z
  .strictObject({
    username: z.string().min(1),
    password: z.string().min(1).nullable().optional(),
    passwordHash: z
      .string()
      .refine(isPasswordHash, 'not a scrypt hash in the form scrypt$N$r$p$salt$hash')
      .nullable()
      .optional(),
    allowedSenders: z.array(z.string().regex(SENDER_PATTERN, 'must be "@domain" or a full address')).default([]),
  })
  .superRefine((value: unknown, ctx) => {
    const given = isRecord(value) ? [value.password, value.passwordHash].filter((v) => v != null) : [];
    if (given.length !== 1) ctx.addIssue({ code: 'custom', message: 'needs exactly one of password or passwordHash' });
  }, ALWAYS);

const clients = z
  .strictObject({
    networks: z.array(cidr).default([]),
    users: z.array(user).default([]).superRefine(unique('username', 'duplicate username'), ALWAYS),
    requireTls: z.preprocess(fromBooleanString, z.literal([true, false, 'except-loopback'])).default('except-loopback'),
    allowInsecureAuth: flag(false),
  })
  .prefault({});

const limits = z
  .strictObject({
    maxMessageSize: size(35 * MiB),
    maxRecipients: count(100),
    maxConnections: count(500),
    maxConnectionsPerIp: count(50),
    memoryBufferSize: size(1 * MiB),
  })
  .prefault({});

const timeouts = z
  .strictObject({
    clientIdle: duration(60_000),
    relay: duration(120_000),
    shutdown: duration(30_000, 0),
  })
  .prefault({});

const upstream = z
  .strictObject({
    name: z.string().regex(UPSTREAM_NAME, 'must be letters, digits, "-" or "_", starting with a letter or digit'),
    url: smtpUrl,
    auth: z.strictObject({ user: z.string().min(1), pass: z.string().min(1) }).nullable().optional(),
    tls: z
      .strictObject({
        mode: z.enum(['required', 'opportunistic', 'none']).optional(),
        ca: path().nullable().optional(),
        verify: flag(true),
        servername: hostName().nullable().optional(),
      })
      .prefault({}),
    pool: z
      .strictObject({ maxConnections: count(5), maxMessages: count(100), idleTimeout: duration(60_000) })
      .prefault({}),
    timeouts: z
      .strictObject({
        connect: duration(10_000),
        greeting: duration(10_000),
        socket: duration(60_000),
        total: duration(120_000),
      })
      .prefault({}),
    ehloName: hostName().nullable().optional(),
  })
  .superRefine((value: unknown, ctx) => upstreamConsistency(value, ctx), ALWAYS);

/** Checks between fields of one upstream; `value` may be partly invalid (see ALWAYS). */
function upstreamConsistency(value: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(value) || !isRecord(value.url)) return;
  const url = value.url as unknown as SmtpUrl;
  if (url.credentials !== null && value.auth != null) {
    ctx.addIssue({ code: 'custom', message: 'credentials are given in both url and auth; keep one', path: ['auth'] });
  }
  if (url.implicitTls && isRecord(value.tls) && value.tls.mode === 'none') {
    ctx.addIssue({ code: 'custom', message: 'cannot be none with smtps:// (TLS from the first byte)', path: ['tls', 'mode'] });
  }
}

export const configSchema = z.strictObject({
  listen: z.array(listener).min(1).superRefine(distinctListeners, ALWAYS),
  tls: z.strictObject({ cert: path(), key: path() }).nullable().optional(),
  clients,
  limits,
  timeouts,
  upstreams: z
    .array(upstream)
    .min(1)
    .superRefine(unique('name', 'duplicate upstream name', (s) => s.toLowerCase()), ALWAYS),
  audit: z.strictObject({ file: path().optional(), fsync: flag(false), subject: flag(false) }).prefault({}),
  log: z
    .strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
    .prefault({}),
  hostname: hostName().optional(),
  dataDir: path().default('./data'),
  unknownOutcomeReply: z.preprocess(fromNumericString, z.literal([451, 250])).default(451),
});

type ParsedConfig = z.output<typeof configSchema>;
type ParsedUpstream = ParsedConfig['upstreams'][number];

// ---------------------------------------------------------------------------------------------------
// Validation and normalisation

export type ValidationResult = { readonly ok: true; readonly config: Config } | { readonly ok: false; readonly problems: ConfigProblem[] };

/**
 * Applies the schema to `raw` (already env-interpolated) and, if it passes, normalises it; relative
 * paths resolve against `baseDir`. The config returned is deep-frozen.
 */
export function validateConfig(raw: unknown, baseDir: string): ValidationResult {
  const result = configSchema.safeParse(raw, { error: issueMessage });
  if (!result.success) return { ok: false, problems: problemsFromIssues(result.error.issues) };
  return { ok: true, config: deepFreeze(toConfig(result.data, baseDir)) };
}

function toConfig(parsed: ParsedConfig, baseDir: string): Config {
  const dataDir = resolve(baseDir, parsed.dataDir);
  return {
    listen: parsed.listen,
    tls: parsed.tls ? { cert: resolve(baseDir, parsed.tls.cert), key: resolve(baseDir, parsed.tls.key) } : null,
    clients: {
      ...parsed.clients,
      users: parsed.clients.users.map((u) => ({
        username: u.username,
        password: u.password ?? null,
        passwordHash: u.passwordHash ?? null,
        allowedSenders: u.allowedSenders,
      })),
    },
    limits: parsed.limits,
    timeouts: parsed.timeouts,
    upstreams: parsed.upstreams.map((u) => toUpstream(u, baseDir)),
    audit: { ...parsed.audit, file: auditFile(parsed.audit.file, baseDir, dataDir) },
    log: parsed.log,
    hostname: parsed.hostname ?? osHostname(),
    dataDir,
    localSink: null,
    unknownOutcomeReply: { code: parsed.unknownOutcomeReply },
  };
}

/** "-" means stdout; no file means `audit.log` in the data folder. */
function auditFile(file: string | undefined, baseDir: string, dataDir: string): string {
  if (file === '-') return file;
  return file === undefined ? resolve(dataDir, 'audit.log') : resolve(baseDir, file);
}

function toUpstream(u: ParsedUpstream, baseDir: string): UpstreamConfig {
  return {
    name: u.name,
    host: u.url.host,
    port: u.url.port,
    implicitTls: u.url.implicitTls,
    auth: u.auth ?? u.url.credentials,
    tls: {
      // With smtps:// TLS is not negotiable, so the mode is moot; `required` describes what happens.
      mode: u.url.implicitTls ? 'required' : (u.tls.mode ?? 'required'),
      ca: u.tls.ca == null ? null : resolve(baseDir, u.tls.ca),
      verify: u.tls.verify,
      servername: u.tls.servername ?? null,
    },
    pool: u.pool,
    timeouts: u.timeouts,
    ehloName: u.ehloName ?? null,
  };
}

/** Freezes `value` and everything reachable from it, so no part of the running app can alter config. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
