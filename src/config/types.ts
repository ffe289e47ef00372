/**
 * The validated, normalised configuration. Every duration is in milliseconds and every size in bytes;
 * secrets are already resolved from `${ENV}` references. Produced once at start-up by `loadConfig`
 * and deep-frozen: nothing at run time may change it.
 *
 * Each section's types are declared next to its schema in sections/ (derived from it where the load
 * does not reshape the values); this file gathers them under the names the rest of the code imports.
 */
import type { AlertsConfig } from './sections/alerts.js';
import type { AuditConfig } from './sections/audit.js';
import type { ClientsConfig } from './sections/clients.js';
import type { ConsoleConfig } from './sections/console.js';
import type { HttpConfig } from './sections/http.js';
import type { InstanceConfig } from './sections/instance.js';
import type { LimitsConfig } from './sections/limits.js';
import type { ListenerConfig } from './sections/listen.js';
import type { LogConfig } from './sections/log.js';
import type { RouteConfig } from './sections/routes.js';
import type { SpoolConfig } from './sections/spool.js';
import type { StateConfig } from './sections/state.js';
import type { ServerTimeoutsConfig } from './sections/timeouts.js';
import type { ListenerTlsConfig } from './sections/tls.js';
import type { UpstreamConfig } from './sections/upstreams.js';
import type { WorkersConfig } from './sections/workers.js';

export type { UpstreamTlsMode } from './outbound-smtp.js';
export type {
  AlertCondition,
  AlertDeliveryConfig,
  AlertRuleConfig,
  AlertSinkConfig,
  AlertsConfig,
  EmailSinkConfig,
  WebhookSinkConfig,
} from './sections/alerts.js';
export type { AuditConfig } from './sections/audit.js';
export type { AuthLockoutConfig, ClientRateLimit, ClientRateLimitsConfig, ClientsConfig, UserConfig } from './sections/clients.js';
export type { ConsoleConfig, ConsoleUserConfig } from './sections/console.js';
export type { HttpConfig } from './sections/http.js';
export type { InstanceConfig } from './sections/instance.js';
export type { LimitsConfig } from './sections/limits.js';
export type { ListenerConfig } from './sections/listen.js';
export type { LogConfig } from './sections/log.js';
export type { RouteConfig } from './sections/routes.js';
export type { SpoolConfig, SpoolEventSinkConfig } from './sections/spool.js';
export type { SharedStateConfig, StateConfig } from './sections/state.js';
export type { ServerTimeoutsConfig } from './sections/timeouts.js';
export type { ListenerTlsConfig } from './sections/tls.js';
export type { WorkersConfig } from './sections/workers.js';
export type { UpstreamBreakerConfig, UpstreamConfig, UpstreamProbeConfig, UpstreamRateLimitConfig } from './sections/upstreams.js';

/** The whole configuration: one key per top-level key of the file, plus `localSink`. */
export interface Config {
  readonly listen: readonly ListenerConfig[];
  /** PEM paths for the listeners' certificate; null = generate an ephemeral self-signed one and warn. */
  readonly tls: ListenerTlsConfig | null;
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
  /** The spool: store-and-forward for listeners and users in `spool` or `hybrid` mode (docs/spool.md). */
  readonly spool: SpoolConfig;
  /** The HTTP endpoint (metrics, health, recent transactions, error groups); null = off. */
  readonly http: HttpConfig | null;
  /** The web console and its JSON API, served by `http` (docs/console.md). */
  readonly console: ConsoleConfig;
  /** Alert rules, sinks and delivery limits. */
  readonly alerts: AlertsConfig;
  readonly log: LogConfig;
  /** This relay's name in a fleet: in every record and log line (docs/fleet.md). */
  readonly instance: InstanceConfig;
  /** Processes serving the listeners on this machine (docs/fleet.md). */
  readonly workers: WorkersConfig;
  /** Where the state a fleet shares lives (Redis); `state.redis` null = each process keeps its own. */
  readonly state: StateConfig;
  /** Name announced in the greeting and EHLO reply. */
  readonly hostname: string;
  /** Folder for temp files (DATA spill) and, in the embedded default, the sink and the trail. */
  readonly dataDir: string;
  /** The built-in local sink; non-null only in the embedded default (no upstream configured). */
  readonly localSink: { readonly dir: string; readonly keep: number } | null;
  /** Reply given when the upstream connection is lost after the final dot (docs/failures.md, unknown_outcome). */
  readonly unknownOutcomeReply: { readonly code: 451 | 250 };
}
