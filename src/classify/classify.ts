/**
 * The failure classifier: turns the facts of one upstream attempt into a verdict (outcome, failure
 * class, the reply the client gets, whether another upstream may be tried). Pure: no I/O, no clock,
 * no state. The detection order is docs/failures.md's, first match wins:
 *
 * 1. the final dot was sent and no final reply came → `unknown_outcome`;
 * 2. an upstream refusal exists → REPLY_RULES (provider texts, then code + enhanced code + phase);
 * 3. no reply → ERROR_RULES (nodemailer code, cause, timeout kind, syscall);
 * 4. anything else → `internal` with rule `unclassified`, so a metric can count the gaps.
 *
 * Reply principle (docs/failures.md): verdicts about this message or these recipients pass through;
 * infrastructure, credential and quota failures become 451 so the client's queue keeps the mail.
 * Never 421 (RFC 5321 §3.8: it closes the client's session) and never 535 (RFC 4954 §6: the app would
 * blame its own login).
 */
import { classTraits, mayFailOverClass, type Outcome, type UpstreamFailureClass } from './failure-class.js';
import { extractQueueId } from '../smtp/reply-text.js';
import { ERROR_RULES, REPLY_RULES, type ErrorMatch, type ReplyMatch } from './rules.js';
import type { AttemptPhase, ReplyPhase, UpstreamFacts, Verdict } from './upstream-facts.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';

/** Our own error code for "the client went away, so we stopped". */
const CLIENT_ABORT = 'ECLIENTABORT';

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

interface Decision {
  readonly class: UpstreamFailureClass;
  readonly rule: string;
  readonly hint?: string;
}

const UNKNOWN_OUTCOME: Decision = { class: 'unknown_outcome', rule: 'no-reply-after-dot' };
const UNCLASSIFIED: Decision = { class: 'internal', rule: 'unclassified' };

/**
 * Classifies one finished upstream attempt.
 *
 * @example classify({ ...facts, ok: false, phase: 'envelope', errorCode: 'EENVELOPE', replyPhase: 'rcpt',
 *   reply: parseReply(550, '5.1.1 <x@example.org>: User unknown') })
 *   // → outcome 'rejected', class 'recipient_rejected', client reply 550 5.1.1 (passed through)
 */
export function classify(facts: UpstreamFacts): Verdict {
  if (isUnknownOutcome(facts)) return failed(facts, UNKNOWN_OUTCOME);
  if (facts.ok) return succeeded(facts);
  if (facts.errorCode === CLIENT_ABORT) return clientAborted();
  return failed(facts, decideFromReply(facts) ?? decideFromError(facts) ?? UNCLASSIFIED);
}

/**
 * Step 1. nodemailer reports a loss after the dot like any other loss (`command: 'CONN'`), so only our
 * phase tracking can tell: the dot went out and nothing answered it. RFC 5321 §4.1.1.4 / RFC 1047:
 * the upstream may or may not have taken responsibility for the message.
 */
function isUnknownOutcome(facts: UpstreamFacts): boolean {
  return !facts.ok && facts.phase === 'sent' && !answersTheDot(facts.reply, facts.replyPhase);
}

function answersTheDot(reply: SmtpReply | null, phase: ReplyPhase | null): boolean {
  return reply !== null && reply.code >= 400 && (phase === 'data' || phase === null);
}

/** `ok`: at least one recipient accepted. Some refused → `partial`, still 250 (one DATA reply only). */
function succeeded(facts: UpstreamFacts): Verdict {
  const clientReply = relayedReply(facts.reply);
  if (facts.rejected.length === 0) {
    return { outcome: 'delivered', failure: null, clientReply, mayFailOver: false };
  }
  const permanent = facts.rejected.some((refused) => refused.reply !== null && codeClass(refused.reply.code) === 5);
  const klass: UpstreamFailureClass = permanent ? 'recipient_rejected' : 'recipient_deferred';
  return {
    outcome: 'partial',
    failure: { class: klass, ...classTraits(klass), rule: 'some-recipients-refused' },
    clientReply,
    mayFailOver: false,
  };
}

function relayedReply(reply: SmtpReply | null): SmtpReply {
  const queueId = reply === null ? null : extractQueueId(reply.text);
  return { code: 250, enhanced: '2.0.0', text: queueId === null ? 'Ok: relayed' : `Ok: relayed as ${queueId}` };
}

/**
 * We stopped the upstream send because the client vanished. Not a relay failure: recorded under
 * `internal` (the attempt was ended locally) with actor `none` and its own rule name, and the reply
 * only exists because a verdict needs one; nobody is left to read it.
 */
function clientAborted(): Verdict {
  return {
    outcome: 'aborted',
    failure: { class: 'internal', retryable: true, actor: 'none', scope: 'message', rule: 'client-aborted' },
    clientReply: { code: 451, enhanced: '4.3.0', text: 'Transaction aborted (client disconnected)' },
    mayFailOver: false,
  };
}

/**
 * Step 2. Only a refusal (4xx/5xx) is a verdict; a stray 2xx/3xx leaves the decision to step 3. A
 * refusal no rule explains goes straight to step 4: the error code under it (EENVELOPE, EMESSAGE) only
 * names the failing command, which the reply phase already says, and guessing from it would hide the gap.
 */
function decideFromReply(facts: UpstreamFacts): Decision | null {
  const reply = facts.reply;
  if (reply === null || reply.code < 400) return null;
  const rule = REPLY_RULES.find((candidate) => matchesReply(candidate.match, reply, facts.replyPhase));
  if (rule === undefined) return UNCLASSIFIED;
  return rule.hint === undefined ? { class: rule.class, rule: rule.name } : { class: rule.class, rule: rule.name, hint: rule.hint };
}

function matchesReply(match: ReplyMatch, reply: SmtpReply, phase: ReplyPhase | null): boolean {
  return (
    (match.codes === undefined || match.codes.includes(reply.code)) &&
    (match.codeClass === undefined || codeClass(reply.code) === match.codeClass) &&
    matchesEnhanced(match.enhanced, reply.enhanced) &&
    (match.text === undefined || match.text.test(asOneLine(reply.text))) &&
    (match.phase === undefined || (phase !== null && match.phase.includes(phase)))
  );
}

/**
 * A multi-line reply is one sentence broken over continuation lines ("550-5.4.5 Daily user sending
 * limit exceeded. For more information on Gmail\n550-5.4.5 sending limits go to ..."), so text rules
 * read the lines joined by a space: words split across two lines still match.
 */
function asOneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ');
}

function matchesEnhanced(pattern: RegExp | null | undefined, enhanced: string | null): boolean {
  if (pattern === undefined) return true;
  if (pattern === null) return enhanced === null;
  return enhanced !== null && pattern.test(enhanced);
}

/** Step 3. */
function decideFromError(facts: UpstreamFacts): Decision | null {
  const rule = ERROR_RULES.find((candidate) => matchesError(candidate.match, facts));
  return rule === undefined ? null : { class: rule.class, rule: rule.name };
}

function matchesError(match: ErrorMatch, facts: UpstreamFacts): boolean {
  return (
    matchesField(match.errorCode, facts.errorCode) &&
    matchesField(match.cause, facts.cause) &&
    matchesField(match.timeoutType, facts.timeoutType) &&
    matchesField(match.syscall, facts.syscall) &&
    (match.phase === undefined || match.phase.includes(facts.phase))
  );
}

function matchesField(pattern: RegExp | undefined, value: string | null): boolean {
  return pattern === undefined || (value !== null && pattern.test(value));
}

function failed(facts: UpstreamFacts, decision: Decision): Verdict {
  const clientReply = clientReplyFor(CLIENT_ANSWERS[decision.class], facts);
  return {
    outcome: outcomeOf(decision.class, clientReply),
    failure: { class: decision.class, ...classTraits(decision.class), rule: decision.rule, ...hintOf(decision) },
    clientReply,
    mayFailOver: mayFailOver(facts.phase, decision.class),
  };
}

function hintOf(decision: Decision): { hint?: string } {
  return decision.hint === undefined ? {} : { hint: decision.hint };
}

/** The outcome follows what the client was told: a 5xx ends the mail, a 4xx keeps it queued. */
function outcomeOf(klass: UpstreamFailureClass, clientReply: SmtpReply): Outcome {
  if (klass === 'unknown_outcome') return 'unknown';
  return codeClass(clientReply.code) === 5 ? 'rejected' : 'deferred';
}

/** Failing over after the body was handed over could deliver the message twice. */
function mayFailOver(phase: AttemptPhase, klass: UpstreamFailureClass): boolean {
  return phase !== 'sent' && phase !== 'done' && mayFailOverClass(klass);
}

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
  return (
    wordsFor(TIMEOUT_WORDS, facts.timeoutType) ?? wordsFor(CAUSE_WORDS, facts.cause) ?? wordsFor(ERROR_WORDS, facts.errorCode)
  );
}

function wordsFor(table: Readonly<Record<string, string>>, key: string | null): string | null {
  return key !== null && Object.hasOwn(table, key) ? (table[key] ?? null) : null;
}

/** RFC 5321 §4.2.1: the first digit says success (2), transient (4) or permanent (5). */
function codeClass(code: number): number {
  return Math.floor(code / 100);
}
