/**
 * The closed list of failure classes (docs/failures.md). Alerts, reports and metrics key on these names, so
 * they never change meaning; docs/failures.md lists the same set and a test keeps the two in step.
 */
export const UPSTREAM_FAILURE_CLASSES = [
  'dns',
  'connect',
  'tls',
  'timeout',
  'connection_lost',
  'unknown_outcome',
  'protocol',
  'upstream_unavailable',
  'throttled',
  'quota',
  'upstream_auth',
  'sender_rejected',
  'recipient_rejected',
  'recipient_deferred',
  'content_rejected',
  'too_large',
  'too_many_recipients',
  'unsupported',
  'internal',
] as const;

/** Refusals mailtrail itself gives a client before relaying (record type `reject`). */
export const CLIENT_REJECT_CLASSES = [
  'auth_failed',
  'auth_locked',
  'auth_required',
  'tls_required',
  'relay_denied',
  'sender_denied',
  'rate_limited',
  'too_large',
  'too_many_recipients',
  'too_many_connections',
  'connection_rate',
  'proxy_untrusted',
  'proxy_invalid',
  'client_aborted',
  'client_timeout',
  'client_too_slow',
  'protocol_violation',
  'too_many_errors',
] as const;

export type UpstreamFailureClass = (typeof UPSTREAM_FAILURE_CLASSES)[number];
export type ClientRejectClass = (typeof CLIENT_REJECT_CLASSES)[number];
export type FailureClass = UpstreamFailureClass | ClientRejectClass;

/** Who must act on a failure. */
export type Actor = 'operator' | 'upstream' | 'sender' | 'recipient' | 'none';
/** How wide the failure is. */
export type Scope = 'recipient' | 'message' | 'connection' | 'account';

/**
 * What a transaction's `relay` record says became of the message (docs/audit-record.md): one of the
 * classifier's verdicts, or `queued`, accepted into the spool to be delivered from there
 * (docs/spool.md). Reports and metrics key on these names.
 */
export const RELAY_OUTCOMES = ['delivered', 'partial', 'deferred', 'rejected', 'unknown', 'aborted', 'queued'] as const;
export type RelayOutcome = (typeof RELAY_OUTCOMES)[number];

/** The classifier's verdict on an attempt: every relay outcome but `queued`, which no upstream gives. */
export type Outcome = Exclude<RelayOutcome, 'queued'>;

/** What one delivery attempt from the spool came to (record type `delivery`): no client to abort it. */
export type DeliveryOutcome = Exclude<Outcome, 'aborted'>;

interface ClassTraits {
  /** Should the client retry later; null = unknown. */
  readonly retryable: boolean | null;
  readonly actor: Actor;
  readonly scope: Scope;
}

/**
 * docs/failures.md's table: the three axes recorded next to each class. The class groups the relay acts
 * on (failover, circuit breaker, alert streaks) are read off these axes, so a class cannot be in one
 * list and missing from another.
 */
const CLASS_TRAITS: Readonly<Record<UpstreamFailureClass, ClassTraits>> = {
  dns: { retryable: true, actor: 'operator', scope: 'connection' },
  connect: { retryable: true, actor: 'upstream', scope: 'connection' },
  tls: { retryable: true, actor: 'operator', scope: 'connection' },
  timeout: { retryable: true, actor: 'upstream', scope: 'connection' },
  connection_lost: { retryable: true, actor: 'upstream', scope: 'connection' },
  unknown_outcome: { retryable: null, actor: 'upstream', scope: 'message' },
  protocol: { retryable: true, actor: 'upstream', scope: 'connection' },
  upstream_unavailable: { retryable: true, actor: 'upstream', scope: 'connection' },
  throttled: { retryable: true, actor: 'upstream', scope: 'account' },
  quota: { retryable: true, actor: 'operator', scope: 'account' },
  upstream_auth: { retryable: true, actor: 'operator', scope: 'account' },
  sender_rejected: { retryable: false, actor: 'sender', scope: 'message' },
  recipient_rejected: { retryable: false, actor: 'recipient', scope: 'recipient' },
  recipient_deferred: { retryable: true, actor: 'recipient', scope: 'recipient' },
  content_rejected: { retryable: false, actor: 'sender', scope: 'message' },
  too_large: { retryable: false, actor: 'sender', scope: 'message' },
  too_many_recipients: { retryable: true, actor: 'sender', scope: 'message' },
  unsupported: { retryable: false, actor: 'sender', scope: 'message' },
  internal: { retryable: true, actor: 'operator', scope: 'message' },
};

export function classTraits(cls: UpstreamFailureClass): ClassTraits {
  return CLASS_TRAITS[cls];
}

function traitsOf(cls: string): ClassTraits | undefined {
  return Object.hasOwn(CLASS_TRAITS, cls) ? CLASS_TRAITS[cls as UpstreamFailureClass] : undefined;
}

/**
 * The upstream itself is unreachable or broken (scope `connection`): what a circuit breaker counts,
 * and what a passing health probe disproves.
 */
export function isInfrastructureClass(cls: string): boolean {
  return traitsOf(cls)?.scope === 'connection';
}

/**
 * Another upstream may do better (scope `connection` or `account`: this upstream, or our account
 * there, not the message). Only before the body was handed over: the caller checks the phase.
 */
export function mayFailOverClass(cls: string): boolean {
  const scope = traitsOf(cls)?.scope;
  return scope === 'connection' || scope === 'account';
}

/** The operator or the provider must act (actor `operator` or `upstream`): what alert streaks count. */
export function isProviderSideClass(cls: string): boolean {
  const actor = traitsOf(cls)?.actor;
  return actor === 'operator' || actor === 'upstream';
}
