/**
 * The validated, normalised configuration. Every duration is in milliseconds and every size in bytes;
 * secrets are already resolved from `${ENV}` references. Produced once at start-up by `loadConfig`
 * and deep-frozen: nothing at run time may change it.
 */
export interface Config {
  readonly listen: readonly ListenerConfig[];
  /** PEM paths for the listeners' certificate; null = generate an ephemeral self-signed one and warn. */
  readonly tls: { readonly cert: string; readonly key: string } | null;
  readonly clients: ClientsConfig;
  readonly limits: LimitsConfig;
  readonly timeouts: ServerTimeoutsConfig;
  readonly upstreams: readonly UpstreamConfig[];
  /**
   * Which upstreams a message may go to, first match wins. Empty = the default route only: every
   * upstream in config order. Names in `upstreams` are checked against `Config.upstreams` at load.
   */
  readonly routes: readonly RouteConfig[];
  readonly audit: AuditConfig;
  /** The HTTP endpoint (metrics, health, recent transactions, error groups); null = off. */
  readonly http: HttpConfig | null;
  /** Alert rules, sinks and delivery limits. */
  readonly alerts: AlertsConfig;
  readonly log: { readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  /** Name announced in the greeting and EHLO reply. */
  readonly hostname: string;
  /** Folder for temp files (DATA spill) and, in the embedded default, the sink and the trail. */
  readonly dataDir: string;
  /** The built-in local sink; non-null only in the embedded default (no upstream configured). */
  readonly localSink: { readonly dir: string; readonly keep: number } | null;
  /** Reply given when the upstream connection is lost after the final dot (docs/failures.md, unknown_outcome). */
  readonly unknownOutcomeReply: { readonly code: 451 | 250 };
}

export interface ListenerConfig {
  readonly host: string;
  readonly port: number;
  /** TLS from the first byte (port 465 style); otherwise STARTTLS is offered. */
  readonly implicitTls: boolean;
}

export interface ClientsConfig {
  /** CIDRs allowed to relay without AUTH, e.g. "127.0.0.0/8", "::1/128". */
  readonly networks: readonly string[];
  readonly users: readonly UserConfig[];
  /**
   * AUTH and MAIL only after STARTTLS. `true`/`false` as configured; when not configured the default is
   * true except for loopback clients (see README).
   */
  readonly requireTls: boolean | 'except-loopback';
  /** Allow AUTH over plaintext (never the default). */
  readonly allowInsecureAuth: boolean;
  /** Ingress limits per AUTH user and per client address; over them, 451 4.7.1. */
  readonly rateLimits: ClientRateLimitsConfig;
  /** Lockout after repeated failed AUTHs per address and per username; null = none. */
  readonly authLockout: AuthLockoutConfig | null;
}

export interface AuthLockoutConfig {
  /** Failed AUTHs within `window` that start a lockout. */
  readonly failures: number;
  /** How long failures are counted, from the first one (ms). */
  readonly window: number;
  /** The first lockout (ms); each repeat doubles it. */
  readonly lockout: number;
  /** The longest lockout (ms). */
  readonly maxLockout: number;
  /** Most addresses and usernames tracked at once, for each kind of state (LRU). */
  readonly maxTracked: number;
}

/** One set of client limits; null = no limit of that kind. */
export interface ClientRateLimit {
  readonly messagesPerMinute: number | null;
  readonly messagesPerHour: number | null;
  readonly recipientsPerHour: number | null;
}

export interface ClientRateLimitsConfig {
  readonly perUser: ClientRateLimit;
  readonly perIp: ClientRateLimit;
  /** Most users/addresses tracked at once (LRU); a forgotten one starts again with a full allowance. */
  readonly maxTracked: number;
}

export interface RouteConfig {
  readonly name: string;
  /** Every criterion given must match; within one criterion any entry may. null = not a criterion. */
  readonly match: {
    /** AUTH usernames. */
    readonly users: readonly string[] | null;
    /** MAIL FROM: "@domain" or a full address (domain case-insensitive, local part exact). */
    readonly senders: readonly string[] | null;
    /** Client address CIDRs. */
    readonly networks: readonly string[] | null;
  };
  /** Upstream names, tried in this order. */
  readonly upstreams: readonly string[];
}

export interface UserConfig {
  readonly username: string;
  /** Exactly one of password / passwordHash is set. */
  readonly password: string | null;
  /** scrypt hash in the form `scrypt$N$r$p$saltBase64$hashBase64`. */
  readonly passwordHash: string | null;
  /** Allowed MAIL FROM: "@domain" or a full address; empty = any sender. */
  readonly allowedSenders: readonly string[];
}

export interface LimitsConfig {
  readonly maxMessageSize: number;
  readonly maxRecipients: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  /** DATA is kept in memory up to this many bytes, then spilled to a temp file. */
  readonly memoryBufferSize: number;
  /** Errors of one connection (refusals, not counting relayed messages) after which every reply waits `errorDelay`. */
  readonly softErrorLimit: number;
  /** Errors of one connection after which it gets 421 4.7.0 and is closed. A delivered message forgives them. */
  readonly hardErrorLimit: number;
  /** ms each reply waits once a connection reached `softErrorLimit`; 0 = no slow-down. */
  readonly errorDelay: number;
  /** Refusals of one connection written as `reject` records; the rest are counted in its `session` record. */
  readonly recordedRefusals: number;
  /** New connections per minute from one address (token bucket); null = no limit. */
  readonly connectionRatePerIp: number | null;
  /** CIDRs not subject to `connectionRatePerIp`; resolved at load (default: `clients.networks`). */
  readonly connectionRateExempt: readonly string[];
}

export interface ServerTimeoutsConfig {
  /** Idle time allowed to a client between commands. */
  readonly clientIdle: number;
  /** From the moment the server waits for a command until its line is complete (listener/client-deadlines.ts). */
  readonly command: number;
  /** Whole client session; a transaction in flight finishes first. */
  readonly session: number;
  /** Least average rate of message data, bytes per second (with `command` as slack). */
  readonly dataMinRate: number;
  /** Overall deadline for one relay attempt chain (connect + envelope + body + final reply). */
  readonly relay: number;
  /** Grace given to in-flight transactions at shutdown. */
  readonly shutdown: number;
}

export type UpstreamTlsMode = 'required' | 'opportunistic' | 'none';

export interface UpstreamConfig {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** smtps:// = implicit TLS. */
  readonly implicitTls: boolean;
  /** Credentials from the URL userinfo (URL-decoded) or `auth`; null = no AUTH. */
  readonly auth: { readonly user: string; readonly pass: string } | null;
  readonly tls: {
    readonly mode: UpstreamTlsMode;
    /** PEM file with the CA(s) to trust in addition to (replacing) the system store, or null. */
    readonly ca: string | null;
    readonly verify: boolean;
    /** SNI / certificate name to check when host is an IP. */
    readonly servername: string | null;
  };
  readonly pool: {
    readonly maxConnections: number;
    readonly maxMessages: number;
    readonly idleTimeout: number;
    /**
     * How long a message waits for a free connection before it moves on to the next upstream of
     * its route (ms). Only when there is a next one: the last upstream is waited for up to the
     * relay deadline.
     */
    readonly maxWait: number;
  };
  readonly timeouts: {
    readonly connect: number;
    readonly greeting: number;
    readonly socket: number;
    readonly total: number;
  };
  /** EHLO name to announce upstream; null = config.hostname. */
  readonly ehloName: string | null;
  /** Circuit breaker over infrastructure failures; null = never skip this upstream. */
  readonly breaker: UpstreamBreakerConfig | null;
  readonly rateLimit: UpstreamRateLimitConfig;
  /** Health probe: connect, EHLO, STARTTLS, AUTH, QUIT; never a message. */
  readonly probe: UpstreamProbeConfig;
}

export interface UpstreamProbeConfig {
  readonly enabled: boolean;
  /** Time between the end of one probe and the start of the next. */
  readonly interval: number;
  /** Longest a probe may take before it counts as failed (class timeout). */
  readonly timeout: number;
}

export interface UpstreamBreakerConfig {
  /** Consecutive infrastructure failures that open the breaker. */
  readonly failures: number;
  /** With a window, also open when the failure rate over it reaches `failureRate` (at least `failures` failures). */
  readonly window: number | null;
  readonly failureRate: number;
  /** How long an open breaker skips the upstream before one probe may try it (half-open). */
  readonly cooldown: number;
}

export interface UpstreamRateLimitConfig {
  /** Messages started per second towards this upstream; null = no fixed rate. */
  readonly messagesPerSecond: number | null;
  /** Messages that may start back to back before the rate applies. */
  readonly burst: number;
  /** Longest wait for a sending slot; null = as long as the relay deadline allows. */
  readonly maxWait: number | null;
  /** Adaptive slow-down after a throttling reply: first delay (0 = off), cap, and halving period. */
  readonly backoff: { readonly initial: number; readonly max: number; readonly decay: number };
}

export interface AuditConfig {
  /** Path of the JSON-lines trail; "-" = stdout. */
  readonly file: string;
  /** fsync after each record (survives power loss, costs an fsync per message). */
  readonly fsync: boolean;
  /** Record the Subject header (off by default: privacy). */
  readonly subject: boolean;
  /** Hash chain: seq / prev / hash on every record, and checkpoint records (audit/chain.ts). */
  readonly chain: boolean;
  readonly checkpoint: {
    /** A checkpoint after this many records... */
    readonly every: number;
    /** ...or this many ms after the last one when records were written since; and at shutdown. */
    readonly interval: number;
    /** PEM Ed25519 private key that signs checkpoints; null = unsigned. */
    readonly signingKey: string | null;
    /** A second file that gets a copy of every checkpoint line; null = none. */
    readonly file: string | null;
  };
  /** Built-in rotation (audit/rotation.ts); null = none (SIGHUP reopens the file for logrotate). */
  readonly rotate: {
    readonly size: number | null;
    readonly daily: boolean;
    readonly keep: number;
    readonly compress: boolean;
  } | null;
  /** When a relay record cannot be written: answer 451 (`refuse`) or relay anyway and log (`continue`). */
  readonly onWriteFailure: 'refuse' | 'continue';
  /**
   * With `refuse`: below this much free space on the trail's filesystem, messages are refused
   * before relaying (bytes). The reserve still holds the records of those refusals.
   */
  readonly minFreeSpace: number;
  /** How addresses appear in the trail (audit/privacy.ts). */
  readonly privacy: 'clear' | 'pseudonymize' | 'domain-only';
  /** HMAC key for `pseudonymize`; null otherwise. A secret: never logged. */
  readonly hmacKey: string | null;
  /** How long an unknown/deferred transaction is remembered for `duplicateOf` links (ms). */
  readonly duplicateWindow: number;
}

export interface HttpConfig {
  readonly host: string;
  readonly port: number;
  /** Bearer token required on every path except /healthz; null = no token. */
  readonly token: string | null;
  /**
   * True only in the embedded default: a port already in use is logged and the endpoint stays off,
   * instead of stopping start-up (a zero-config start must not fail over an optional extra).
   */
  readonly bestEffort: boolean;
}

export interface AlertsConfig {
  /** Least time between two notifications of the same (rule, upstream, class). */
  readonly cooldown: number;
  readonly sinks: readonly AlertSinkConfig[];
  /** The configured rules; the built-in defaults when sinks are configured and `rules` is not. */
  readonly rules: readonly AlertRuleConfig[];
  readonly delivery: AlertDeliveryConfig;
}

export interface AlertDeliveryConfig {
  /** Notifications waiting per sink; beyond it the newest is dropped (and counted). */
  readonly queueSize: number;
  /** Further tries after a failed delivery. */
  readonly retries: number;
  /** One delivery try, connect to reply. */
  readonly timeout: number;
  /** Wait before the first retry; doubled for each further one. */
  readonly backoff: number;
}

export type AlertSinkConfig = WebhookSinkConfig | EmailSinkConfig;

export interface WebhookSinkConfig {
  readonly kind: 'webhook';
  readonly name: string;
  readonly url: string;
  /** HMAC-SHA256 key for the X-Mailtrail-Signature header; null = unsigned. */
  readonly secret: string | null;
  readonly headers: Readonly<Record<string, string>>;
}

export interface EmailSinkConfig {
  readonly kind: 'email';
  readonly name: string;
  /** The sink's own SMTP server: never one of mailtrail's upstream pools. */
  readonly smtp: {
    readonly host: string;
    readonly port: number;
    readonly implicitTls: boolean;
    readonly auth: { readonly user: string; readonly pass: string } | null;
    readonly tls: { readonly mode: UpstreamTlsMode; readonly ca: string | null; readonly verify: boolean };
  };
  readonly from: string;
  readonly to: readonly string[];
}

/** What makes a rule fire, evaluated per upstream. */
export type AlertCondition =
  /** Any failure of these classes, at once. */
  | { readonly kind: 'class'; readonly classes: readonly string[] }
  /** This many upstream-side failures in a row. */
  | { readonly kind: 'consecutiveFailures'; readonly count: number }
  /** Failed share of transactions over `window`, once `minVolume` transactions were seen. */
  | { readonly kind: 'failureRate'; readonly ratio: number; readonly window: number; readonly minVolume: number }
  /** p95 of the relay time over `window` above `p95` ms, once `minVolume` transactions were seen. */
  | { readonly kind: 'latency'; readonly p95: number; readonly window: number; readonly minVolume: number }
  /** Failures kept coming and nothing was delivered for `for` ms. */
  | { readonly kind: 'noSuccess'; readonly for: number };

export interface AlertRuleConfig {
  readonly name: string;
  readonly condition: AlertCondition;
  /** Sink names to notify. */
  readonly sinks: readonly string[];
}
