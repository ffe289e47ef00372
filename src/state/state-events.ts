/** The parts of mailtrail that keep their state in Redis when `state.redis` is set (docs/fleet.md). */
export type SharedPart = 'egress_rate' | 'throttle' | 'leases' | 'breaker' | 'client_rate' | 'connection_rate' | 'auth_lockout' | 'duplicates' | 'alerts';

/** `shared`: every shared part uses Redis. `degraded`: Redis cannot be reached; each part uses its local share. */
export type SharedMode = 'shared' | 'degraded';

export interface SharedStateStatus {
  readonly mode: SharedMode;
  /** When this mode began (ms since the epoch). */
  readonly since: number;
  /** Why degraded ("connect ECONNREFUSED", "Command timed out"); null when shared. */
  readonly reason: string | null;
}

/** What the shared state publishes (readiness, metrics and the built-in alert subscribe). */
export interface SharedStateEvents {
  /** Redis became unreachable, or reachable again. */
  'shared-state': [SharedStateStatus];
  /** One decision taken on this instance's local share because Redis could not be asked. */
  'shared-state-fallback': [{ readonly part: SharedPart }];
}
