/**
 * `upstreams`: where mail is relayed to, each with its URL, credentials, TLS, connection pool, rate
 * limit, circuit breaker, health probe and attempt timeouts (docs/config.md, "Keys": `upstreams[].*`;
 * "Failover and circuit breakers"). The URL itself is parsed in outbound-smtp.ts.
 */
import { z } from 'zod';
import { ALWAYS, count, duration, entryName, flag, hostName, isRecord, optionalDuration, rate, ratio, unique } from '../fields.js';
import type { Carries, Expect, Loaded } from '../loaded.js';
import { smtpTlsShape, smtpUrl, toSmtpTls, type SmtpTlsConfig, type SmtpUrl } from '../outbound-smtp.js';
import { toUpstreamAuth, upstreamAuthSchema, type UpstreamAuth } from '../upstream-auth.js';

const pool = z
  .strictObject({
    maxConnections: count(5),
    maxMessages: count(100),
    idleTimeout: duration(60_000),
    /**
     * How long a message waits for a free connection before it moves on to the next upstream of
     * its route (ms). Only when there is a next one: the last upstream is waited for up to the
     * relay deadline.
     */
    maxWait: duration(5_000),
    /**
     * With `state.redis` (Redis): `maxConnections` bounds the connections the whole fleet opens to this
     * upstream, through leases in Redis (docs/fleet.md), instead of each instance's own.
     */
    shared: flag(false),
  })
  .prefault({});

const timeouts = z
  .strictObject({
    connect: duration(10_000),
    greeting: duration(10_000),
    socket: duration(60_000),
    total: duration(120_000),
  })
  .prefault({});

/** Health probe of an upstream: connect, EHLO, STARTTLS, AUTH, QUIT; never a message. */
const probe = z
  .strictObject({
    enabled: flag(true),
    /** Time between the end of one probe and the start of the next. */
    interval: duration(30_000, 100),
    /** Longest a probe may take before it counts as failed (class timeout). */
    timeout: duration(10_000),
  })
  .prefault({});

/** Circuit breaker over infrastructure failures. */
const breaker = z.strictObject({
  /** Consecutive infrastructure failures that open the breaker. */
  failures: count(5),
  /** With a window, also open when the failure rate over it reaches `failureRate` (at least `failures` failures). */
  window: optionalDuration(),
  failureRate: ratio().default(0.5),
  /** How long an open breaker skips the upstream before one probe may try it (half-open). */
  cooldown: duration(30_000),
});

const rateLimit = z
  .strictObject({
    /** Messages started per second towards this upstream; null = no fixed rate. */
    messagesPerSecond: rate(100_000),
    /** Messages that may start back to back before the rate applies. */
    burst: count(1),
    /** Longest wait for a sending slot; null = as long as the relay deadline allows. */
    maxWait: optionalDuration(),
    /** Adaptive slow-down after a throttling reply: first delay (0 = off), cap, and halving period. */
    backoff: z.strictObject({ initial: duration(100, 0), max: duration(10_000), decay: duration(10_000) }).prefault({}),
  })
  .prefault({});

const upstream = z
  .strictObject({
    name: entryName(),
    url: smtpUrl,
    auth: upstreamAuthSchema.nullable().optional(),
    tls: z
      .strictObject({
        ...smtpTlsShape,
        servername: hostName().nullable().optional(),
      })
      .prefault({}),
    pool,
    timeouts,
    ehloName: hostName().nullable().optional(),
    probe,
    // null turns the breaker off; leaving it out gives the defaults.
    breaker: breaker.nullable().prefault({}),
    rateLimit,
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

export const upstreamsSection = z
  .array(upstream)
  .min(1)
  .superRefine(
    unique('name', 'duplicate upstream name', (s) => s.toLowerCase()),
    ALWAYS,
  );

export type UpstreamProbeConfig = Loaded<typeof probe>;
export type UpstreamBreakerConfig = Loaded<typeof breaker>;
export type UpstreamRateLimitConfig = Loaded<typeof rateLimit>;

/** One upstream as loaded: the URL split into host, port, TLS and credentials. */
export interface UpstreamConfig {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** smtps:// = implicit TLS. */
  readonly implicitTls: boolean;
  /**
   * How mailtrail logs in: a password from the URL userinfo (URL-decoded) or `auth`, or OAuth2 (XOAUTH2)
   * from `auth` (config/upstream-auth.ts); null = no AUTH.
   */
  readonly auth: UpstreamAuth | null;
  readonly tls: SmtpTlsConfig & {
    /** SNI / certificate name to check when host is an IP. */
    readonly servername: string | null;
  };
  readonly pool: Loaded<typeof pool>;
  readonly timeouts: Loaded<typeof timeouts>;
  /** EHLO name to announce upstream; null = config.hostname. */
  readonly ehloName: string | null;
  /** Circuit breaker over infrastructure failures; null = never skip this upstream. */
  readonly breaker: UpstreamBreakerConfig | null;
  readonly rateLimit: UpstreamRateLimitConfig;
  /** Health probe: connect, EHLO, STARTTLS, AUTH, QUIT; never a message. */
  readonly probe: UpstreamProbeConfig;
}

type ParsedUpstream = z.output<typeof upstream>;
// Does not compile when UpstreamConfig and the schema drift apart (loaded.ts).
type _UpstreamFitsSchema = Expect<Carries<UpstreamConfig, ParsedUpstream, 'url' | 'tls' | 'auth'>>;

/** Relative paths (`tls.ca`, the files of an OAuth2 `auth`) resolve against `baseDir`. */
export function toUpstream(u: ParsedUpstream, baseDir: string): UpstreamConfig {
  return {
    name: u.name,
    host: u.url.host,
    port: u.url.port,
    implicitTls: u.url.implicitTls,
    auth: toUpstreamAuth(u.auth, u.url.credentials, baseDir),
    tls: { ...toSmtpTls(u.url, u.tls, baseDir), servername: u.tls.servername ?? null },
    pool: u.pool,
    timeouts: u.timeouts,
    ehloName: u.ehloName ?? null,
    probe: u.probe,
    breaker: u.breaker,
    rateLimit: u.rateLimit,
  };
}
