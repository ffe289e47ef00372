import type { UpstreamFailureClass } from '../classify/failure-class.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';
import type { UpstreamTls } from '../upstream/upstream-connection.js';

/** The outcome of one health probe, published on the bus as `probe`. */
export interface ProbeResult {
  readonly upstream: string;
  readonly ok: boolean;
  /** The relay classifier's verdict on the failure; null when the probe passed. */
  readonly class: UpstreamFailureClass | null;
  /** When the probe finished (RFC 3339). */
  readonly time: string;
  readonly ms: number;
  /** The upstream reply that failed the probe (e.g. 535 to AUTH), or null. */
  readonly reply: SmtpReply | null;
  /** nodemailer's error code and the system cause when no reply explains the failure. */
  readonly error: { readonly code: string | null; readonly cause: string | null } | null;
  /** The deciding rule's advice to the operator where the class alone would mislead (rules.ts `hint`), or null. */
  readonly hint: string | null;
  readonly tls: UpstreamTls | null;
}

/** What the routing layer publishes about its upstreams. */
export interface RoutingEvents {
  /** An upstream health probe finished. */
  probe: [ProbeResult];
  /** An upstream's circuit breaker changed state (a failed half-open probe re-reports `open`). */
  'upstream-state': [
    {
      readonly upstream: string;
      readonly from: 'closed' | 'open' | 'half-open';
      readonly state: 'closed' | 'open' | 'half-open';
      readonly reason: string;
    },
  ];
  /** The adaptive slow-down towards an upstream changed; 0 = back to its configured pace. */
  'upstream-throttle': [{ readonly upstream: string; readonly delayMs: number }];
}
