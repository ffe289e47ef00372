/**
 * What a client is told about a relayed transaction: decided here, and only here, from the verdict
 * on the attempt that decides the record (classify/classify.ts) and that attempt's facts.
 *
 * Reply principle (docs/failures.md): verdicts about this message or these recipients pass through;
 * infrastructure, credential and quota failures become 451 so the client's queue keeps the mail.
 * Never 421 (RFC 5321 §3.8: it closes the client's session) and never 535 (RFC 4954 §6: the app would
 * blame its own login).
 */
import type { UpstreamFailureClass } from '../classify/failure-class.js';
import type { UpstreamFacts, Verdict } from '../classify/upstream-facts.js';
import { extractQueueId } from '../smtp/reply-text.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';

/** How the operator chose to answer an unknown outcome (config `unknownOutcomeReply`). */
export interface ReplyPolicy {
  readonly unknownOutcomeReply: { readonly code: 451 | 250 };
}

/**
 * Replies for rules whose meaning is narrower than their class: upstreams skipped without a
 * connection (RFC 3463 X.4.1 "no answer from host" when every breaker of the route is open; X.7.0 for
 * our own sending-rate limit) and a send stopped because the client left (nobody reads it).
 */
const RULE_REPLIES: Readonly<Record<string, SmtpReply>> = {
  'breaker-open': { code: 451, enhanced: '4.4.1', text: 'Upstream unavailable (circuit breaker open); try again later' },
  'egress-rate-limit': { code: 451, enhanced: '4.7.0', text: 'Upstream sending rate limit reached (local limit); try again later' },
  'client-aborted': { code: 451, enhanced: '4.3.0', text: 'Transaction aborted (client disconnected)' },
};

/** `unknownOutcomeReply: 250`: the operator prefers a possible silent loss to a possible duplicate. */
const UNKNOWN_OUTCOME_ACCEPTED: SmtpReply = { code: 250, enhanced: '2.0.0', text: 'Ok: handed over, upstream did not confirm' };

/**
 * The reply to the client, without the transaction id (the transaction adds it with withId).
 *
 * @example relayReply(classify(facts), facts, { unknownOutcomeReply: { code: 451 } })
 *   // a 550 5.1.1 at RCPT → { code: 550, enhanced: '5.1.1', text: '<x@example.org>: User unknown' }
 */
export function relayReply(verdict: Verdict, facts: UpstreamFacts, policy: ReplyPolicy): SmtpReply {
  const failure = verdict.failure;
  if (verdict.outcome === 'delivered' || verdict.outcome === 'partial') return relayedReply(facts.reply);
  if (failure === null) throw new Error(`verdict ${verdict.outcome} without a failure`);
  if (failure.class === 'unknown_outcome' && policy.unknownOutcomeReply.code === 250) return UNKNOWN_OUTCOME_ACCEPTED;
  return RULE_REPLIES[failure.rule] ?? clientReplyFor(ruleAnswer(failure.rule) ?? CLIENT_ANSWERS[failure.class], facts);
}

/** 250 with the upstream's queue id when its reply names one: the app's log then joins the provider's. */
function relayedReply(reply: SmtpReply | null): SmtpReply {
  const queueId = reply === null ? null : extractQueueId(reply.text);
  return { code: 250, enhanced: '2.0.0', text: queueId === null ? 'Ok: relayed' : `Ok: relayed as ${queueId}` };
}

/** How a class answers the client. `{detail}` in a text is replaced by " (what happened)" or "". */
type ClientAnswer =
  /** The upstream's code, enhanced code and text; `fallbackCode` when its code cannot be used. */
  | { readonly kind: 'pass-through'; readonly fallbackCode: number }
  /** A fixed code and enhanced code, with the upstream's text when there is one. */
  | { readonly kind: 'fixed'; readonly code: number; readonly enhanced: string; readonly text: string }
  /** 451 with our enhanced code and our text. */
  | { readonly kind: 'deferral'; readonly enhanced: string; readonly text: string }
  /** 451 keeping the upstream's enhanced code (or `enhanced` without one), with our text. */
  | { readonly kind: 'deferral-keeping-enhanced'; readonly enhanced: string; readonly text: string };

/**
 * docs/failures.md's client reply per class. Enhanced codes are RFC 3463's: x.4.1 no answer from host,
 * x.4.2 bad connection, x.4.3 directory (DNS) failure, x.7.5 cryptographic failure, x.5.0 protocol,
 * x.3.0 mail system, x.7.0 security or policy.
 */
const CLIENT_ANSWERS: Readonly<Record<UpstreamFailureClass, ClientAnswer>> = {
  dns: { kind: 'deferral', enhanced: '4.4.3', text: 'Upstream host name could not be resolved{detail}; try again later' },
  connect: { kind: 'deferral', enhanced: '4.4.1', text: 'Upstream unreachable{detail}; try again later' },
  tls: { kind: 'deferral', enhanced: '4.7.5', text: 'TLS with upstream failed{detail}; try again later' },
  timeout: { kind: 'deferral', enhanced: '4.4.2', text: 'Upstream timed out{detail}; try again later' },
  connection_lost: {
    kind: 'deferral',
    enhanced: '4.4.2',
    text: 'Upstream connection lost before the message was sent{detail}; try again later',
  },
  unknown_outcome: {
    kind: 'deferral',
    enhanced: '4.4.2',
    text: 'Delivery not confirmed: upstream connection ended after the message was sent{detail}; it may have been delivered',
  },
  protocol: { kind: 'deferral', enhanced: '4.5.0', text: 'Upstream protocol error{detail}; try again later' },
  upstream_unavailable: {
    kind: 'deferral-keeping-enhanced',
    enhanced: '4.3.0',
    text: 'Upstream not accepting mail right now{detail}; try again later',
  },
  throttled: { kind: 'deferral', enhanced: '4.7.0', text: 'Upstream rate limit reached{detail}; try again later' },
  quota: { kind: 'deferral', enhanced: '4.7.0', text: 'Upstream sending quota exhausted{detail}; try again later' },
  upstream_auth: { kind: 'deferral', enhanced: '4.7.0', text: 'Relay not authorised by upstream{detail}; try again later' },
  sender_rejected: { kind: 'pass-through', fallbackCode: 550 },
  recipient_rejected: { kind: 'pass-through', fallbackCode: 550 },
  recipient_deferred: { kind: 'pass-through', fallbackCode: 451 },
  content_rejected: { kind: 'pass-through', fallbackCode: 554 },
  too_large: { kind: 'fixed', code: 552, enhanced: '5.3.4', text: 'Message size exceeds the upstream limit' },
  too_many_recipients: { kind: 'fixed', code: 452, enhanced: '4.5.3', text: 'Too many recipients for the upstream' },
  unsupported: { kind: 'pass-through', fallbackCode: 550 },
  internal: { kind: 'deferral', enhanced: '4.3.0', text: 'Local error in processing{detail}; try again later' },
};

/**
 * No OAuth2 token for the upstream (classify/rules.ts, the identity-provider rules): the reply says the
 * login failed at the identity provider, so the app's developer does not chase the SMTP upstream.
 */
const IDENTITY_PROVIDER_REFUSED: ClientAnswer = {
  kind: 'deferral',
  enhanced: '4.7.0',
  text: 'Relay not authorised by upstream (identity provider refused the token request); try again later',
};
const RULE_ANSWERS: Readonly<Record<string, ClientAnswer>> = {
  'identity-provider-dns': {
    kind: 'deferral',
    enhanced: '4.4.3',
    text: 'Upstream login failed: identity provider host name could not be resolved{detail}; try again later',
  },
  'identity-provider-tls': {
    kind: 'deferral',
    enhanced: '4.7.5',
    text: 'Upstream login failed: TLS with the identity provider failed{detail}; try again later',
  },
  'identity-provider-timeout': { kind: 'deferral', enhanced: '4.4.2', text: 'Upstream login failed: identity provider timed out; try again later' },
  'identity-provider-unreachable': {
    kind: 'deferral',
    enhanced: '4.4.1',
    text: 'Upstream login failed: identity provider unreachable{detail}; try again later',
  },
  'identity-provider-throttled': { kind: 'deferral', enhanced: '4.7.0', text: 'Upstream login failed: identity provider rate limit reached; try again later' },
  'identity-provider-unavailable': { kind: 'deferral', enhanced: '4.3.0', text: 'Upstream login failed: identity provider unavailable; try again later' },
  'identity-provider-bad-response': {
    kind: 'deferral',
    enhanced: '4.5.0',
    text: 'Upstream login failed: identity provider sent no usable token; try again later',
  },
  'identity-provider-bad-client': IDENTITY_PROVIDER_REFUSED,
  'identity-provider-grant-refused': IDENTITY_PROVIDER_REFUSED,
  'identity-provider-not-authorised': IDENTITY_PROVIDER_REFUSED,
  'identity-provider-refused': IDENTITY_PROVIDER_REFUSED,
};

function ruleAnswer(rule: string): ClientAnswer | null {
  return Object.hasOwn(RULE_ANSWERS, rule) ? (RULE_ANSWERS[rule] ?? null) : null;
}

/** Words for the client reply's "(...)" detail. Codes only, never messages: those may carry secrets. */
const TIMEOUT_WORDS: Readonly<Record<string, string>> = {
  CONNECT_TIMEOUT: 'connection timed out',
  GREETING_TIMEOUT: 'no greeting',
  UPGRADE_TIMEOUT: 'during the TLS upgrade',
  SOCKET_TIMEOUT: 'no reply',
};
const CAUSE_WORDS: Readonly<Record<string, string>> = {
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'temporary DNS failure',
  ECONNREFUSED: 'connection refused',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EADDRNOTAVAIL: 'local address not available',
  ETIMEDOUT: 'timed out',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed while writing',
  ECONNABORTED: 'connection aborted',
  CERT_HAS_EXPIRED: 'certificate expired',
  CERT_NOT_YET_VALID: 'certificate not yet valid',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in chain',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate issuer unknown',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'incomplete certificate chain',
  ERR_TLS_CERT_ALTNAME_INVALID: 'certificate name mismatch',
  HOSTNAME_MISMATCH: 'certificate name mismatch',
  ERR_SSL_WRONG_VERSION_NUMBER: 'TLS spoken to a plaintext port',
};
const ERROR_WORDS: Readonly<Record<string, string>> = {
  ECONNECTION: 'connection closed',
  EDEADLINE: 'relay deadline reached',
  EPOOLWAIT: 'every connection busy',
  ESHUTDOWN: 'shutting down',
  ETLS: 'STARTTLS failed',
  EREQUIRETLS: 'REQUIRETLS not possible',
  ENOAUTH: 'no credentials configured',
  EOAUTH2: 'token refresh failed',
  ESTREAM: 'message could not be read',
  EMESSAGE: 'over the size the upstream announced',
};
function clientReplyFor(answer: ClientAnswer, facts: UpstreamFacts): SmtpReply {
  const reply = facts.reply;
  switch (answer.kind) {
    case 'pass-through':
      return passThrough(reply, answer.fallbackCode);
    case 'fixed':
      return { code: answer.code, enhanced: answer.enhanced, text: nonEmptyText(reply) ?? answer.text };
    case 'deferral':
      return { code: 451, enhanced: answer.enhanced, text: fillDetail(answer.text, facts) };
    case 'deferral-keeping-enhanced':
      return {
        code: 451,
        enhanced: asTransient(reply?.enhanced ?? null) ?? answer.enhanced,
        text: fillDetail(answer.text, facts),
      };
  }
}

/**
 * The upstream's verdict as it stands, when its code suits the class: a transient class needs a 4xx
 * other than 421, a permanent one a 5xx other than 535. Otherwise (SendGrid's 403, or no reply) the
 * class's fallback code. The enhanced code is kept when its class digit agrees with the code (RFC 3463
 * §2), else `X.0.0`.
 */
function passThrough(reply: SmtpReply | null, fallbackCode: number): SmtpReply {
  const code = reply !== null && isUsableCode(reply.code, codeClass(fallbackCode)) ? reply.code : fallbackCode;
  const first = String(code).charAt(0);
  const enhanced = reply?.enhanced?.startsWith(`${first}.`) === true ? reply.enhanced : `${first}.0.0`;
  return { code, enhanced, text: nonEmptyText(reply) ?? 'Refused by upstream' };
}

function isUsableCode(code: number, wantedClass: number): boolean {
  return codeClass(code) === wantedClass && code !== 421 && code !== 535;
}

/** An upstream enhanced code made transient for a 451 (a 421's "4.4.5" stays as it is). */
function asTransient(enhanced: string | null): string | null {
  return enhanced === null ? null : `4${enhanced.slice(1)}`;
}

function nonEmptyText(reply: SmtpReply | null): string | null {
  return reply === null || reply.text.trim() === '' ? null : reply.text;
}

function fillDetail(template: string, facts: UpstreamFacts): string {
  const detail = describe(facts);
  return template.replace('{detail}', detail === null ? '' : ` (${detail})`);
}

/** What happened, in words the app's developer can act on: the upstream's code, or the error kind. */
function describe(facts: UpstreamFacts): string | null {
  const reply = facts.reply;
  if (reply !== null && reply.code >= 400) {
    return `upstream replied ${reply.code}${reply.enhanced === null ? '' : ` ${reply.enhanced}`}`;
  }
  return wordsFor(TIMEOUT_WORDS, facts.timeoutType) ?? wordsFor(CAUSE_WORDS, facts.cause) ?? wordsFor(ERROR_WORDS, facts.errorCode);
}

function wordsFor(table: Readonly<Record<string, string>>, key: string | null): string | null {
  return key !== null && Object.hasOwn(table, key) ? (table[key] ?? null) : null;
}
/** RFC 5321 §4.2.1: the first digit says success (2), transient (4) or permanent (5). */
function codeClass(code: number): number {
  return Math.floor(code / 100);
}
