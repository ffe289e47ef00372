/**
 * Reading SMTP reply text. nodemailer hands us replies as raw strings (`err.response`,
 * `info.response`, one "NNN-"/"NNN " line per reply line, joined with "\n") and never parses the
 * enhanced status code, so the classifier and the audit record get their `{code, enhanced, text}`
 * from here. Pure functions, no state.
 */
import type { SmtpReply } from './smtp-reply.js';

/**
 * RFC 5321 §4.2: a reply line is a three-digit code, then a space on the last line or a hyphen on
 * every line before it. The first digit is 2 to 5 (§4.2.1).
 */
const REPLY_LINE = /^([2-5]\d\d)(?:[ -]|$)/;

/**
 * RFC 3463 §2: `class.subject.detail`, class 2, 4 or 5, subject and detail one to three digits. It
 * must stand alone as a word, so an IP address or version number at the start of a text is not
 * mistaken for one.
 */
const ENHANCED_CODE = /^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)/;

/**
 * Parses a reply whose code is already known (nodemailer's `responseCode`). Strips the code prefix
 * from each line, takes the enhanced code from the start of the first line, and strips that same
 * enhanced code from the other lines too: servers that use enhanced codes repeat them on every line
 * (Gmail: "550-5.7.26 …\n550 5.7.26 …"), and RFC 3463 §2 makes the first one authoritative.
 *
 * A line prefix is only stripped when it equals `code`: RFC 5321 §4.2.1 puts the same code on every
 * line, so any other three digits belong to the text.
 *
 * @example parseReply(550, '550 5.1.1 <x@example.org>: Recipient address rejected')
 *   // → { code: 550, enhanced: '5.1.1', text: '<x@example.org>: Recipient address rejected' }
 */
export function parseReply(code: number, rawText: string): SmtpReply {
  const lines = splitLines(rawText).map((line) => stripCodePrefix(line, code));
  const enhanced = leadingEnhancedCode(lines[0] ?? '');
  const text = lines.map((line) => stripEnhancedPrefix(line, enhanced)).join('\n');
  return { code, enhanced, text };
}

/**
 * Parses a raw reply string as nodemailer reports it (`err.response`, `info.response`), such as
 * "550 5.1.1 <x@y>: Recipient address rejected" or a multi-line "250-…\n250 …". Returns null when
 * the string does not start with a reply code (nodemailer sets `response` to other things for some
 * local errors).
 */
export function parseResponseLine(response: string): SmtpReply | null {
  const raw = response.trimStart();
  const match = REPLY_LINE.exec(raw);
  if (match?.[1] === undefined) return null;
  return parseReply(Number(match[1]), raw);
}

/**
 * Queue-id patterns for the final 250 reply, each tested against the reply text without its code and
 * enhanced code. First match wins; the first capture group is the id.
 */
const QUEUE_ID_PATTERNS: readonly RegExp[] = [
  // Exchange Online's submission and transport replies echo the client's own Message-ID in angle
  // brackets; Exchange's own handle for the message is InternalId:
  // "250 2.6.0 <id@host> [InternalId=130184753713403, Hostname=DBXPR04MB317.eurprd04.prod.outlook.com]
  //  8273 bytes in 0.296, 27.285 KB/sec Queued mail for delivery"
  /\[InternalId=(\d+)\b/,
  // Microsoft 365 / Outlook.com put the Message-ID they assigned in angle brackets:
  // "250 2.0.0 OK <DM6PR11MB4107A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6@DM6PR11MB4107.namprd11.prod.outlook.com>
  //  [Hostname=DM6PR11MB4107.namprd11.prod.outlook.com]"
  /^OK <([^<>\s]+)>/i,
  // Gmail: a Unix timestamp, then Google's own id, then "- gsmtp":
  // "250 2.0.0 OK  1732530000 a1b2c3-xyz.123 - gsmtp"
  /^OK\s+\d{9,11}\s+(\S+)\s+-\s+gsmtp\b/i,
  // Exim acknowledges with its message id: "250 OK id=1TkhHl-0006EV-R3" (subethasmtp#55)
  /^OK id=([A-Za-z0-9][\w-]*)/i,
  // Haraka names its transaction: "250 Message Queued (51DE505A-C5B4-4ED3-9FA0-45ED43F49E96.1)"
  // (Haraka#408; connection.js appends the transaction uuid). Older Haraka says "250 Message Queued"
  // alone, which names nothing.
  /^Message Queued \(([0-9A-F]{8}(?:-[0-9A-F]{4}){3}-[0-9A-F]{12}(?:\.\d+)*)\)/i,
  // Postfix "250 2.0.0 Ok: queued as 4XyZ12", SendGrid "250 Ok: queued as KKSBgGoYTYeaKDsNU8TEHA", and
  // the same wording with the id in angle brackets ("250 Ok: queued as <id>") from other services.
  /\bqueued as <?([^\s<>]+)>?/i,
  // Amazon SES: "250 Ok 0102019a3e4b5c6d-7e8f9a0b-1c2d-3e4f-5a6b-7c8d9e0f1a2b-000000", the local part of
  // the Message-ID SES gives the message.
  /^Ok ([0-9a-f]+(?:-[0-9a-f]+)+)\s*$/i,
];

/**
 * The upstream's queue or message id from a 250 reply, so the audit record can be joined with the
 * provider's own logs. Accepts the reply text, or the whole response line (code and enhanced code are
 * skipped). Returns null when the reply names no id in a format we know.
 */
export function extractQueueId(text: string): string | null {
  const body = stripReplyHead(text);
  for (const pattern of QUEUE_ID_PATTERNS) {
    const id = pattern.exec(body)?.[1];
    if (id !== undefined) return id;
  }
  return null;
}

function splitLines(rawText: string): string[] {
  const lines = rawText.split(/\r?\n/).map((line) => line.trimEnd());
  while (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function stripCodePrefix(line: string, code: number): string {
  const match = REPLY_LINE.exec(line);
  if (match?.[1] === undefined || Number(match[1]) !== code) return line;
  return line.slice(match[0].length);
}

function leadingEnhancedCode(line: string): string | null {
  return ENHANCED_CODE.exec(line)?.[1] ?? null;
}

function stripEnhancedPrefix(line: string, enhanced: string | null): string {
  if (enhanced === null) return line;
  const match = ENHANCED_CODE.exec(line);
  return match?.[1] === enhanced ? line.slice(match[0].length) : line;
}

/** Drops a leading "250 " / "250-" and enhanced code, so callers may pass `info.response` as is. */
function stripReplyHead(text: string): string {
  const withoutCode = text.trimStart().replace(REPLY_LINE, '');
  return withoutCode.replace(ENHANCED_CODE, '').trim();
}
