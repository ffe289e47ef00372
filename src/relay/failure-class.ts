/**
 * The closed list of failure classes (FAILURES.md). Alerts, reports and metrics key on these names, so
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
  'auth_required',
  'tls_required',
  'relay_denied',
  'sender_denied',
  'rate_limited',
  'too_large',
  'too_many_recipients',
  'too_many_connections',
  'client_aborted',
  'client_timeout',
  'protocol_violation',
] as const;

export type UpstreamFailureClass = (typeof UPSTREAM_FAILURE_CLASSES)[number];
export type ClientRejectClass = (typeof CLIENT_REJECT_CLASSES)[number];
export type FailureClass = UpstreamFailureClass | ClientRejectClass;

/** Who must act on a failure. */
export type Actor = 'operator' | 'upstream' | 'sender' | 'recipient' | 'none';
/** How wide the failure is. */
export type Scope = 'recipient' | 'message' | 'connection' | 'account';

export type Outcome = 'delivered' | 'partial' | 'deferred' | 'rejected' | 'unknown' | 'aborted';
