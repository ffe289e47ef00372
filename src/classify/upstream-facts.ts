import type { SmtpReply } from '../smtp/smtp-reply.js';
import type { Actor, Outcome, Scope, UpstreamFailureClass } from './failure-class.js';

/** Which command an upstream reply answered. `data` is the reply to the final dot (after the body). */
export type ReplyPhase = 'greeting' | 'ehlo' | 'starttls' | 'auth' | 'mail' | 'rcpt' | 'data-command' | 'data';

/** How far an attempt got, by our own tracking (nodemailer cannot tell "before body" from "after dot"). */
export type AttemptPhase = 'connecting' | 'envelope' | 'body' | 'sent' | 'done';

export interface RecipientFact {
  readonly recipient: string;
  readonly reply: SmtpReply | null;
}

/**
 * The facts of one finished upstream attempt, without judgement. `classify()` turns them into a verdict.
 * Built by the upstream sender from nodemailer's `info` or error plus our own phase tracking.
 */
export interface UpstreamFacts {
  /** sendMail resolved (the final reply was 2xx for at least one recipient). */
  readonly ok: boolean;
  /** How far the attempt got when it ended. `sent` = the final dot was written, no final reply yet. */
  readonly phase: AttemptPhase;
  /** The deciding upstream reply (final reply on success; the failing reply otherwise), or null. */
  readonly reply: SmtpReply | null;
  readonly replyPhase: ReplyPhase | null;
  /** nodemailer error code (ESOCKET, ETIMEDOUT, EENVELOPE, ...) or our own (EDEADLINE, ESHUTDOWN, EINTERNAL). */
  readonly errorCode: string | null;
  /** System or TLS cause: nodemailer's `originalCode`, else `err.code` of the cause (ECONNREFUSED, CERT_HAS_EXPIRED...). */
  readonly cause: string | null;
  /** nodemailer `timeoutType`: CONNECT_TIMEOUT, GREETING_TIMEOUT, UPGRADE_TIMEOUT, SOCKET_TIMEOUT. */
  readonly timeoutType: string | null;
  /** `syscall` of the system error, to tell a DNS server refusal (queryA) from a TCP refusal (connect). */
  readonly syscall: string | null;
  /**
   * The command nodemailer names for a refusal (`AUTH XOAUTH2`, `AUTH PLAIN`, `MAIL FROM`...): tells a
   * refused OAuth2 token from a refused password. Absent or null = unknown.
   */
  readonly command?: string | null;
  /** Error message, for the record's failure detail only (never matched on). */
  readonly message: string | null;
  readonly accepted: readonly string[];
  /** Recipients the upstream refused, each with its reply when one came. */
  readonly rejected: readonly RecipientFact[];
}

export interface FailureVerdict {
  readonly class: UpstreamFailureClass;
  /** Should the client try again later; null = unknown (unknown_outcome). */
  readonly retryable: boolean | null;
  readonly actor: Actor;
  readonly scope: Scope;
  /** Name of the rule that matched, for the record's failure detail and tests. */
  readonly rule: string;
  /** The rule's advice to the operator (rules.ts `hint`), where the class alone would mislead; else absent. */
  readonly hint?: string;
}

export interface Verdict {
  readonly outcome: Outcome;
  /** null only on `delivered`. On `partial`, the class of the refused recipients. */
  readonly failure: FailureVerdict | null;
  /** The attempt failed before the body was handed over with an infrastructure/service class. */
  readonly mayFailOver: boolean;
}
