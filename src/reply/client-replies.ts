import type { ClientRejectClass } from '../classify/failure-class.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';

/**
 * mailtrail's own refusals, named by meaning (docs/failures.md, client-side table). The wire text is
 * derived from these, so a test can check every refusal against the table.
 */
export const CLIENT_REPLIES = {
  auth_failed: { code: 535, enhanced: '5.7.8', text: 'Authentication credentials invalid' },
  // RFC 4954 §6: 454 4.7.0 is the temporary authentication failure; the same for every username.
  auth_locked: { code: 454, enhanced: '4.7.0', text: 'Temporary authentication failure: too many failed attempts, try again later' },
  auth_required: { code: 530, enhanced: '5.7.0', text: 'Authentication required' },
  tls_required: { code: 530, enhanced: '5.7.0', text: 'Must issue a STARTTLS command first' },
  tls_required_auth: { code: 538, enhanced: '5.7.11', text: 'Encryption required: issue STARTTLS before AUTH' },
  relay_denied: { code: 554, enhanced: '5.7.1', text: 'Relaying denied: client not allowed to relay' },
  sender_denied: { code: 553, enhanced: '5.7.1', text: 'Sender address not allowed for this user' },
  too_large: { code: 552, enhanced: '5.3.4', text: 'Message size exceeds the limit' },
  too_many_recipients: { code: 452, enhanced: '4.5.3', text: 'Too many recipients' },
  too_many_connections: { code: 421, enhanced: '4.7.0', text: 'Too many connections, try again later' },
  // Postfix's wording for both (smtpd.c): the connection is closed after it.
  connection_rate: { code: 421, enhanced: '4.7.0', text: 'Too many connections, try again later' },
  too_many_errors: { code: 421, enhanced: '4.7.0', text: 'Error: too many errors' },
  // A proxyProtocol listener is its load balancers' door (listener/proxy-gate.ts): permanent for a stranger.
  proxy_untrusted: { code: 554, enhanced: '5.7.1', text: 'This port takes connections from its load balancers only' },
  // 4.3.5 "system incorrectly configured" (RFC 3463): the load balancer in front sent no valid PROXY header.
  proxy_invalid: { code: 421, enhanced: '4.3.5', text: 'Load balancer sent no valid PROXY protocol header, closing connection' },
  rate_limited: { code: 451, enhanced: '4.7.1', text: 'Rate limit reached, try again later' },
  internal: { code: 451, enhanced: '4.3.0', text: 'Local problem: message not accepted, try again later' },
  audit_failed: { code: 451, enhanced: '4.3.0', text: 'Cannot record the transaction; message not accepted, try again later' },
  audit_failed_after_relay: {
    code: 451,
    enhanced: '4.3.0',
    text: 'Relayed, but the audit trail could not record it; not confirmed, so a retry may deliver it twice',
  },
  audit_failed_after_queue: {
    code: 451,
    enhanced: '4.3.0',
    text: 'Queued, but the audit trail could not record it; not confirmed, so a retry may deliver it twice',
  },
  // RFC 5321 §4.2.3 452 "insufficient system storage", RFC 3463 X.3.1 "mail system full".
  spool_full: { code: 452, enhanced: '4.3.1', text: 'Insufficient system storage: mail queue full, try again later' },
  spool_failed: { code: 451, enhanced: '4.3.0', text: 'Local problem: message could not be queued, try again later' },
  shutting_down: { code: 421, enhanced: '4.3.2', text: 'Service shutting down, try again later' },
  // 4.4.2 "bad connection" (RFC 3463), as for the idle timeout; the texts name the limit (client-deadlines.ts).
  command_too_slow: { code: 421, enhanced: '4.4.2', text: 'Timeout: command not received in time, closing connection' },
  data_too_slow: { code: 421, enhanced: '4.4.2', text: 'Message data arriving too slowly, closing connection' },
  session_ended: { code: 421, enhanced: '4.4.2', text: 'Session time limit reached, closing connection; reconnect to go on' },
} as const satisfies Record<string, SmtpReply>;

/** Which reject class each named refusal is recorded under. */
export const REPLY_CLASS: Partial<Record<keyof typeof CLIENT_REPLIES, ClientRejectClass>> = {
  auth_failed: 'auth_failed',
  auth_locked: 'auth_locked',
  auth_required: 'auth_required',
  tls_required: 'tls_required',
  tls_required_auth: 'tls_required',
  relay_denied: 'relay_denied',
  sender_denied: 'sender_denied',
  too_large: 'too_large',
  too_many_recipients: 'too_many_recipients',
  too_many_connections: 'too_many_connections',
  connection_rate: 'connection_rate',
  too_many_errors: 'too_many_errors',
  proxy_untrusted: 'proxy_untrusted',
  proxy_invalid: 'proxy_invalid',
  rate_limited: 'rate_limited',
  command_too_slow: 'client_too_slow',
  data_too_slow: 'client_too_slow',
  session_ended: 'client_timeout',
};

/**
 * The reply as the client sees it, with mailtrail's transaction id at the end of its text, so the
 * app's own log joins the trail. A code 0 (no reply: the client was gone) stays as it is.
 */
export function withId(reply: SmtpReply, id: string): SmtpReply {
  return reply.code === 0 ? reply : { ...reply, text: `${reply.text} (id ${id})` };
}

/** The text smtp-server should send: enhanced code first (smtp-server's own are hidden), then the id. */
export function wireText(reply: SmtpReply, id: string | null): string {
  const text = reply.text.replace(/[\r\n]+/g, ' ');
  const withId = id ? `${text} (id ${id})` : text;
  return reply.enhanced ? `${reply.enhanced} ${withId}` : withId;
}

/** An Error smtp-server turns into the reply: `responseCode` + message. */
export function smtpError(reply: SmtpReply, id: string | null): Error & { responseCode: number } {
  return Object.assign(new Error(wireText(reply, id)), { responseCode: reply.code });
}

/**
 * A message taken into the spool (docs/spool.md): the id it is queued as is the transaction's, so
 * the app's log, the trail's records and `mailtrail queue` all name it alike.
 */
export function queuedReply(id: string): SmtpReply {
  return { code: 250, enhanced: '2.0.0', text: `Ok: queued as ${id}` };
}

/** 451 4.7.1 naming the limit, so the app's log says which one and when to retry (docs/failures.md `rate_limited`). */
export function rateLimitedReply(detail: string): SmtpReply {
  return { ...CLIENT_REPLIES.rate_limited, text: `Rate limit reached: ${detail}` };
}

/** `421 4.7.0` naming the address, as Postfix's "too many connections from <address>". */
export function connectionRateReply(ip: string): SmtpReply {
  return { ...CLIENT_REPLIES.connection_rate, text: `Too many connections from ${ip}, try again later` };
}

/** 421 4.4.2 naming `timeouts.command`, so the client's log says which limit cut it. */
export function commandTooSlowReply(commandMs: number): SmtpReply {
  return { ...CLIENT_REPLIES.command_too_slow, text: `Timeout: no complete command within ${Math.max(1, Math.round(commandMs / 1000))} s, closing connection` };
}

/** 421 4.4.2 naming `timeouts.dataMinRate`. */
export function dataTooSlowReply(bytesPerSecond: number): SmtpReply {
  return { ...CLIENT_REPLIES.data_too_slow, text: `Message data arriving under ${bytesPerSecond} bytes per second, closing connection` };
}
