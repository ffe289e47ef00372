/**
 * The classification rules as data (docs/failures.md, "How a class is chosen"). Two ordered tables; in each the
 * first matching rule wins:
 *
 * - REPLY_RULES, for attempts that ended with an upstream reply: provider text rules first (quota,
 *   throttling, identity, where the code alone would mislead), then the generic SMTP rules (reply code,
 *   RFC 3463 enhanced code, the command the reply answered).
 * - ERROR_RULES, for attempts that ended without a reply: nodemailer's error code, the system or TLS
 *   cause under it, the timeout kind and the syscall.
 *
 * Every rule carries the real reply (or error) it was written for; a test runs each example through
 * `classify()` and expects this very rule to decide it, so a rule shadowed by an earlier one shows up.
 * Where no real provider text was at hand, the example is the generic RFC wording and says so.
 *
 * Regular expressions here never take the `g` or `y` flag: those keep `lastIndex` state between calls.
 */
import type { UpstreamFailureClass } from './failure-class.js';
import type { AttemptPhase, ReplyPhase } from './upstream-facts.js';
import { ERR } from '../error-codes.js';

/** A pattern matching exactly one of mailtrail's own error codes (error-codes.ts). */
function exactly(code: string): RegExp {
  return new RegExp(`^${code}$`);
}

/** What a reply rule looks at. Every field given must match; an empty match matches everything. */
export interface ReplyMatch {
  /** Exact reply codes. */
  readonly codes?: readonly number[];
  /** First digit of the reply code: 4 transient, 5 permanent (RFC 5321 §4.2.1). */
  readonly codeClass?: 4 | 5;
  /** Tested against the enhanced code ("5.1.1"). `null` means the reply must carry none. */
  readonly enhanced?: RegExp | null;
  /** Tested against the reply text without code and enhanced code (lines joined with "\n"). */
  readonly text?: RegExp;
  /** The command the reply answered. A reply whose phase is unknown never matches a phase rule. */
  readonly phase?: readonly ReplyPhase[];
  /** Tested against the command nodemailer names (`AUTH XOAUTH2`); a reply whose command is unknown never matches. */
  readonly command?: RegExp;
}

/** A reply as the upstream sent it: `text` is everything after the code, enhanced code included. */
export interface ReplyExample {
  readonly code: number;
  readonly text: string;
  readonly phase: ReplyPhase;
  /** The command it answered, where a rule looks at it (`AUTH XOAUTH2`). */
  readonly command?: string;
}

export interface ReplyRule {
  readonly name: string;
  readonly class: UpstreamFailureClass;
  readonly match: ReplyMatch;
  readonly example: ReplyExample;
  /**
   * What the operator must do, where the class's usual remedy would send them the wrong way (a refused
   * password is not a wrong password). It goes into the record's failure detail and the alert text.
   */
  readonly hint?: string;
}

/** What an error rule looks at (facts of an attempt that got no reply). Every field given must match. */
export interface ErrorMatch {
  /** nodemailer `code`, or our own (EDEADLINE, ESHUTDOWN, EINTERNAL). */
  readonly errorCode?: RegExp;
  /** nodemailer `originalCode` or the cause's `code` (ECONNREFUSED, CERT_HAS_EXPIRED, ...). */
  readonly cause?: RegExp;
  /** nodemailer `timeoutType`. */
  readonly timeoutType?: RegExp;
  readonly syscall?: RegExp;
  /** How far the attempt got, by our own tracking. */
  readonly phase?: readonly AttemptPhase[];
}

/** An error as nodemailer (10.x) or mailtrail reports it. */
export interface ErrorExample {
  readonly errorCode: string;
  readonly cause: string | null;
  readonly timeoutType: string | null;
  readonly syscall: string | null;
  readonly phase: AttemptPhase;
}

export interface ErrorRule {
  readonly name: string;
  readonly class: UpstreamFailureClass;
  readonly match: ErrorMatch;
  readonly example: ErrorExample;
  /** As ReplyRule's: what the operator must do where the class's usual remedy would mislead. */
  readonly hint?: string;
}

/**
 * The provider takes no password for this account any more and wants OAuth2 (XOAUTH2): mailtrail logs
 * in with OAuth2 once the upstream's `auth` says `type: oauth2` (docs/oauth2.md). SMTP AUTH itself must
 * stay on for the mailbox: XOAUTH2 is an SMTP AUTH mechanism too.
 */
export const PASSWORD_AUTH_DISABLED_HINT =
  'the provider no longer accepts a password for this account: configure OAuth2 for this upstream (auth.type: oauth2, docs/oauth2.md): ' +
  'Microsoft 365 with tenantId, clientId and a client secret or certificate, Google Workspace with a service account key (serviceAccountKeyFile). ' +
  'SMTP AUTH must stay enabled for the mailbox (XOAUTH2 is an SMTP AUTH mechanism); until the change, while the provider allows it, ' +
  'enable SMTP AUTH with a password for this mailbox (Microsoft) or use an app password (Google)';

/** SMTP AUTH is off for the mailbox or the tenant: a token cannot help, an Exchange admin must switch it on. */
export const SMTP_AUTH_DISABLED_HINT =
  'SMTP AUTH is switched off for this mailbox or the whole tenant, and XOAUTH2 needs it too: an Exchange admin enables it for the mailbox ' +
  '(Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false) or for the tenant (Set-TransportConfig -SmtpClientAuthenticationDisabled $false)';

/** The identity provider issued a token and the mail server refused it (after one fresh token): permissions, not credentials. */
export const TOKEN_REFUSED_HINT =
  'the mail server refused the access token although the identity provider issued it (a fresh token was tried once): ' +
  "Microsoft 365: register the application's service principal in Exchange Online and give it FullAccess or SendAs on this mailbox (auth.user), " +
  'and grant the SMTP.SendAsApp permission with admin consent; Google: the service account needs domain-wide delegation for https://mail.google.com/ ' +
  'and auth.user must be a user of the domain';

/**
 * Provider texts. They come first because the code alone misleads: SES signals a daily quota with the
 * same 454 as a rate limit, Gmail signals a daily cap with a permanent 550, Microsoft's "mailbox full"
 * is the *sender's* mailbox, SendGrid reports a quota as an authentication failure.
 */
export const PROVIDER_RULES: readonly ReplyRule[] = [
  // Amazon SES, account daily cap (docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html).
  // Same 454 and prefix as the rate limit below, so this one must come first.
  {
    name: 'ses-daily-quota',
    class: 'quota',
    match: { text: /Daily message quota exceeded/i },
    example: { code: 454, text: 'Throttling failure: Daily message quota exceeded.', phase: 'data' },
  },
  // Amazon SES, per-second sending rate (same page).
  {
    name: 'ses-sending-rate',
    class: 'throttled',
    match: { text: /Maximum sending rate exceeded/i },
    example: { code: 454, text: 'Throttling failure: Maximum sending rate exceeded.', phase: 'data' },
  },
  // A server at its capacity for everyone says so in words: Exim "421 Too many concurrent SMTP
  // connections; please try again later." (smtp_accept_max: every slot taken, by all clients together,
  // src/daemon.c) and "421 Too much load; please try again later." (smtp_load_reserve), Haraka's toobusy
  // plugin "421 Too busy; please try again later". The server is busy, it does not limit us; it must
  // come before the SES connection limit below, whose words Exim's begin with.
  {
    name: 'server-at-capacity',
    class: 'upstream_unavailable',
    match: { codeClass: 4, text: /Too many concurrent SMTP connections;|\bToo much load\b|\bToo busy\b/i },
    example: { code: 421, text: 'Too many concurrent SMTP connections; please try again later.', phase: 'greeting' },
  },
  // Amazon SES, connection limit, listed in "SMTP response codes returned by Amazon SES"; Exim's limit on
  // one client address says the same: "421 Too many concurrent SMTP connections from this IP address;
  // please try again later." (smtp_accept_max_per_host). A bare 421 would read as "upstream
  // unavailable"; it is a limit on us.
  {
    name: 'ses-concurrent-connections',
    class: 'throttled',
    match: { text: /Too many concurrent SMTP connections/i },
    example: { code: 421, text: 'Too many concurrent SMTP connections', phase: 'greeting' },
  },
  // Amazon SES, sender (or, in the sandbox, recipient) identity not verified in this region.
  {
    name: 'ses-identity-not-verified',
    class: 'sender_rejected',
    match: { text: /Email address is not verified/i },
    example: {
      code: 554,
      text: 'Message rejected: Email address is not verified. The following identities failed the check in region EU-WEST-1: x@example.com',
      phase: 'data',
    },
  },
  // Amazon SES refuses a malformed message after the dot with "Transaction failed: <reason>".
  {
    name: 'ses-transaction-failed',
    class: 'content_rejected',
    match: { codeClass: 5, text: /^Transaction failed:/i },
    example: { code: 554, text: "Transaction failed: Duplicate header 'DKIM-Signature'.", phase: 'data' },
  },
  // A daily cap stated in words: Gmail "550-5.4.5 Daily user sending limit exceeded", the Google
  // Workspace relay's "550 5.4.5 Daily SMTP relay limit exceeded for user" and "550 5.7.1 Daily SMTP
  // relay limit exceeded for customer" (support.google.com/a/answer/3726730, /a/answer/6140680). Sent
  // as permanent 5xx, with 5.4.5 or 5.7.1, although they clear the next day; the words decide.
  {
    name: 'daily-limit',
    class: 'quota',
    match: { text: /\bDaily\b.*\b(?:quota|limit)\s+exceeded/i },
    example: {
      code: 550,
      text: '5.4.5 Daily user sending limit exceeded. For more information on Gmail\n550-5.4.5 sending limits go to\n550 5.4.5  https://support.google.com/a/answer/166852 d2e1a72fcca58-76e7d551493sm9728466b3a.112 - gsmtp',
      phase: 'data',
    },
  },
  // Google Workspace SMTP relay, short-term volume limit (same page).
  {
    name: 'gmail-peak-relay-limit',
    class: 'throttled',
    match: { text: /Peak SMTP relay limit exceeded/i },
    example: { code: 450, text: '4.2.1 Peak SMTP relay limit exceeded for customer.', phase: 'mail' },
  },
  // Gmail, per-recipient receiving rate: a limit on that one mailbox, not on our account, so it must
  // not slow every message down (as `throttled` would) and is not an outage either (same page).
  {
    name: 'gmail-recipient-rate',
    class: 'recipient_deferred',
    match: { text: /receiving mail (?:too quickly|at a rate)/i },
    example: {
      code: 450,
      text: '4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered.',
      phase: 'rcpt',
    },
  },
  // Gmail SMTP relay, DoS protection at HELO (same page).
  {
    name: 'gmail-try-again-later',
    class: 'throttled',
    match: { codes: [421], text: /Try again later, closing connection/i },
    example: { code: 421, text: '4.7.0 Try again later, closing connection.', phase: 'ehlo' },
  },
  // Gmail: the recipient domain requires TLS and we did not use it (same page); Microsoft 365: "421
  // 4.7.66 TLS 1.0 and 1.1 are not supported" (aka.ms/smtp_auth_tls). Not a rate limit or an outage,
  // whatever 4.7.0 or 421 suggest: the operator must fix TLS.
  {
    name: 'gmail-tls-required',
    class: 'tls',
    match: { text: /TLS required for RCPT domain|TLS 1\.0 and 1\.1 are not supported/i },
    example: { code: 421, text: '4.7.0 TLS required for RCPT domain, closing connection.', phase: 'rcpt' },
  },
  // Google Workspace SMTP relay accepts only allow-listed IPs: our address is not on the list, which the
  // operator fixes in the relay settings (same page).
  {
    name: 'gmail-ip-not-allowed',
    class: 'upstream_auth',
    match: { text: /IP not in whitelist for RCPT domain/i },
    example: { code: 421, text: '4.7.0 IP not in whitelist for RCPT domain, closing connection.', phase: 'rcpt' },
  },
  // Gmail and Postfix (smtpd) both answer MAIL or AUTH before STARTTLS this way: a 530 that means
  // "TLS first", not "log in first" (RFC 3207 §4).
  {
    name: 'starttls-required',
    class: 'tls',
    match: { codes: [530], text: /STARTTLS/i },
    example: { code: 530, text: '5.7.0 Must issue a STARTTLS command first.', phase: 'mail' },
  },
  // Microsoft's outbound spam controls answer after the body with the verdict on the *account*:
  // "554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; ... Actual verdict is RefuseQuota,
  // ShowTierUpgrade" (the account's sending cap for its tier is used up, nodejs-nodemailer-outlook#11).
  // Not this message's content, whatever 5.2.0 after the dot suggests.
  {
    name: 'microsoft-outbound-quota',
    class: 'quota',
    match: { text: /OutboundSpamException.*\bverdict is RefuseQuota\b/i },
    example: {
      code: 554,
      text: '5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message due to a permanent exception with message WASCL UserAction verdict is not None. Actual verdict is RefuseQuota, ShowTierUpgrade. OutboundSpamException: WASCL UserAction verdict is not None. Actual verdict is RefuseQuota, ShowTierUpgrade. [Hostname=VI1PR05MB5405.eurprd05.prod.outlook.com]',
      phase: 'data',
    },
  },
  // Any other outbound-spam verdict holds the account itself ("Actual verdict is HipNotify": a person must
  // prove the account is not a spammer, Valine-Admin#26; "Suspend"): the account may not send.
  {
    name: 'microsoft-account-held',
    class: 'upstream_auth',
    match: { text: /OutboundSpamException/i },
    example: {
      code: 554,
      text: '5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message due to a permanent exception with message WASCL UserAction verdict is not None. Actual verdict is HipNotify, ShowTierUpgrade. OutboundSpamException: WASCL UserAction verdict is not None. Actual verdict is HipNotify, ShowTierUpgrade. [Hostname=TY2PR06MB3117.apcprd06.prod.outlook.com]',
      phase: 'data',
    },
  },
  // Microsoft 365, recipient rate limit (10,000 a day) reached
  // (learn.microsoft.com/exchange/troubleshoot/send-emails/smtp-submission-improvements).
  {
    name: 'microsoft-submission-quota',
    class: 'quota',
    match: { text: /SubmissionQuotaExceeded/i },
    example: { code: 554, text: '5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException', phase: 'data' },
  },
  // Microsoft 365: the *sending* mailbox is full (sent items are stored), so x.2.2 here is not about
  // the recipient (same page).
  {
    name: 'microsoft-sender-mailbox-full',
    class: 'quota',
    match: { text: /STOREDRV\.Submission\.Exception:QuotaExceededException/i },
    example: {
      code: 554,
      text: '5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded',
      phase: 'data',
    },
  },
  // Microsoft 365: at most three concurrent SMTP AUTH connections per mailbox (same page; the
  // Exchange team blog gives the other wording, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded").
  {
    name: 'microsoft-concurrency',
    class: 'throttled',
    match: { text: /Concurrent connections limit exceeded|sender thread limit exceeded/i },
    example: { code: 432, text: '4.3.2 Concurrent connections limit exceeded.', phase: 'mail' },
  },
  // Microsoft 365: the authenticated mailbox may not send as the From address (arrives after the body).
  {
    name: 'microsoft-send-as-denied',
    class: 'sender_rejected',
    match: { text: /does not have permissions to send as this sender|\bSendAsDenied\b/i },
    example: { code: 550, text: '5.7.60 SMTP; Client does not have permissions to send as this sender', phase: 'data' },
  },
  // SMTP AUTH switched off for the mailbox or the tenant, met with an OAuth2 token: Microsoft 365 "535
  // 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox" (or "for
  // the Tenant", aka.ms/smtp_auth_disabled). XOAUTH2 goes through SMTP AUTH as well, so no token helps:
  // not the password rule's advice (move to OAuth2), since this login is OAuth2 already.
  {
    name: 'xoauth2-smtp-auth-disabled',
    class: 'upstream_auth',
    match: { command: /^AUTH XOAUTH2$/i, text: /SmtpClientAuthentication is disabled/i },
    example: {
      code: 535,
      text: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [BN9PR03CA0383.namprd03.prod.outlook.com 2024-05-21T09:12:31.412Z 08DC78A8F6F2E7C1]',
      phase: 'auth',
      command: 'AUTH XOAUTH2',
    },
    hint: SMTP_AUTH_DISABLED_HINT,
  },
  // Password (basic) authentication switched off: Microsoft 365 "535 5.7.139 Authentication
  // unsuccessful, SmtpClientAuthentication is disabled for the Tenant" / "... basic authentication is
  // disabled" / "550 5.7.30 Basic authentication is not supported for Client Submission"
  // (aka.ms/smtp_auth_disabled) / "... user is locked by your organization's security defaults policy"
  // (security defaults turn basic authentication off, discourse#27914), Google "534-5.7.9
  // Application-specific password required". The password may well be right: the provider wants OAuth2
  // for this account. Its own rule and hint, so the record and the alert say so instead of "check the
  // credentials".
  {
    name: 'password-auth-disabled',
    class: 'upstream_auth',
    match: {
      text: /SmtpClientAuthentication is disabled|basic authentication is (?:disabled|not supported)|security defaults policy|Application-specific password required/i,
    },
    example: {
      code: 535,
      text: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [MN2PR05CA0004.namprd05.prod.outlook.com 2023-09-12T20:59:57.214Z 08DBB276B7E699C4]',
      phase: 'auth',
    },
    hint: PASSWORD_AUTH_DISABLED_HINT,
  },
  // A token the identity provider issued, refused by the mail server even after a fresh one (the login
  // retries once, upstream/upstream-login.ts): Microsoft 365 "535 5.7.3 Authentication unsuccessful"
  // (its answer to an app-only token whose service principal has no right on the mailbox, as reported in
  // HChaoHui/msOauth2api#3 and freescout#4935), Gmail's "535-5.7.8 Username and Password not accepted"
  // after the 334 challenge. Credentials are fine (the identity provider took them): permissions are not.
  {
    name: 'xoauth2-token-refused',
    class: 'upstream_auth',
    match: { command: /^AUTH XOAUTH2$/i, codes: [535], phase: ['auth'] },
    example: {
      code: 535,
      text: '5.7.3 Authentication unsuccessful [SGXP274CA0016.SGPP274.PROD.OUTLOOK.COM 2025-03-20T11:25:21.972Z 08DD66EDEFB0DFDF]',
      phase: 'auth',
      command: 'AUTH XOAUTH2',
    },
    hint: TOKEN_REFUSED_HINT,
  },
  // SendGrid: plan credits used up. It arrives as an AUTH failure (Postfix logs show "SASL
  // authentication failed; ... said: 451 Authentication failed: Maximum credits exceeded"), so it must
  // beat the AUTH rule below (twilio.com/docs/sendgrid/for-developers/sending-email/smtp-errors-and-troubleshooting).
  {
    name: 'sendgrid-credits',
    class: 'quota',
    match: { text: /Maximum credits exceeded/i },
    example: { code: 451, text: 'Authentication failed: Maximum credits exceeded', phase: 'auth' },
  },
  // SendGrid: From address is not a verified Sender Identity (reported after the body).
  {
    name: 'sendgrid-sender-identity',
    class: 'sender_rejected',
    match: { text: /does not match a verified Sender Identity/i },
    example: {
      code: 550,
      text: 'The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/sender-identity/ to see the Sender Identity requirements',
      phase: 'data',
    },
  },
  // SendGrid's documented non-standard 403 for the same problem. Read as 4xx it would look transient;
  // it is permanent until the operator verifies the sender. (The phase is not documented.)
  {
    name: 'sendgrid-not-authorized-sender',
    class: 'sender_rejected',
    match: { codes: [403] },
    example: { code: 403, text: 'You are not authorized to send from that email address', phase: 'mail' },
  },
  // The upstream does not let us relay: Postfix "554 5.7.1 <x>: Relay access denied" (and its soft
  // "454 4.7.1" form, which is no rate limit), Exchange "Unable to relay", Exim "550 relay not
  // permitted", cPanel's Exim "550-Please turn on SMTP Authentication ... is not permitted to relay
  // through this server without authentication.", Mailgun and Haraka "550 5.7.1 Relaying denied", Haraka
  // "550 I cannot deliver mail for <x>", Google's relay "550 5.7.0 Mail relay denied" / "550 5.7.1
  // Invalid credentials for relay". Exim repeats the refusal at DATA ("503-All RCPT commands were
  // rejected with this error:\n503-relay not permitted"), and the words decide there too.
  // Whatever the code and the command, the same situation as never having logged in: not the
  // recipient's fault.
  {
    name: 'relay-access-denied',
    class: 'upstream_auth',
    match: {
      text: /Relay access denied|Unable to relay|Relaying denied|relay not permitted|not permitted to relay|Mail relay denied|Invalid credentials for relay|I cannot deliver mail for/i,
    },
    example: { code: 554, text: '5.7.1 <x@example.org>: Relay access denied', phase: 'rcpt' },
  },
  // Exim's default text when an ACL denies a command without a message of its own (Exim spec,
  // smtp_return_error_details: "bland messages such as Administrative prohibition"): on a smarthost the
  // MAIL and RCPT ACLs deny our session's right to send or relay, as in "550 Administrative prohibition"
  // to a client that had not logged in (express-couchUser#46). The greeting form is the greeting rule's.
  {
    name: 'administrative-prohibition',
    class: 'upstream_auth',
    match: { codeClass: 5, text: /^Administrative prohibition\b/i, phase: ['mail', 'rcpt'] },
    example: { code: 550, text: 'Administrative prohibition', phase: 'rcpt' },
  },
  // The account may not send at all: SES "554 Access denied: User `arn:...' is not authorized to
  // perform `ses:SendRawEmail'" (an IAM policy, docs.aws.amazon.com/ses/latest/dg/troubleshoot-smtp.html),
  // SendGrid "550 Unauthenticated senders not allowed", Mailgun "421 Domain <d> is not allowed to send:
  // ..." (sandbox or unactivated account) and, after the final dot, "554 Sandbox subdomains are for test
  // purposes only. Please add your own domain or add the address to authorized recipients in Account
  // Settings." Arriving after the final dot or as a 421 they still say nothing about the message: the
  // operator fixes the account.
  {
    name: 'account-not-permitted',
    class: 'upstream_auth',
    match: {
      text: /is not authorized to perform|Unauthenticated senders not allowed|is not allowed to send:|Sandbox subdomains are for test purposes/i,
    },
    example: {
      code: 554,
      text: "Access denied: User `arn:aws:iam::381491960855:user/mwaa-ses' is not authorized to perform `ses:SendRawEmail' on resource `arn:aws:ses:eu-west-2:381491960855:identity/jacob.woffenden@justice.gov.uk'",
      phase: 'data',
    },
  },
  // Postfix smtpd's sender restrictions (reject_sender_login_mismatch, reject_unknown_sender_domain,
  // check_sender_access) answer at RCPT by default (smtpd_delay_reject) but judge the MAIL FROM
  // address: a sender verdict, whatever command it answers.
  {
    name: 'sender-address-rejected',
    class: 'sender_rejected',
    match: { text: /Sender address rejected/i },
    example: { code: 553, text: '5.7.1 <user@domain.de>: Sender address rejected: not owned by user user@domain.de', phase: 'rcpt' },
  },
  // Exim's sender verification could not confirm our MAIL FROM address (it does not exist at its own
  // domain, or the domain does not route): "550-Verification failed for <x>\n550-Unrouteable
  // address\n550 Sender verify failed" (acl.c; the spec's example says "Sender verification failed"),
  // answered in the RCPT ACL. A sender verdict; the nested "550 Unknown local part" some hosts quote is
  // the sender's own MX talking about the sender.
  {
    name: 'sender-verify-failed',
    class: 'sender_rejected',
    match: { codeClass: 5, text: /\bSender verif(?:y|ication) failed\b/i },
    example: {
      code: 550,
      text: 'Verification failed for <user@example.com>\n550-The mail server does not recognize user@example.com as a valid sender.\n550 Sender verify failed',
      phase: 'rcpt',
    },
  },
  // Postfix smtpd's client and HELO restrictions (reject_unknown_client_hostname,
  // reject_non_fqdn_helo_hostname, ...) and Google's "550-5.7.1 [ip] The IP you're using to send mail is
  // not authorized to send email directly to our servers" (support.google.com/mail/answer/10336): the
  // upstream refuses our host itself, so a 450 4.7.x or a 504 at RCPT is neither the recipient's problem,
  // a rate limit nor a missing extension. The operator fixes the host's name, its DNS, or routes through
  // a smarthost.
  {
    name: 'client-host-rejected',
    class: 'upstream_auth',
    match: { text: /Client host rejected|Helo command rejected|The IP you're using to send mail is not authorized/i },
    example: { code: 450, text: '4.7.25 Client host rejected: cannot find your hostname, [192.0.2.22]', phase: 'rcpt' },
  },
  // Provider words for a temporary problem on their side, sent with policy codes (Gmail "421 4.7.0
  // Temporary System Problem", "421 4.7.0 Connection expired"; SES "454 Temporary authentication
  // failure"; Gmail "454 4.7.0 Cannot authenticate due to a temporary system problem", RFC 4954 §6:
  // the password is not known to be wrong; Exim "435 Unable to authenticate at present" when its
  // authenticator defers, "451 Temporary local problem - please try later" for any deferred lookup or
  // ACL, even in answer to a RCPT, and "451 Could not complete sender verify callout" when its check of
  // our sender could not finish). Not a limit on us, not bad credentials, not the recipient.
  {
    name: 'temporary-system-problem',
    class: 'upstream_unavailable',
    match: {
      codeClass: 4,
      text: /temporary system problem|Temporary (?:authentication|service) failure|Connection expired|Unable to authenticate at present|Temporary local problem|Could not complete sender verify/i,
    },
    example: { code: 421, text: '4.7.0 Temporary System Problem. Try again later.', phase: 'mail' },
  },
  // A limit on our sending rate or connections stated in words, whatever the code: Gmail "421 4.7.28
  // ... mail has been temporarily rate limited", "454 4.7.0 Too many login attempts".
  {
    name: 'rate-limited-in-words',
    class: 'throttled',
    match: { codeClass: 4, text: /\brate limited\b|Too many login attempts|quota for sending messages with the same Message-ID/i },
    example: {
      code: 421,
      text: '4.7.28 Gmail has detected an unusual rate of mail originating from your IP address. To protect our users from spam, mail has been temporarily rate limited.',
      phase: 'data',
    },
  },
  // Gmail blocks a message for its content with a transient code (421 4.7.0 "... the message has been
  // blocked"): a verdict on this message, not a limit on us.
  {
    name: 'message-blocked',
    class: 'content_rejected',
    match: { text: /the message has been blocked/i },
    example: {
      code: 421,
      text: '4.7.0 This message is suspicious due to the nature of the content or the links within. To best protect our users from spam, the message has been blocked.',
      phase: 'data',
    },
  },
  // The rest of the recipients belong in another transaction: Gmail "451 4.3.0 Multiple destination
  // domains per transaction is unsupported" (RFC 5321 §4.5.3.1.10's case, said in words), Haraka's
  // smtp_forward "450 Split transaction, retry soon" for a recipient bound to another forward host.
  {
    name: 'split-transaction',
    class: 'too_many_recipients',
    match: { text: /per transaction is unsupported|in a separate transaction|\bSplit transaction\b/i },
    example: { code: 451, text: '4.3.0 Multiple destination domains per transaction is unsupported. Please try again.', phase: 'rcpt' },
  },
  // Our sending IP is on a blocklist: Postfix smtpd "554 5.7.1 Service unavailable; Client host [x]
  // blocked using zen.spamhaus.org" (postscreen: "550 5.7.1 Service unavailable; client [x] blocked using
  // b.barracudacentral.org"), Microsoft "550 5.7.606 Access denied, banned sending IP [x]" and "550 5.7.1
  // Unfortunately, messages from [x] weren't sent. ... on our block list" (also without an enhanced code,
  // "550 SC-001"). A policy refusal of the whole connection, so a RCPT- or MAIL-phase 5xx here says
  // nothing about the recipient or the sender address.
  {
    name: 'sending-ip-blocklisted',
    class: 'content_rejected',
    match: { codeClass: 5, text: /\bclient(?: host)? \[[^\]]*\] blocked using|banned sending IP|\bon our block ?list\b/i },
    example: { code: 554, text: '5.7.1 Service unavailable; Client host [x] blocked using zen.spamhaus.org', phase: 'rcpt' },
  },
];

/** RFC 3463 enhanced-code families used below. */
const THROTTLING = /^4\.7\.[01]$/; // x.7.0 other security, x.7.1 not authorised
/**
 * A 421 is a throttle only with a policy code. x.3.2 is RFC 3463's "system not accepting network
 * messages" (shutdown, load, maintenance): unavailability with any code. Microsoft's concurrency limit
 * under 4.3.2 is told by its words (rule `microsoft-concurrency`).
 */
const CLOSING_THROTTLED = /^4\.7\.[01]$/;
const MAIL_SYSTEM_OR_NETWORK = /^4\.[34]\.\d{1,3}$/; // x.3.x mail system, x.4.x network and routing

/**
 * Generic SMTP rules: reply code, enhanced code and the command answered. Ordered from the most
 * specific to the catch-alls at the end. Examples are Postfix's wording unless noted.
 */
export const SMTP_RULES: readonly ReplyRule[] = [
  // RFC 5321 §4.2 and §3.8: 421 ends the session, at any point. With a rate or policy enhanced code it
  // is a limit on us.
  {
    name: 'closing-throttled',
    class: 'throttled',
    match: { codes: [421], enhanced: CLOSING_THROTTLED },
    example: {
      code: 421,
      text: '4.7.0 Our system has detected an unusual rate of unsolicited mail originating from your IP address.',
      phase: 'data',
    }, // Gmail
  },
  {
    name: 'closing-unavailable',
    class: 'upstream_unavailable',
    match: { codes: [421] },
    example: { code: 421, text: '4.4.5 Server busy, try again later.', phase: 'mail' }, // Gmail
  },
  // Exim answers DATA after refused recipients by repeating the RCPT refusal (src/smtp_in.c): "503-All
  // RCPT commands were rejected with this error:\n503-No Such User Here\n503 Valid RCPT command must
  // precede DATA". The repeated words decide (a relay or sender refusal is caught by its text rule
  // earlier); what is left is about the recipients, not a sequence error of ours.
  {
    name: 'all-recipients-refused',
    class: 'recipient_rejected',
    match: { codes: [503], text: /^All RCPT commands were rejected/i },
    example: {
      code: 503,
      text: 'All RCPT commands were rejected with this error:\n503-No Such User Here\n503 Valid RCPT command must precede DATA',
      phase: 'data-command',
    },
  },
  // RFC 5321 §4.1.4: 503 bad sequence is about the session, not the message; nodemailer too treats it
  // as transient.
  {
    name: 'bad-sequence',
    class: 'protocol',
    match: { codes: [503] },
    example: { code: 503, text: '5.5.1 Error: need RCPT command', phase: 'data-command' },
  },
  // RFC 4954 §6: any refusal of AUTH (535 5.7.8, 534 5.7.9, 454 4.7.0, 538 5.7.11) is our credentials or
  // setup. Never passed through: the client would blame its own login.
  {
    name: 'auth-refused',
    class: 'upstream_auth',
    match: { phase: ['auth'] },
    example: { code: 535, text: '5.7.8 Error: authentication failed: authentication failure', phase: 'auth' },
  },
  // The same codes outside AUTH: 530 at MAIL means we never logged in (RFC 4954 §6).
  {
    name: 'auth-codes',
    class: 'upstream_auth',
    match: { codes: [530, 534, 535, 538] },
    example: { code: 530, text: '5.7.0 Authentication required', phase: 'mail' }, // generic wording
  },
  // A login demanded in words with a plain 550 at MAIL or RCPT: Haraka "550 Authentication required"
  // (connection.js, a submission port without AUTH). Not a verdict on the sender or the recipient.
  {
    name: 'login-required-in-words',
    class: 'upstream_auth',
    match: { codeClass: 5, text: /\bauthentication (?:is )?required\b/i, phase: ['mail', 'rcpt'] },
    example: { code: 550, text: 'Authentication required', phase: 'mail' },
  },
  // A protocol status (RFC 3463 x.5.x) in answer to STARTTLS is our sequence, not TLS: Gmail "454 5.5.1
  // STARTTLS may not be repeated".
  {
    name: 'starttls-sequence',
    class: 'protocol',
    match: { phase: ['starttls'], enhanced: /^[45]\.5\.\d{1,3}$/ },
    example: { code: 454, text: '5.5.1 STARTTLS may not be repeated.', phase: 'starttls' },
  },
  // RFC 3207 §4: STARTTLS refused ("454 TLS not available due to temporary reason").
  {
    name: 'starttls-refused',
    class: 'tls',
    match: { phase: ['starttls'] },
    example: { code: 454, text: '4.7.0 TLS not available due to local problem', phase: 'starttls' },
  },
  // RFC 5321 §3.1 / §4.2.3: a greeting other than 220, e.g. 554 "No SMTP service here", or RFC 7504's
  // 521 "does not accept mail". Another upstream may still work.
  {
    name: 'greeting-refused',
    class: 'protocol',
    match: { codeClass: 5, phase: ['greeting'] },
    example: { code: 554, text: 'No SMTP service here', phase: 'greeting' }, // RFC 5321 §4.2.3 wording
  },
  // EHLO and the HELO fallback both refused (RFC 5321 §4.1.1.1).
  {
    name: 'ehlo-refused',
    class: 'protocol',
    match: { phase: ['ehlo'] },
    example: { code: 502, text: '5.5.2 Error: command not recognized', phase: 'ehlo' },
  },
  // RFC 5321 §4.2.2: 500 syntax error / command unrecognised, 502 not implemented.
  {
    name: 'command-unrecognized',
    class: 'protocol',
    match: { codes: [500, 502] },
    example: { code: 500, text: '5.5.2 Error: command not recognized', phase: 'mail' },
  },
  // RFC 3463 x.5.3 "too many recipients"; RFC 5321 §4.5.3.1.10 asks for 452 and says a 552 there is
  // temporary, so the client retries the rest in another transaction.
  {
    name: 'too-many-recipients',
    class: 'too_many_recipients',
    match: { enhanced: /^[45]\.5\.3$/ },
    example: { code: 452, text: '4.5.3 Error: too many recipients', phase: 'rcpt' },
  },
  {
    name: 'too-many-recipients-552',
    class: 'too_many_recipients',
    match: { codes: [552], enhanced: null, phase: ['rcpt'] },
    // No provider text at hand: the RFC 5321 §4.5.3.1.10 case of an older server.
    example: { code: 552, text: 'Too many recipients', phase: 'rcpt' },
  },
  // Too many recipients said in words, without x.5.3: Exim "452 too many recipients" to each RCPT past
  // recipients_max (its spec: the client sends the rest later), and with recipients_max_reject "552 too
  // many recipients" and "554 Too many recipients" to DATA (src/smtp_in.c).
  {
    name: 'too-many-recipients-in-words',
    class: 'too_many_recipients',
    match: { text: /\btoo many recipients\b/i },
    example: { code: 452, text: 'too many recipients', phase: 'rcpt' },
  },
  // RFC 3463 x.3.4 "message too big for system" (Postfix's message_size_limit).
  {
    name: 'message-too-big',
    class: 'too_large',
    match: { codeClass: 5, enhanced: /^5\.3\.4$/ },
    example: { code: 552, text: '5.3.4 Message size exceeds fixed limit', phase: 'data' },
  },
  // RFC 3463 x.2.3 "message length exceeds administrative limit".
  {
    name: 'message-over-admin-limit',
    class: 'too_large',
    match: { codeClass: 5, enhanced: /^5\.2\.3$/ },
    example: { code: 552, text: '5.2.3 Message length exceeds administrative limit', phase: 'data' }, // RFC 3463 wording
  },
  // RFC 5321 §4.2.2: 552 "exceeded storage allocation", without an enhanced code, at MAIL (SIZE=) or
  // after the body.
  {
    name: 'storage-exceeded',
    class: 'too_large',
    match: { codes: [552], enhanced: null, phase: ['mail', 'data'] },
    example: { code: 552, text: 'Message size exceeds maximum permitted', phase: 'data' }, // Exim
  },
  // The size said in words with a plain 550: Haraka "550 Message too big!" at MAIL (SIZE= over databytes,
  // connection.js).
  {
    name: 'message-too-big-in-words',
    class: 'too_large',
    match: { codeClass: 5, text: /\bmessage (?:is )?too (?:big|large)\b/i },
    example: { code: 550, text: 'Message too big!', phase: 'mail' },
  },
  // RFC 5321 §4.2.3: 555 "MAIL FROM/RCPT TO parameters not recognized or not implemented" (SMTPUTF8,
  // BODY=8BITMIME, DSN parameters).
  {
    name: 'parameter-unsupported',
    class: 'unsupported',
    match: { codes: [555] },
    example: { code: 555, text: '5.5.4 Unsupported option: SMTPUTF8', phase: 'mail' },
  },
  // RFC 6531: x.6.7, a non-ASCII address sent without SMTPUTF8. (Postfix's smtpd wording; its client
  // reports the mirror case locally as "SMTPUTF8 is required, but was not offered by host".)
  {
    name: 'smtputf8-required',
    class: 'unsupported',
    match: { enhanced: /^5\.6\.7$/ },
    example: { code: 553, text: '5.6.7 Must declare SMTPUTF8 to send unicode address', phase: 'mail' },
  },
  // RFC 5321 §4.2.2: 504 "command parameter not implemented".
  {
    name: 'parameter-not-implemented',
    class: 'unsupported',
    match: { codes: [504] },
    example: { code: 504, text: '5.5.4 Command parameter not implemented', phase: 'mail' }, // RFC 5321 wording
  },
  // RFC 3463 x.5.x in a transient reply: Gmail "451 4.5.0 SMTP protocol violation, see RFC 2821".
  {
    name: 'transient-protocol',
    class: 'protocol',
    match: { codeClass: 4, enhanced: /^4\.5\.[0-24-9]\d{0,2}$/ },
    example: { code: 451, text: '4.5.0 SMTP protocol violation, see RFC 2821.', phase: 'mail' },
  },
  // Transient refusals for rate or policy reasons, in any phase (greylisting too: retrying later is
  // exactly what helps).
  {
    name: 'transient-policy',
    class: 'throttled',
    match: { codeClass: 4, enhanced: THROTTLING },
    // No provider text at hand: the generic RFC 3463 x.7.1 wording in a transient reply.
    example: { code: 451, text: '4.7.1 Delivery not authorized, try again later', phase: 'rcpt' },
  },
  // RFC 3463 x.3.x / x.4.x: the upstream's own system or network is in trouble, even when it says so
  // in reply to a RCPT.
  {
    name: 'mail-system-trouble',
    class: 'upstream_unavailable',
    match: { codeClass: 4, enhanced: MAIL_SYSTEM_OR_NETWORK },
    example: { code: 451, text: '4.3.0 Error: queue file write error', phase: 'data' },
  },
  // Whatever is left at RCPT is about that recipient (x.1.x address, x.2.x mailbox, RFC 7504's 556).
  {
    name: 'recipient-refused',
    class: 'recipient_rejected',
    match: { codeClass: 5, phase: ['rcpt'] },
    example: {
      code: 550,
      text: '5.1.1 <x@example.org>: Recipient address rejected: User unknown in virtual mailbox table',
      phase: 'rcpt',
    },
  },
  {
    name: 'recipient-deferred',
    class: 'recipient_deferred',
    match: { codeClass: 4, phase: ['rcpt'] },
    example: { code: 452, text: '4.2.2 The email account that you tried to reach is over quota.', phase: 'rcpt' }, // Gmail
  },
  // Whatever is left at MAIL FROM is about the sender.
  {
    name: 'sender-refused',
    class: 'sender_rejected',
    match: { codeClass: 5, phase: ['mail'] },
    example: { code: 553, text: '5.1.7 The sender address address is not a valid RFC 5321 address.', phase: 'mail' }, // Gmail
  },
  // The DATA command itself refused: nothing of the message was judged yet (RFC 5321 §4.1.1.4).
  {
    name: 'data-command-refused',
    class: 'protocol',
    match: { codeClass: 5, phase: ['data-command'] },
    example: { code: 554, text: '5.5.1 Error: no valid recipients', phase: 'data-command' },
  },
  // Whatever is left after the body is about the message: spam, virus, policy, authentication.
  {
    name: 'content-refused',
    class: 'content_rejected',
    match: { codeClass: 5, phase: ['data'] },
    example: { code: 550, text: '5.7.1 This message violates example.com email policy. - gcdp <sessionid> - gsmtp', phase: 'data' }, // Gmail
  },
  // Any other transient refusal: the upstream cannot take mail right now.
  {
    name: 'transient-reply',
    class: 'upstream_unavailable',
    match: { codeClass: 4 },
    example: { code: 451, text: 'Queuing declined or disabled, try later', phase: 'data' }, // Haraka, Haraka#68
  },
];

export const REPLY_RULES: readonly ReplyRule[] = [...PROVIDER_RULES, ...SMTP_RULES];

/** Where a token request's failure is not the SMTP upstream's: every hint below says which side failed. */
const NOT_THE_UPSTREAM = 'the SMTP upstream itself is not at fault (it was not asked to log in)';

/**
 * No OAuth2 access token for the upstream (error ETOKEN, upstream/oauth2/token-error.ts): the identity
 * provider's token endpoint, not the SMTP upstream, failed. They come first: their causes (ECONNREFUSED,
 * ENOTFOUND...) would otherwise be read as the SMTP upstream's. `cause` is the system code when the
 * endpoint was not reached, else the OAuth2 error of its answer (RFC 6749 §5.2) with Microsoft's own
 * number after it, or `http_<status>` for an answer without one.
 */
const IDENTITY_PROVIDER_RULES: readonly ErrorRule[] = [
  {
    name: 'identity-provider-dns',
    class: 'dns',
    match: { errorCode: exactly(ERR.TOKEN), cause: /^(?:ENOTFOUND|EAI_AGAIN|EAI_NONAME|ESERVFAIL|ETIMEOUT|ENODATA)$/ },
    example: { errorCode: ERR.TOKEN, cause: 'ENOTFOUND', timeoutType: null, syscall: 'getaddrinfo', phase: 'connecting' },
    hint: `the identity provider's host name (auth.tokenUrl, or the provider's token endpoint) does not resolve: check it and this machine's resolver; ${NOT_THE_UPSTREAM}`,
  },
  {
    name: 'identity-provider-tls',
    class: 'tls',
    match: { errorCode: exactly(ERR.TOKEN), cause: /^(?:CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|ERR_TLS_|ERR_SSL_|EPROTO$)/ },
    example: { errorCode: ERR.TOKEN, cause: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', timeoutType: null, syscall: null, phase: 'connecting' },
    hint: `TLS with the identity provider's token endpoint failed: check auth.ca (a TLS-inspecting proxy needs its CA there), the certificate's name and this machine's clock; ${NOT_THE_UPSTREAM}`,
  },
  {
    name: 'identity-provider-timeout',
    class: 'timeout',
    match: { errorCode: exactly(ERR.TOKEN), cause: /^ETIMEDOUT$/ },
    example: { errorCode: ERR.TOKEN, cause: 'ETIMEDOUT', timeoutType: null, syscall: null, phase: 'connecting' },
    hint: `the identity provider did not answer the token request within auth.timeout: check egress to it (a proxy, a firewall dropping packets); ${NOT_THE_UPSTREAM}`,
  },
  {
    name: 'identity-provider-unreachable',
    class: 'connect',
    match: { errorCode: exactly(ERR.TOKEN), cause: /^(?:ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|EADDRNOTAVAIL|ECONNRESET|EPIPE|ECONNABORTED|EMSGSIZE)$/ },
    example: { errorCode: ERR.TOKEN, cause: 'ECONNREFUSED', timeoutType: null, syscall: 'connect', phase: 'connecting' },
    hint: `the identity provider's token endpoint could not be reached: check auth.tokenUrl and egress to it (HTTPS through any firewall or proxy); ${NOT_THE_UPSTREAM}`,
  },
  // RFC 6585 §4: 429 Too Many Requests, from the token endpoint.
  {
    name: 'identity-provider-throttled',
    class: 'throttled',
    match: { errorCode: exactly(ERR.TOKEN), cause: /^(?:http_429|slow_down)\b/ },
    example: { errorCode: ERR.TOKEN, cause: 'http_429', timeoutType: null, syscall: null, phase: 'connecting' },
    hint: `the identity provider is limiting mailtrail's token requests: they are cached and renewed once per token lifetime, so look for other clients of the same application; ${NOT_THE_UPSTREAM}`,
  },
  // RFC 6749 §5.2 has no code for "try later"; servers answer 5xx, some with the authorization
  // endpoint's `temporarily_unavailable` or `server_error` (§4.1.2.1).
  {
    name: 'identity-provider-unavailable',
    class: 'upstream_unavailable',
    match: { errorCode: exactly(ERR.TOKEN), cause: /^(?:temporarily_unavailable|server_error|http_5\d\d)\b/ },
    example: { errorCode: ERR.TOKEN, cause: 'http_503', timeoutType: null, syscall: null, phase: 'connecting' },
    hint: `the identity provider cannot issue tokens right now: mailtrail asks again with the next message and the next health probe; ${NOT_THE_UPSTREAM}`,
  },
  // Microsoft Entra ID: HTTP 401 {"error":"invalid_client","error_description":"AADSTS7000215: Invalid
  // client secret provided. Ensure the secret being sent in the request is the client secret value, not
  // the client secret ID, ...","error_codes":[7000215],...} (microsoft-365-agents-toolkit#8621); an
  // expired secret is AADSTS7000222, an unknown certificate AADSTS700027.
  {
    name: 'identity-provider-bad-client',
    class: 'upstream_auth',
    match: { errorCode: exactly(ERR.TOKEN), cause: /^invalid_client\b/ },
    example: { errorCode: ERR.TOKEN, cause: 'invalid_client AADSTS7000215', timeoutType: null, syscall: null, phase: 'connecting' },
    hint:
      "the identity provider does not accept the application's credentials: check auth.clientId and auth.clientSecret (Microsoft: the secret's Value, " +
      "not its Secret ID; secrets expire) or the certificate registered for the application; failure.detail.message has the provider's error",
  },
  // RFC 6749 §5.2 invalid_grant: a refresh token expired or revoked (Microsoft AADSTS700082), or a
  // service account's signed assertion refused (Google "invalid_grant: Invalid JWT Signature." for a
  // deleted key, "Invalid JWT: Token must be a short-lived token" for a clock off by minutes).
  {
    name: 'identity-provider-grant-refused',
    class: 'upstream_auth',
    match: { errorCode: exactly(ERR.TOKEN), cause: /^invalid_grant\b/ },
    example: { errorCode: ERR.TOKEN, cause: 'invalid_grant', timeoutType: null, syscall: null, phase: 'connecting' },
    hint:
      'the identity provider refused the grant: a refresh token that expired or was revoked (issue a new one and set auth.refreshToken), ' +
      "a service account key that was deleted or disabled, or this machine's clock off by minutes",
  },
  // The application may not have this token: Google "unauthorized_client: Client is unauthorized to
  // retrieve access tokens using this method, or client not authorized for any of the scopes requested."
  // (domain-wide delegation missing for the scope); Microsoft invalid_scope, or AADSTS65001 consent.
  {
    name: 'identity-provider-not-authorised',
    class: 'upstream_auth',
    match: { errorCode: exactly(ERR.TOKEN), cause: /^(?:unauthorized_client|access_denied|invalid_scope|consent_required)\b/ },
    example: { errorCode: ERR.TOKEN, cause: 'unauthorized_client', timeoutType: null, syscall: null, phase: 'connecting' },
    hint:
      'the application may not have this token: Microsoft 365: grant it the SMTP.SendAsApp application permission with admin consent; ' +
      "Google: authorise the service account's client ID for https://mail.google.com/ in domain-wide delegation; others: the client's grants and auth.scope",
  },
  // A 2xx without an access token or lifetime: not a token endpoint (a login page behind a proxy).
  {
    name: 'identity-provider-bad-response',
    class: 'protocol',
    match: { errorCode: exactly(ERR.TOKEN), cause: /^invalid_token_response$/ },
    example: { errorCode: ERR.TOKEN, cause: 'invalid_token_response', timeoutType: null, syscall: null, phase: 'connecting' },
    hint: `the token endpoint answered without a usable access token: is auth.tokenUrl the provider's token endpoint?; ${NOT_THE_UPSTREAM}`,
  },
  // Any other refusal: Microsoft HTTP 400 invalid_request "AADSTS90002: Tenant 'contoso.example' not
  // found." (a wrong tenantId), "AADSTS700016: Application with identifier '...' was not found in the
  // directory" (unauthorized_client there, caught above).
  {
    name: 'identity-provider-refused',
    class: 'upstream_auth',
    match: { errorCode: exactly(ERR.TOKEN) },
    example: { errorCode: ERR.TOKEN, cause: 'invalid_request AADSTS90002', timeoutType: null, syscall: null, phase: 'connecting' },
    hint: 'the identity provider refused the token request: failure.detail.message has its error; check auth.tenantId, auth.clientId, auth.scope and auth.tokenUrl',
  },
];

/**
 * Attempts that ended without a reply. nodemailer 10 keeps the system or TLS code under `code`
 * (ESOCKET, ETLS, ...) in `originalCode`, our `cause`.
 */
export const ERROR_RULES: readonly ErrorRule[] = [
  ...IDENTITY_PROVIDER_RULES,
  // Host name resolution failed (nodemailer EDNS; cause ENOTFOUND, EAI_AGAIN, ETIMEOUT).
  {
    name: 'dns-failed',
    class: 'dns',
    match: { errorCode: /^EDNS$/ },
    example: { errorCode: 'EDNS', cause: 'ENOTFOUND', timeoutType: null, syscall: 'queryA', phase: 'connecting' },
  },
  {
    name: 'dns-cause',
    class: 'dns',
    match: { cause: /^(?:ENOTFOUND|EAI_AGAIN|EAI_NONAME|ESERVFAIL|ETIMEOUT|ENODATA)$/ },
    example: { errorCode: 'ESOCKET', cause: 'EAI_AGAIN', timeoutType: null, syscall: 'getaddrinfo', phase: 'connecting' },
  },
  // A DNS server refusing a query is ECONNREFUSED too; the syscall (query*, getaddrinfo) tells it from
  // a refused SMTP connection.
  {
    name: 'dns-server-refused',
    class: 'dns',
    match: { syscall: /^(?:getaddrinfo|query|resolve)/ },
    example: { errorCode: 'ESOCKET', cause: 'ECONNREFUSED', timeoutType: null, syscall: 'queryA', phase: 'connecting' },
  },
  // STARTTLS refused or failed, or REQUIRETLS (RFC 8689) impossible.
  {
    name: 'tls-upgrade-failed',
    class: 'tls',
    match: { errorCode: /^(?:ETLS|EREQUIRETLS)$/ },
    example: { errorCode: 'ETLS', cause: null, timeoutType: null, syscall: null, phase: 'connecting' },
  },
  // Certificate verification (OpenSSL / Node names), on implicit TLS and after STARTTLS alike.
  {
    name: 'tls-certificate',
    class: 'tls',
    match: { cause: /^(?:CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|ERR_TLS_)/ },
    example: { errorCode: 'ESOCKET', cause: 'CERT_HAS_EXPIRED', timeoutType: null, syscall: null, phase: 'connecting' },
  },
  // Handshake failures: TLS spoken to a plaintext port gives ERR_SSL_WRONG_VERSION_NUMBER.
  {
    name: 'tls-handshake',
    class: 'tls',
    match: { cause: /^ERR_SSL_/ },
    example: {
      errorCode: 'ESOCKET',
      cause: 'ERR_SSL_WRONG_VERSION_NUMBER',
      timeoutType: null,
      syscall: null,
      phase: 'connecting',
    },
  },
  {
    name: 'tls-handshake-code',
    class: 'tls',
    match: { errorCode: /^ERR_SSL_/ },
    example: { errorCode: 'ERR_SSL_WRONG_VERSION_NUMBER', cause: null, timeoutType: null, syscall: null, phase: 'connecting' },
  },
  // EPROTO from OpenSSL while the connection is being set up is a handshake failure.
  {
    name: 'tls-protocol-error',
    class: 'tls',
    match: { cause: /^EPROTO$/, phase: ['connecting'] },
    example: { errorCode: 'ESOCKET', cause: 'EPROTO', timeoutType: null, syscall: 'write', phase: 'connecting' },
  },
  // TCP could not be set up: refused, no route, or a bad local address.
  {
    name: 'connect-refused',
    class: 'connect',
    match: { cause: /^(?:ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|EADDRNOTAVAIL)$/ },
    example: { errorCode: 'ESOCKET', cause: 'ECONNREFUSED', timeoutType: null, syscall: 'connect', phase: 'connecting' },
  },
  // The OS gave up on the SYN (not nodemailer's own timer).
  {
    name: 'connect-os-timeout',
    class: 'connect',
    match: { cause: /^ETIMEDOUT$/, syscall: /^connect$/ },
    example: { errorCode: 'ESOCKET', cause: 'ETIMEDOUT', timeoutType: null, syscall: 'connect', phase: 'connecting' },
  },
  {
    name: 'connect-timeout',
    class: 'connect',
    match: { errorCode: /^ETIMEDOUT$/, timeoutType: /^CONNECT_TIMEOUT$/ },
    example: { errorCode: 'ETIMEDOUT', cause: null, timeoutType: 'CONNECT_TIMEOUT', syscall: null, phase: 'connecting' },
  },
  // A configured proxy could not be reached, so neither could the upstream.
  {
    name: 'proxy-failed',
    class: 'connect',
    match: { errorCode: /^EPROXY$/ },
    example: { errorCode: 'EPROXY', cause: null, timeoutType: null, syscall: null, phase: 'connecting' },
  },
  // Our own overall relay deadline (upstream/deadline.ts) fired before the final dot.
  {
    name: 'relay-deadline',
    class: 'timeout',
    match: { errorCode: exactly(ERR.DEADLINE) },
    example: { errorCode: ERR.DEADLINE, cause: null, timeoutType: null, syscall: null, phase: 'envelope' },
  },
  // Every connection of the pool stayed busy for pool.maxWait (a hung or saturated upstream) while
  // the route had another upstream to try: nothing was sent, so moving on is safe.
  {
    name: 'pool-busy',
    class: 'timeout',
    match: { errorCode: exactly(ERR.POOL_WAIT) },
    example: { errorCode: ERR.POOL_WAIT, cause: null, timeoutType: null, syscall: null, phase: 'connecting' },
  },
  // nodemailer's greeting, upgrade and idle-socket timers (the after-dot case is unknown_outcome).
  {
    name: 'upstream-timeout',
    class: 'timeout',
    match: { errorCode: /^ETIMEDOUT$/ },
    example: { errorCode: 'ETIMEDOUT', cause: null, timeoutType: 'GREETING_TIMEOUT', syscall: null, phase: 'connecting' },
  },
  // Closed before the greeting, mid-session, or the pool gave up re-queueing.
  {
    name: 'connection-closed',
    class: 'connection_lost',
    match: { errorCode: /^ECONNECTION$/ },
    example: { errorCode: 'ECONNECTION', cause: null, timeoutType: null, syscall: null, phase: 'envelope' },
  },
  {
    name: 'connection-reset',
    class: 'connection_lost',
    match: { cause: /^(?:ECONNRESET|EPIPE|ECONNABORTED|ETIMEDOUT|EPROTO)$/ },
    example: { errorCode: 'ESOCKET', cause: 'ECONNRESET', timeoutType: null, syscall: 'read', phase: 'body' },
  },
  // Any other socket error event.
  {
    name: 'socket-error',
    class: 'connection_lost',
    match: { errorCode: /^ESOCKET$/ },
    example: { errorCode: 'ESOCKET', cause: null, timeoutType: null, syscall: null, phase: 'envelope' },
  },
  // AUTH failed without a reply (missing credentials, broken SASL exchange), no credentials for a
  // forced AUTH, or the OAuth2 token could not be fetched.
  {
    name: 'auth-failed',
    class: 'upstream_auth',
    match: { errorCode: /^(?:EAUTH|ENOAUTH|EOAUTH2)$/ },
    example: { errorCode: 'EOAUTH2', cause: null, timeoutType: null, syscall: null, phase: 'connecting' },
  },
  // Unsolicited or oversized replies, broken HELO fallback.
  {
    name: 'protocol-error',
    class: 'protocol',
    match: { errorCode: /^EPROTOCOL$/ },
    example: { errorCode: 'EPROTOCOL', cause: null, timeoutType: null, syscall: null, phase: 'envelope' },
  },
  // EMESSAGE without a reply comes from nodemailer's own SIZE check against the upstream's advertised
  // limit ("Message size larger than allowed"); its only other source, "Empty message", cannot happen
  // with a buffered body.
  {
    name: 'size-precheck',
    class: 'too_large',
    match: { errorCode: /^EMESSAGE$/ },
    example: { errorCode: 'EMESSAGE', cause: null, timeoutType: null, syscall: null, phase: 'envelope' },
  },
  // mailtrail's own failures: shutting down, a bug, the spilled body unreadable.
  {
    name: 'local-fault',
    class: 'internal',
    match: { errorCode: /^(?:ESHUTDOWN|EINTERNAL|ESTREAM)$/ },
    example: { errorCode: 'ESTREAM', cause: 'ENOENT', timeoutType: null, syscall: 'open', phase: 'body' },
  },
  // nodemailer refusing our own configuration or input: the transport config, a permission denial,
  // recipients over its cap, an address its parser rejects although smtp-server accepted it, or a
  // send cancelled by a signal we did not label.
  {
    name: 'local-refusal',
    class: 'internal',
    match: { errorCode: /^(?:ECONFIG|ERR_ACCESS_DENIED|EMAXRECIPIENTS|EMAXLIMIT|EENVELOPE|EABORT)$/ },
    example: { errorCode: 'EENVELOPE', cause: null, timeoutType: null, syscall: null, phase: 'envelope' },
  },
];
