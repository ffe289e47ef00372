/**
 * The failure classifier: turns the facts of one upstream attempt into a verdict (outcome, failure
 * class, whether another upstream may be tried). Pure: no I/O, no clock, no state. What the client is
 * told follows from the verdict in one place, reply/relay-reply.ts. The detection order is
 * docs/failures.md's, first match wins:
 *
 * 1. the final dot was sent and no final reply came → `unknown_outcome`;
 * 2. an upstream refusal exists → REPLY_RULES (provider texts, then code + enhanced code + phase);
 * 3. no reply → ERROR_RULES (nodemailer code, cause, timeout kind, syscall);
 * 4. anything else → `internal` with rule `unclassified`, so a metric can count the gaps.
 */
import { classTraits, mayFailOverClass, type Outcome, type UpstreamFailureClass } from './failure-class.js';
import { ERROR_RULES, REPLY_RULES, type ErrorMatch, type ReplyMatch } from './rules.js';
import type { AttemptPhase, ReplyPhase, UpstreamFacts, Verdict } from './upstream-facts.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';
import { ERR } from '../error-codes.js';

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
  if (facts.errorCode === ERR.CLIENT_ABORT) return clientAborted();
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
  if (facts.rejected.length === 0) {
    return { outcome: 'delivered', failure: null, mayFailOver: false };
  }
  const permanent = facts.rejected.some((refused) => refused.reply !== null && codeClass(refused.reply.code) === 5);
  const klass: UpstreamFailureClass = permanent ? 'recipient_rejected' : 'recipient_deferred';
  return {
    outcome: 'partial',
    failure: { class: klass, ...classTraits(klass), rule: 'some-recipients-refused' },
    mayFailOver: false,
  };
}

/**
 * We stopped the upstream send because the client vanished. Not a relay failure: recorded under
 * `internal` (the attempt was ended locally) with actor `none` and its own rule name; nobody is left to
 * read a reply.
 */
function clientAborted(): Verdict {
  return {
    outcome: 'aborted',
    failure: { class: 'internal', retryable: true, actor: 'none', scope: 'message', rule: 'client-aborted' },
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
  const rule = REPLY_RULES.find((candidate) => matchesReply(candidate.match, reply, facts.replyPhase, facts.command ?? null));
  if (rule === undefined) return UNCLASSIFIED;
  return rule.hint === undefined ? { class: rule.class, rule: rule.name } : { class: rule.class, rule: rule.name, hint: rule.hint };
}

function matchesReply(match: ReplyMatch, reply: SmtpReply, phase: ReplyPhase | null, command: string | null): boolean {
  return (
    (match.command === undefined || (command !== null && match.command.test(command))) &&
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
  if (rule === undefined) return null;
  return rule.hint === undefined ? { class: rule.class, rule: rule.name } : { class: rule.class, rule: rule.name, hint: rule.hint };
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
  return {
    outcome: outcomeOf(decision.class),
    failure: { class: decision.class, ...classTraits(decision.class), rule: decision.rule, ...hintOf(decision) },
    mayFailOver: mayFailOver(facts.phase, decision.class),
  };
}

function hintOf(decision: Decision): { hint?: string } {
  return decision.hint === undefined ? {} : { hint: decision.hint };
}

/**
 * A class the client should not retry ends the mail (`rejected`: it gets a 5xx); any other keeps it
 * queued (`deferred`: a 4xx). reply/relay-reply.ts answers accordingly, and a test holds the two
 * together for every class.
 */
function outcomeOf(klass: UpstreamFailureClass): Outcome {
  if (klass === 'unknown_outcome') return 'unknown';
  return classTraits(klass).retryable === false ? 'rejected' : 'deferred';
}

/** Failing over after the body was handed over could deliver the message twice. */
function mayFailOver(phase: AttemptPhase, klass: UpstreamFailureClass): boolean {
  return phase !== 'sent' && phase !== 'done' && mayFailOverClass(klass);
}

/** RFC 5321 §4.2.1: the first digit says success (2), transient (4) or permanent (5). */
function codeClass(code: number): number {
  return Math.floor(code / 100);
}
