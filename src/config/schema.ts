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
import { UPSTREAM_FAILURE_CLASSES } from '../classify/failure-class.js';
import { defaultAlertRules } from './default-alert-rules.js';
import type { AlertRuleConfig, AlertSinkConfig, AlertsConfig, Config, HttpConfig, UpstreamConfig } from './types.js';
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

/** A duration that may be left unset: null (the default) = not set. */
function optionalDuration() {
  return quantity(parseDuration, 'not a duration (e.g. 10s)', 1, MAX_TIMER_MS).nullable().default(null);
}

function count(fallback: number) {
  return z.preprocess(fromNumericString, z.int().min(1)).default(fallback);
}

/** A positive number, decimals allowed ("0.5" from the environment too); null = not set. */
function rate(max: number) {
  return z
    .preprocess(
      (v) => (typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v),
      z.number().positive().max(max).nullable(),
    )
    .default(null);
}

/** An optional whole-number limit: null = no limit. */
function optionalCount() {
  return z.preprocess(fromNumericString, z.int().min(1).nullable()).default(null);
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
    // ALWAYS refinements also run when the list itself is missing or not a list.
    if (!Array.isArray(items)) return;
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
    // WHATWG URL refuses a port over 65535 outright; say so rather than "not a URL".
    const port = /^smtps?:\/\/(?:[^@/?#]*@)?(?:\[[^\]]*\]|[^:/?#]*):(\d+)(?:[/?#]|$)/i.exec(text)?.[1];
    if (port !== undefined && Number(port) > 65535) return 'port must be between 1 and 65535';
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
  if (!Array.isArray(items)) return;
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

/** One set of ingress limits; each null (the default) = no limit of that kind. */
const clientRateLimit = z
  .strictObject({ messagesPerMinute: optionalCount(), messagesPerHour: optionalCount(), recipientsPerHour: optionalCount() })
  .prefault({});

/** Failed AUTHs per address and per username before a lockout, and how long it lasts; null = off. */
const authLockout = z
  .strictObject({
    failures: count(10),
    window: duration(10 * 60_000),
    lockout: duration(5 * 60_000),
    maxLockout: duration(60 * 60_000),
    maxTracked: count(10_000),
  })
  .superRefine((value: unknown, ctx) => {
    if (!isRecord(value) || typeof value.lockout !== 'number' || typeof value.maxLockout !== 'number') return;
    if (value.maxLockout < value.lockout) ctx.addIssue({ code: 'custom', message: 'must be at least lockout', path: ['maxLockout'] });
  })
  .nullable()
  .prefault({});

const clients = z
  .strictObject({
    networks: z.array(cidr).default([]),
    users: z.array(user).default([]).superRefine(unique('username', 'duplicate username'), ALWAYS),
    requireTls: z.preprocess(fromBooleanString, z.literal([true, false, 'except-loopback'])).default('except-loopback'),
    allowInsecureAuth: flag(false),
    rateLimits: z
      .strictObject({ perUser: clientRateLimit, perIp: clientRateLimit, maxTracked: count(10_000) })
      .prefault({}),
    authLockout,
  })
  .prefault({});

/**
 * Error limits after Postfix (smtpd_soft_error_limit 10, smtpd_hard_error_limit 20,
 * smtpd_error_sleep_time 1s) and a connection rate after its anvil (smtpd_client_connection_rate_limit);
 * docs/config.md says why each default.
 */
const limits = z
  .strictObject({
    maxMessageSize: size(35 * MiB),
    maxRecipients: count(100),
    maxConnections: count(500),
    maxConnectionsPerIp: count(50),
    memoryBufferSize: size(1 * MiB),
    softErrorLimit: count(10),
    hardErrorLimit: count(20),
    errorDelay: duration(1_000, 0),
    recordedRefusals: z.preprocess(fromNumericString, z.int().min(0)).default(5),
    connectionRatePerIp: z.preprocess(fromNumericString, z.int().min(1).nullable()).default(30),
    // null: the networks of clients.networks, as Postfix exempts $mynetworks.
    connectionRateExempt: z.array(cidr).nullable().default(null),
  })
  .superRefine((value: unknown, ctx) => {
    if (isRecord(value) && typeof value.softErrorLimit === 'number' && typeof value.hardErrorLimit === 'number' && value.softErrorLimit > value.hardErrorLimit) {
      ctx.addIssue({ code: 'custom', message: 'must not be above limits.hardErrorLimit', path: ['softErrorLimit'] });
    }
  }, ALWAYS)
  .prefault({});

/** Without `command`, a client idle for all of `clientIdle` still has this long to send its line. */
const COMMAND_AFTER_IDLE_MS = 60_000;

const timeouts = z
  .strictObject({
    clientIdle: duration(60_000),
    // null: clientIdle + COMMAND_AFTER_IDLE_MS (toConfig), so raising clientIdle alone stays consistent.
    command: optionalDuration(),
    session: duration(10 * 60_000),
    // Bytes per second, written as a size ("500", "1KB").
    dataMinRate: quantity(parseSize, 'not a size per second (e.g. 500 or 1KB)', 1, Number.MAX_SAFE_INTEGER).default(500),
    relay: duration(120_000),
    shutdown: duration(30_000, 0),
  })
  .superRefine((value: unknown, ctx) => {
    // A command deadline under the idle timeout would cut clients that are merely idle, before their idle timeout.
    if (!isRecord(value) || typeof value.command !== 'number' || typeof value.clientIdle !== 'number') return;
    if (value.command < value.clientIdle) ctx.addIssue({ code: 'custom', message: 'must be at least clientIdle', path: ['command'] });
  })
  .prefault({});

/** Health probe of an upstream: connect, EHLO, STARTTLS, AUTH, QUIT; never a message. */
const upstreamProbe = z
  .strictObject({ enabled: flag(true), interval: duration(30_000, 100), timeout: duration(10_000) })
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
      .strictObject({ maxConnections: count(5), maxMessages: count(100), idleTimeout: duration(60_000), maxWait: duration(5_000) })
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
    probe: upstreamProbe,
    // null turns the breaker off; leaving it out gives the defaults.
    breaker: z
      .strictObject({
        failures: count(5),
        window: optionalDuration(),
        failureRate: z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), z.number().gt(0).max(1)).default(0.5),
        cooldown: duration(30_000),
      })
      .nullable()
      .prefault({}),
    rateLimit: z
      .strictObject({
        messagesPerSecond: rate(100_000),
        burst: count(1),
        maxWait: optionalDuration(),
        backoff: z
          .strictObject({ initial: duration(100, 0), max: duration(10_000), decay: duration(10_000) })
          .prefault({}),
      })
      .prefault({}),
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

/** A route: which messages (all criteria given must match) go to which upstreams, in order. */
const route = z.strictObject({
  name: z.string().regex(UPSTREAM_NAME, 'must be letters, digits, "-" or "_", starting with a letter or digit'),
  match: z
    .strictObject({
      users: z.array(z.string().min(1)).min(1).optional(),
      senders: z.array(z.string().regex(SENDER_PATTERN, 'must be "@domain" or a full address')).min(1).optional(),
      networks: z.array(cidr).min(1).optional(),
    })
    .prefault({}),
  upstreams: z.array(z.string().min(1)).min(1),
});

/**
 * Checks between routes and the rest: every upstream a route names exists (once per route), every
 * user it names is configured, and no route hides behind an earlier one that matches everything.
 * `value` may be partly invalid (see ALWAYS). Messages never quote the value (house rule).
 */
function routesConsistency(value: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(value) || !Array.isArray(value.routes)) return;
  const upstreamNames = new Set(
    (Array.isArray(value.upstreams) ? value.upstreams : []).map((u) => (isRecord(u) ? u.name : undefined)).filter((n) => typeof n === 'string'),
  );
  const clientsValue = isRecord(value.clients) ? value.clients : {};
  const userNames = new Set(
    (Array.isArray(clientsValue.users) ? clientsValue.users : []).map((u) => (isRecord(u) ? u.username : undefined)),
  );
  let catchAll: number | null = null;
  value.routes.forEach((r: unknown, i) => {
    if (!isRecord(r)) return;
    if (catchAll !== null) {
      ctx.addIssue({ code: 'custom', message: `never used: routes[${catchAll}] matches every message`, path: ['routes', i] });
    }
    const names = Array.isArray(r.upstreams) ? r.upstreams : [];
    names.forEach((name: unknown, j) => {
      if (typeof name !== 'string') return;
      if (!upstreamNames.has(name)) ctx.addIssue({ code: 'custom', message: 'names no entry of upstreams', path: ['routes', i, 'upstreams', j] });
      else if (names.indexOf(name) !== j) ctx.addIssue({ code: 'custom', message: 'repeats an upstream of this route', path: ['routes', i, 'upstreams', j] });
    });
    const match = isRecord(r.match) ? r.match : {};
    const users = Array.isArray(match.users) ? match.users : [];
    users.forEach((u: unknown, j) => {
      if (typeof u === 'string' && !userNames.has(u)) {
        ctx.addIssue({ code: 'custom', message: 'names no user of clients.users', path: ['routes', i, 'match', 'users', j] });
      }
    });
    if (catchAll === null && match.users === undefined && match.senders === undefined && match.networks === undefined) catchAll = i;
  });
}

// ---------------------------------------------------------------------------------------------------
// Observability: upstream probes, the HTTP endpoint, alerts

const httpEndpoint = z
  .strictObject({
    host: z
      .string()
      .refine((s) => isIP(s) !== 0 || HOST_NAME.test(s), 'not an IP address or host name')
      .default('127.0.0.1'),
    port: port(),
    token: z.string().min(16).nullable().optional(),
  })
  .nullable()
  .optional();

/** A plain address for alert mail: no display name, no angle brackets. */
const EMAIL_ADDRESS = /^[^\s@<>",;]+@[^\s@<>",;]+$/;
/** RFC 9110 §5.1 field-name token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

const webhookSink = z.strictObject({
  url: z.string().refine(isHttpUrl, 'not an http:// or https:// URL'),
  secret: z.string().min(1).nullable().optional(),
  headers: z
    .record(
      z.string().regex(HEADER_NAME, 'not an HTTP header name'),
      z.string().refine((s) => !/[\r\n\0]/.test(s), 'must not contain line breaks'),
    )
    .default({}),
});

const emailSink = z.strictObject({
  url: smtpUrl,
  tls: z
    .strictObject({ mode: z.enum(['required', 'opportunistic', 'none']).optional(), ca: path().nullable().optional(), verify: flag(true) })
    .prefault({}),
  from: z.string().regex(EMAIL_ADDRESS, 'not an email address'),
  to: z.array(z.string().regex(EMAIL_ADDRESS, 'not an email address')).min(1),
});

const alertSink = z
  .strictObject({
    name: z.string().regex(UPSTREAM_NAME, 'must be letters, digits, "-" or "_", starting with a letter or digit'),
    webhook: webhookSink.optional(),
    email: emailSink.optional(),
  })
  .superRefine((value: unknown, ctx) => {
    const given = isRecord(value) ? [value.webhook, value.email].filter((v) => v !== undefined) : [];
    if (given.length !== 1) ctx.addIssue({ code: 'custom', message: 'needs exactly one of webhook or email' });
  }, ALWAYS);

/** Keys of an alert rule that are conditions; a rule has exactly one. */
const RULE_CONDITIONS = ['class', 'consecutiveFailures', 'failureRate', 'latency', 'noSuccess'] as const;

const alertRule = z
  .strictObject({
    name: z.string().regex(UPSTREAM_NAME, 'must be letters, digits, "-" or "_", starting with a letter or digit'),
    class: z.array(z.enum(UPSTREAM_FAILURE_CLASSES)).min(1).optional(),
    consecutiveFailures: z.preprocess(fromNumericString, z.int().min(1)).optional(),
    failureRate: z
      .strictObject({
        ratio: z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), z.number().gt(0).max(1)),
        window: duration(5 * 60_000),
        minVolume: count(20),
      })
      .optional(),
    latency: z
      .strictObject({
        p95: quantity(parseDuration, 'not a duration (e.g. 10s)', 1, MAX_TIMER_MS),
        window: duration(5 * 60_000),
        minVolume: count(20),
      })
      .optional(),
    noSuccess: quantity(parseDuration, 'not a duration (e.g. 10s)', 1, MAX_TIMER_MS).optional(),
    sinks: z.array(z.string().min(1)).min(1).optional(),
  })
  .superRefine((value: unknown, ctx) => {
    const given = isRecord(value) ? RULE_CONDITIONS.filter((k) => value[k] !== undefined) : [];
    if (given.length !== 1) ctx.addIssue({ code: 'custom', message: `needs exactly one of ${RULE_CONDITIONS.join(', ')}` });
  }, ALWAYS);

/** Every sink a rule names exists. `value` may be partly invalid (see ALWAYS). */
function alertsConsistency(value: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(value) || !Array.isArray(value.rules)) return;
  const sinkNames = new Set((Array.isArray(value.sinks) ? value.sinks : []).map((s) => (isRecord(s) ? s.name : undefined)));
  value.rules.forEach((rule: unknown, i) => {
    const sinks = isRecord(rule) && Array.isArray(rule.sinks) ? rule.sinks : [];
    sinks.forEach((name: unknown, j) => {
      if (typeof name === 'string' && !sinkNames.has(name)) {
        ctx.addIssue({ code: 'custom', message: 'names no entry of alerts.sinks', path: ['rules', i, 'sinks', j] });
      }
    });
  });
}

const alertsSection = z
  .strictObject({
    cooldown: duration(10 * 60_000),
    sinks: z.array(alertSink).default([]).superRefine(unique('name', 'duplicate sink name'), ALWAYS),
    rules: z.array(alertRule).superRefine(unique('name', 'duplicate rule name'), ALWAYS).optional(),
    delivery: z
      .strictObject({
        queueSize: count(100),
        retries: z.preprocess(fromNumericString, z.int().min(0).max(10)).default(3),
        timeout: duration(10_000),
        backoff: duration(1_000),
      })
      .prefault({}),
  })
  .superRefine(alertsConsistency, ALWAYS)
  .prefault({});

/** Built-in rotation; at least one trigger (size or daily). */
const auditRotate = z
  .strictObject({
    size: quantity(parseSize, 'not a size (e.g. 100MB)', 1, Number.MAX_SAFE_INTEGER).nullable().default(null),
    daily: flag(false),
    keep: count(14),
    compress: flag(false),
  })
  .superRefine((value: unknown, ctx) => {
    if (isRecord(value) && value.size == null && value.daily !== true) {
      ctx.addIssue({ code: 'custom', message: 'needs size and/or daily: true (or leave rotate out)' });
    }
  }, ALWAYS);

const audit = z
  .strictObject({
    file: path().optional(),
    fsync: flag(false),
    subject: flag(false),
    chain: flag(true),
    checkpoint: z
      .strictObject({
        every: count(1000),
        interval: duration(60_000),
        signingKey: path().nullable().default(null),
        file: path().nullable().default(null),
      })
      .prefault({}),
    rotate: auditRotate.nullable().default(null),
    onWriteFailure: z.enum(['refuse', 'continue']).default('refuse'),
    minFreeSpace: size(8 * MiB),
    privacy: z.enum(['clear', 'pseudonymize', 'domain-only']).default('clear'),
    // 16 characters at least: the key is all that stands between a pseudonym and a guessed address.
    hmacKey: z.string().min(16, 'must be at least 16 characters (e.g. 32 random bytes in hex)').nullable().default(null),
    duplicateWindow: duration(24 * 3_600_000),
  })
  .superRefine((value: unknown, ctx) => {
    if (isRecord(value) && value.privacy === 'pseudonymize' && (value.hmacKey == null || value.hmacKey === '')) {
      ctx.addIssue({ code: 'custom', message: 'is required when privacy is pseudonymize', path: ['hmacKey'] });
    }
  }, ALWAYS)
  .prefault({});

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
  routes: z.array(route).default([]).superRefine(unique('name', 'duplicate route name'), ALWAYS),
  audit,
  http: httpEndpoint,
  alerts: alertsSection,
  log: z
    .strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
    .prefault({}),
  hostname: hostName().optional(),
  dataDir: path().default('./data'),
  unknownOutcomeReply: z.preprocess(fromNumericString, z.literal([451, 250])).default(451),
}).superRefine(routesConsistency, ALWAYS);

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

/** Where the trail is and how it was written: what the trail's readers need of a configuration. */
export type TrailConfig = Pick<Config, 'audit' | 'dataDir'>;

const trailSection = z.strictObject({ audit, dataDir: path().default('./data') });

/**
 * `{ audit, dataDir }` (already env-interpolated; either may be undefined), checked like the same keys
 * of the full file. The trail's readers use it, so a copy of the operator's file whose other keys
 * need secrets (upstream passwords, webhook secrets) still tells them where the trail is.
 */
export function validateTrailSection(raw: unknown, baseDir: string): { readonly ok: true; readonly config: TrailConfig } | { readonly ok: false; readonly problems: ConfigProblem[] } {
  const result = trailSection.safeParse(raw, { error: issueMessage });
  if (!result.success) return { ok: false, problems: problemsFromIssues(result.error.issues) };
  const dataDir = resolve(baseDir, result.data.dataDir);
  return { ok: true, config: deepFreeze({ audit: toAudit(result.data.audit, baseDir, dataDir), dataDir }) };
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
    limits: { ...parsed.limits, connectionRateExempt: parsed.limits.connectionRateExempt ?? parsed.clients.networks },
    timeouts: { ...parsed.timeouts, command: parsed.timeouts.command ?? parsed.timeouts.clientIdle + COMMAND_AFTER_IDLE_MS },
    upstreams: parsed.upstreams.map((u) => toUpstream(u, baseDir)),
    routes: parsed.routes.map((r) => ({
      name: r.name,
      match: { users: r.match.users ?? null, senders: r.match.senders ?? null, networks: r.match.networks ?? null },
      upstreams: r.upstreams,
    })),
    audit: toAudit(parsed.audit, baseDir, dataDir),
    http: toHttp(parsed.http),
    alerts: toAlerts(parsed.alerts, baseDir),
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

function toAudit(a: ParsedConfig['audit'], baseDir: string, dataDir: string): Config['audit'] {
  return {
    ...a,
    file: auditFile(a.file, baseDir, dataDir),
    checkpoint: {
      ...a.checkpoint,
      signingKey: a.checkpoint.signingKey === null ? null : resolve(baseDir, a.checkpoint.signingKey),
      file: a.checkpoint.file === null ? null : resolve(baseDir, a.checkpoint.file),
    },
  };
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
    probe: u.probe,
    breaker: u.breaker,
    rateLimit: u.rateLimit,
  };
}

function toHttp(h: ParsedConfig['http']): HttpConfig | null {
  return h == null ? null : { host: h.host, port: h.port, token: h.token ?? null, bestEffort: false };
}

/** Sinks normalised; rules as configured, or the built-in defaults when sinks exist and `rules` is absent. */
function toAlerts(a: ParsedConfig['alerts'], baseDir: string): AlertsConfig {
  const sinks = a.sinks.map((s) => toSink(s, baseDir));
  const all = sinks.map((s) => s.name);
  const rules = a.rules === undefined ? (all.length > 0 ? defaultAlertRules(all) : []) : a.rules.map((r) => toRule(r, all));
  return { cooldown: a.cooldown, sinks, rules, delivery: a.delivery };
}

function toSink(s: ParsedConfig['alerts']['sinks'][number], baseDir: string): AlertSinkConfig {
  if (s.webhook) {
    return { kind: 'webhook', name: s.name, url: s.webhook.url, secret: s.webhook.secret ?? null, headers: s.webhook.headers };
  }
  const email = s.email!;
  return {
    kind: 'email',
    name: s.name,
    smtp: {
      host: email.url.host,
      port: email.url.port,
      implicitTls: email.url.implicitTls,
      auth: email.url.credentials,
      tls: {
        mode: email.url.implicitTls ? 'required' : (email.tls.mode ?? 'required'),
        ca: email.tls.ca == null ? null : resolve(baseDir, email.tls.ca),
        verify: email.tls.verify,
      },
    },
    from: email.from,
    to: email.to,
  };
}

function toRule(r: NonNullable<ParsedConfig['alerts']['rules']>[number], allSinks: readonly string[]): AlertRuleConfig {
  const sinks = r.sinks ?? allSinks;
  if (r.class) return { name: r.name, condition: { kind: 'class', classes: r.class }, sinks };
  if (r.consecutiveFailures !== undefined) return { name: r.name, condition: { kind: 'consecutiveFailures', count: r.consecutiveFailures }, sinks };
  if (r.failureRate) return { name: r.name, condition: { kind: 'failureRate', ...r.failureRate }, sinks };
  if (r.latency) return { name: r.name, condition: { kind: 'latency', ...r.latency }, sinks };
  return { name: r.name, condition: { kind: 'noSuccess', for: r.noSuccess! }, sinks };
}

/** Freezes `value` and everything reachable from it, so no part of the running app can alter config. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
