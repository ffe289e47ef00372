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
  readonly audit: AuditConfig;
  readonly log: { readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  /** Name announced in the greeting and EHLO reply. */
  readonly hostname: string;
  /** Folder for temp files (DATA spill) and, in the embedded default, the sink and the trail. */
  readonly dataDir: string;
  /** The built-in local sink; non-null only in the embedded default (no upstream configured). */
  readonly localSink: { readonly dir: string; readonly keep: number } | null;
  /** Reply given when the upstream connection is lost after the final dot (FAILURES.md, unknown_outcome). */
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
}

export interface ServerTimeoutsConfig {
  /** Idle time allowed to a client between commands. */
  readonly clientIdle: number;
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
  readonly pool: { readonly maxConnections: number; readonly maxMessages: number; readonly idleTimeout: number };
  readonly timeouts: {
    readonly connect: number;
    readonly greeting: number;
    readonly socket: number;
    readonly total: number;
  };
  /** EHLO name to announce upstream; null = config.hostname. */
  readonly ehloName: string | null;
}

export interface AuditConfig {
  /** Path of the JSON-lines trail; "-" = stdout. */
  readonly file: string;
  /** fsync after each record (survives power loss, costs an fsync per message). */
  readonly fsync: boolean;
  /** Record the Subject header (off by default: privacy). */
  readonly subject: boolean;
}
