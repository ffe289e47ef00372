import { domainToASCII } from 'node:url';
import { foldLines, parseHeaderValue } from 'nodemailer/lib/mime-funcs';
import MimeNode from 'nodemailer/lib/mime-node';
import { decodeEncodedWords, headerFields } from '../buffer/header-sniffer.js';
import type { UpstreamFailureClass } from '../classify/failure-class.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';

/**
 * The delivery status notification (RFC 3464) for one spooled message that ended without delivery
 * to some or all of its recipients: a permanent refusal, or expiry at spool.maxAge. A pure builder:
 * the queue manager hands it the facts and queues the bytes it returns (docs/spool.md, "Bounces (DSN)").
 *
 * The MIME tree is nodemailer's MimeNode, the building block its MailComposer uses: MailComposer
 * itself only assembles multipart/mixed, alternative and related trees (or takes a whole message as
 * `raw`), while a report is multipart/report (RFC 6522) with three parts in a fixed order. MimeNode
 * does what is easy to get wrong by hand: RFC 2047 encoded words and folding in the header, the
 * punycode or UTF-8 form of the To address, quoted-printable for non-ASCII or long-lined text,
 * CRLF line ends. The message/delivery-status body is written here, field by field after RFC 3464's
 * grammar, and folded with nodemailer's folding.
 */

/** What became of one recipient of the original message. */
export type DsnRecipientStatus =
  /** Delivered (on an earlier attempt or this one): named in the text, not in the report (no NOTIFY=SUCCESS was asked, RFC 3461 §4.1). */
  | 'delivered'
  /** Refused for good by the upstream (or failed permanently): Action failed. */
  | 'failed'
  /** Still undelivered when the message reached spool.maxAge: Action failed. */
  | 'expired'
  /** Still queued and retried until `expiresAt`: Action delayed, with Will-Retry-Until (RFC 3464 §2.3.3). */
  | 'delayed';

export interface DsnRecipient {
  /** The RCPT TO address as the client gave it, without angle brackets. */
  readonly address: string;
  readonly status: DsnRecipientStatus;
  /** `failed`: the refusal; `expired` and `delayed`: the last transient reply. Null when there was none. */
  readonly reply: SmtpReply | null;
  /** DNS name of the upstream host that gave `reply` (Remote-MTA); null when unknown. */
  readonly remoteMta: string | null;
  /** When delivery to this recipient was last tried; null when never. */
  readonly lastAttemptAt: Date | null;
  /** The failure class of `reply` (docs/failures.md), to tell the sender what to do; null when unknown. */
  readonly class: UpstreamFailureClass | null;
}

export interface DsnInput {
  /** The report's own id (a fresh ULID): its Message-ID is `<id@reportingHost>`. */
  readonly id: string;
  /** The mailtrail id of the original message (its spool id): in the text and as X-Mailtrail-Id. */
  readonly spoolId: string;
  /** mailtrail's host name (config `hostname`): Reporting-MTA and MAILER-DAEMON@ it. */
  readonly reportingHost: string;
  /** The original MAIL FROM, without angle brackets; '' for the null sender. */
  readonly from: string;
  /** Every recipient of the original envelope and what became of it. */
  readonly recipients: readonly DsnRecipient[];
  /** The original message's header block, bytes as received (the body is never needed nor included). */
  readonly originalHeaders: Buffer;
  /** When mailtrail accepted the original message (Arrival-Date). */
  readonly arrivedAt: Date;
  /** When the message expires (arrival + spool.maxAge): Will-Retry-Until of `delayed` recipients, and the age named on expiry. */
  readonly expiresAt: Date;
  /** When the report is made (its Date). */
  readonly reportedAt: Date;
  /** The ENVID the client gave at MAIL FROM (RFC 3461 §4.4), if any: Original-Envelope-Id. */
  readonly envelopeId?: string | null;
}

export interface Dsn {
  /** The report's envelope: the null sender (RFC 5321 §4.5.5), to the original MAIL FROM. */
  readonly envelope: { readonly from: ''; readonly to: string };
  /** `<id@reportingHost>`. */
  readonly messageId: string;
  readonly subject: string;
  /** The complete message, CRLF line ends, ready for DATA. */
  readonly raw: Buffer;
  /** The recipient's address has a non-ASCII local part: the report must be sent with SMTPUTF8 (RFC 6531). */
  readonly smtpUtf8: boolean;
}

/** Why no report is made. */
export type DsnRefusal =
  /** The original MAIL FROM was `<>`: never a bounce to a bounce (RFC 5321 §6.2, RFC 3464 §2). */
  | 'null-sender'
  /** The original is itself a report (multipart/report: a DSN or an MDN, RFC 6522). */
  | 'original-is-report'
  /** The original is an automatic reply (Auto-Submitted: auto-replied or auto-notified, RFC 3834 §5). */
  | 'original-is-auto-reply'
  /** No recipient failed, expired or is delayed: nothing to report. */
  | 'nothing-to-report';

export type DsnResult =
  { readonly dsn: Dsn; readonly refused: null; readonly reason: null } | { readonly dsn: null; readonly refused: DsnRefusal; readonly reason: string };

/** The original's header block in the report is cut (at a field boundary) beyond this: it is evidence, not an archive. */
export const MAX_RETURNED_HEADER_BYTES = 64 * 1024;
/** The original subject quoted in the report's Subject is cut beyond this many characters. */
const MAX_QUOTED_SUBJECT = 120;
/** RFC 5322 §2.1.1: lines SHOULD stay within 78 characters; the delivery-status fields are folded there. */
const FOLD_AT = 78;
/** No single word of a delivery-status field may be longer (RFC 5322 §2.1.1: 998 a line, with the field name). */
const MAX_WORD = 900;

/**
 * Builds the report, or says why none is made. Never throws on odd input: addresses, reply texts
 * and header bytes from outside are cleaned (control characters, non-ASCII in the 7-bit report,
 * overlong words) rather than trusted.
 */
export async function buildDsn(input: DsnInput): Promise<DsnResult> {
  const refusal = refusalOf(input);
  if (refusal !== null) return { dsn: null, refused: refusal.refused, reason: refusal.reason };

  const host = asciiDomain(input.reportingHost);
  const original = originalFacts(input.originalHeaders);
  const subject = subjectOf(input, original.subject);
  const messageId = `<${input.id}@${host}>`;
  const to = envelopeAddress(input.from);
  const text = humanText(input, host, original);
  const report = deliveryStatus(input, host);
  const headers = returnedHeaders(input.originalHeaders);

  // The boundary carries the report's id: 80 random bits nobody knew when the original was written.
  // Quoted-printable and base64 parts cannot contain "=_"; the 7-bit parts are checked.
  const sevenBit = [text, report, typeof headers === 'string' ? headers : ''];
  let base = input.id;
  for (let n = 2; sevenBit.some((part) => part.includes(`=_mailtrail-${base}`)); n++) base = `${input.id}-${n}`;

  const root = new MimeNode('multipart/report; report-type=delivery-status', { baseBoundary: base, boundaryPrefix: '=_mailtrail', hostname: host });
  root.setHeader('From', { name: 'Mail Delivery System', address: `MAILER-DAEMON@${host}` });
  root.setHeader('To', to.header);
  root.setHeader('Subject', subject);
  root.setHeader('Date', rfc5322Date(input.reportedAt));
  root.setHeader('Message-ID', messageId);
  // RFC 3834 §5: marks the report as automatic, so responders (vacation replies) stay silent.
  root.setHeader('Auto-Submitted', 'auto-replied');
  root.createChild('text/plain').setContent(text);
  root.createChild('message/delivery-status').setContent(report);
  if (typeof headers === 'string' && isSevenBit(headers)) {
    // 7-bit as it came (RFC 2045 §2.7 allows lines up to 998): MimeNode would make quoted-printable
    // of any line over 76, and a header block is easier to read as it is.
    root.createChild('text/rfc822-headers').setRaw(`Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: 7bit\r\n\r\n${headers}`);
  } else {
    root.createChild(typeof headers === 'string' || !isUtf8(headers) ? 'text/rfc822-headers' : 'text/rfc822-headers; charset=utf-8').setContent(headers);
  }
  const raw = await root.build();
  return { dsn: { envelope: { from: '', to: to.envelope }, messageId, subject, raw, smtpUtf8: to.smtpUtf8 }, refused: null, reason: null };
}

/** Why no report may be made for this message; null when one may. */
export function refusalOf(input: Pick<DsnInput, 'from' | 'originalHeaders' | 'recipients'>): { refused: DsnRefusal; reason: string } | null {
  if (input.from.trim() === '') return { refused: 'null-sender', reason: 'the original MAIL FROM is <>: never a bounce to a bounce' };
  const fields = headerFields(input.originalHeaders, ['content-type', 'auto-submitted']);
  const type = parseHeaderValue(fields.get('content-type') ?? '', { stripComments: true })
    .value.trim()
    .toLowerCase();
  if (type === 'multipart/report' || /^message\/(global-)?(delivery-status|disposition-notification)$/.test(type)) {
    return { refused: 'original-is-report', reason: `the original is itself a report (${type})` };
  }
  // RFC 3834 is about automatic responses and leaves DSNs to RFC 3464 (§1): auto-generated mail,
  // which is most of what applications send, still gets its bounce. Auto-replies do not: a vacation
  // reply nobody can receive is not worth a report, and replying to one is how loops start.
  const auto = parseHeaderValue(fields.get('auto-submitted') ?? '', { stripComments: true })
    .value.trim()
    .toLowerCase();
  if (auto === 'auto-replied' || auto === 'auto-notified') {
    return { refused: 'original-is-auto-reply', reason: `the original is an automatic reply (Auto-Submitted: ${auto})` };
  }
  if (!input.recipients.some((r) => r.status !== 'delivered')) return { refused: 'nothing-to-report', reason: 'every recipient was delivered' };
  return null;
}

interface OriginalFacts {
  readonly subject: string | null;
  readonly messageId: string | null;
}

function originalFacts(head: Buffer): OriginalFacts {
  const fields = headerFields(head, ['subject', 'message-id']);
  const subject = oneLine(decodeEncodedWords((fields.get('subject') ?? '').trim()));
  const messageId = oneLine((fields.get('message-id') ?? '').trim());
  return { subject: subject === '' ? null : subject, messageId: messageId === '' ? null : messageId };
}

/** What happened, in the Subject: "Delivery failed", "... for 1 of 3 recipients", "... (expired after 5 days)", "Delivery delayed". */
function subjectOf(input: DsnInput, originalSubject: string | null): string {
  const failed = input.recipients.filter((r) => r.status === 'failed' || r.status === 'expired');
  const onlyExpired = failed.length > 0 && failed.every((r) => r.status === 'expired');
  let what: string;
  if (failed.length === 0) what = 'Delivery delayed';
  else if (failed.length < input.recipients.length) what = `Delivery failed for ${failed.length} of ${input.recipients.length} recipients`;
  else if (onlyExpired) what = `Delivery failed (expired after ${ageText(input)})`;
  else what = 'Delivery failed';
  if (originalSubject === null) return what;
  const quoted = [...originalSubject].length > MAX_QUOTED_SUBJECT ? `${[...originalSubject].slice(0, MAX_QUOTED_SUBJECT).join('')}…` : originalSubject;
  return `${what}: ${quoted}`;
}

/** "5 days", "12 hours", "30 minutes": the message's maximum age. */
function ageText(input: DsnInput): string {
  const minutes = Math.round((input.expiresAt.getTime() - input.arrivedAt.getTime()) / 60_000);
  const unit = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
  if (minutes % 1440 === 0 && minutes > 0) return unit(minutes / 1440, 'day');
  if (minutes % 60 === 0 && minutes > 0) return unit(minutes / 60, 'hour');
  return unit(minutes, 'minute');
}

/** The human-readable first part (RFC 6522 §3): what failed, why, what the sender can do, and the id to quote. */
function humanText(input: DsnInput, host: string, original: OriginalFacts): string {
  const group = (status: DsnRecipientStatus): readonly DsnRecipient[] => input.recipients.filter((r) => r.status === status);
  const failed = group('failed');
  const expired = group('expired');
  const delayed = group('delayed');
  const delivered = group('delivered');
  const lines: string[] = [`This is the mail system at ${host}.`, ''];
  if (failed.length + expired.length === 0) {
    lines.push(...wrap(`Your message has not been delivered yet to some of its recipients. It will be tried again until ${rfc5322Date(input.expiresAt)}.`));
  } else if (failed.length + expired.length === input.recipients.length) {
    lines.push(...wrap('Your message could not be delivered. This is a permanent failure: it will not be tried again.'));
  } else {
    lines.push(...wrap('Your message could not be delivered to some of its recipients. For them this is a permanent failure: it will not be tried again.'));
  }
  lines.push('', `  Subject:      ${original.subject ?? '(none)'}`);
  if (original.messageId !== null) lines.push(`  Message-ID:   ${original.messageId}`);
  lines.push(`  Accepted:     ${rfc5322Date(input.arrivedAt)}`, `  mailtrail id: ${input.spoolId}`, '');
  lines.push(
    ...wrap(
      `If you ask the administrator of ${host} about this message, give them the mailtrail id: it finds the message and every delivery attempt in their audit trail.`,
    ),
  );
  if (failed.length > 0) {
    lines.push('', 'Refused by the receiving side:');
    for (const r of failed) lines.push(...recipientText(r, adviceFor(r.class, host)));
  }
  if (expired.length > 0) {
    lines.push('', `Not delivered within ${ageText(input)}, so no longer tried:`);
    const advice =
      'The receiving side kept answering with a temporary failure, or could not be reached. You may send the message again later; if it keeps happening, tell the recipient by other means.';
    for (const r of expired) lines.push(...recipientText(r, advice));
  }
  if (delayed.length > 0) {
    lines.push('', ...wrap(`Not delivered yet, tried again until ${rfc5322Date(input.expiresAt)} (nothing to do for now):`));
    for (const r of delayed) lines.push(...recipientText(r, null));
  }
  if (delivered.length > 0) {
    lines.push('', 'Delivered:', '');
    for (const r of delivered) lines.push(`  <${oneLine(r.address)}>`);
  }
  lines.push('', 'The technical report and the header of your message are attached.', '');
  return lines.join('\r\n');
}

function recipientText(r: DsnRecipient, advice: string | null): string[] {
  const lines = ['', `  <${oneLine(r.address)}>`];
  const indent = '    ';
  if (r.reply !== null)
    lines.push(...wrap(`${r.remoteMta === null ? 'The receiving server' : oneLine(r.remoteMta)} answered: ${oneLine(replyText(r.reply))}`, indent));
  else if (r.status !== 'failed') lines.push(`${indent}${r.lastAttemptAt === null ? 'Not tried yet.' : 'No server answered.'}`);
  if (advice !== null) lines.push(...wrap(advice, indent));
  return lines;
}

/** Text width of the human-readable part: short enough that plain ASCII text goes out as 7-bit, unencoded, and quoted-printable text breaks rarely. */
const TEXT_WIDTH = 72;

/** A paragraph as lines of at most TEXT_WIDTH characters, broken at spaces (a longer word stays whole). */
function wrap(paragraph: string, indent = ''): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of paragraph.split(' ').filter((w) => w !== '')) {
    if (line !== '' && indent.length + line.length + 1 + word.length > TEXT_WIDTH) {
      lines.push(indent + line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(indent + line);
  return lines;
}

/** What the sender can do, by failure class (docs/failures.md). */
function adviceFor(cls: UpstreamFailureClass | null, host: string): string {
  switch (cls) {
    case 'recipient_rejected':
      return 'The address was refused: check it for typos, or ask the recipient for an address that works.';
    case 'sender_rejected':
      return `Your sender address was refused: ask the administrator of ${host} whether it may send through this provider.`;
    case 'content_rejected':
      return 'The content of the message was refused (often a spam or policy filter): change the content, or ask the recipient to allow it.';
    case 'too_large':
      return 'The message is too large for the receiving side: send it smaller, for example with a link instead of an attachment.';
    case 'too_many_recipients':
      return 'The message had too many recipients for the receiving side: send it to fewer at a time.';
    case 'unsupported':
      return 'The message needs something the receiving side does not support (an international address, say).';
    default:
      return `If you think this is wrong, ask the administrator of ${host}, with the mailtrail id above.`;
  }
}

/** `550 5.1.1 text of the reply`: one line, multi-line replies joined with spaces. */
function replyText(reply: SmtpReply): string {
  return [String(reply.code), reply.enhanced ?? '', reply.text.split('\n').join(' ')].filter((s) => s !== '').join(' ');
}

/**
 * The message/delivery-status body (RFC 3464 §2.1): the per-message fields, then one block per
 * recipient that did not get the message, each block after a blank line. 7-bit only: non-ASCII
 * addresses use RFC 6533's utf-8 address type in its xtext form, other non-ASCII text becomes "?".
 */
function deliveryStatus(input: DsnInput, host: string): string {
  const perMessage: string[] = [];
  // RFC 3464 §2.2: the order of the per-message fields.
  const envid = input.envelopeId ? ascii(input.envelopeId) : '';
  if (envid !== '') perMessage.push(field('Original-Envelope-Id', envid));
  perMessage.push(field('Reporting-MTA', `dns; ${host}`));
  perMessage.push(field('Arrival-Date', rfc5322Date(input.arrivedAt)));
  // An extension field (RFC 3464 §3.4): after the standard ones.
  perMessage.push(field('X-Mailtrail-Id', ascii(input.spoolId)));
  const blocks = [perMessage];
  for (const r of input.recipients) {
    if (r.status === 'delivered') continue;
    // RFC 3464 §2.3: the order of the per-recipient fields.
    const block = [field('Final-Recipient', typedAddress(r.address)), field('Action', r.status === 'delayed' ? 'delayed' : 'failed')];
    block.push(field('Status', statusCode(r)));
    if (r.remoteMta !== null && r.reply !== null) block.push(field('Remote-MTA', `dns; ${asciiDomain(r.remoteMta)}`));
    if (r.reply !== null) block.push(field('Diagnostic-Code', `smtp; ${ascii(replyText(r.reply))}`));
    if (r.lastAttemptAt !== null) block.push(field('Last-Attempt-Date', rfc5322Date(r.lastAttemptAt)));
    if (r.status === 'delayed') block.push(field('Will-Retry-Until', rfc5322Date(input.expiresAt)));
    blocks.push(block);
  }
  return blocks.map((b) => b.join('\r\n') + '\r\n').join('\r\n');
}

/**
 * RFC 3464 §2.3.4 with RFC 3463: the reply's enhanced code when it agrees with the verdict, else
 * the class alone (5.0.0 for a refusal without one, 4.0.0 for a delay). An expired or delayed
 * recipient keeps the last transient code: RFC 3463 §3.5 asks for the code of the actual problem
 * rather than 4.4.7 (delivery time expired), which an expiry gets when there was no such reply.
 */
function statusCode(r: DsnRecipient): string {
  const wanted = r.status === 'failed' ? '5' : '4';
  const enhanced = r.reply?.enhanced ?? null;
  if (enhanced !== null && enhanced.startsWith(wanted) && String(r.reply?.code).startsWith(wanted)) return enhanced;
  if (r.status === 'failed') return '5.0.0';
  return r.status === 'expired' ? '4.4.7' : '4.0.0';
}

/** One field, folded at whitespace within 78 characters where the words allow. */
function field(name: string, value: string): string {
  return foldLines(`${name}: ${value}`, FOLD_AT);
}

/**
 * An address with its RFC 3464 address type: `rfc822; addr` when it is ASCII, otherwise RFC 6533
 * §3's `utf-8;` type in the 7-bit utf-8-addr-xtext form (non-ASCII characters, "\", "+", "=" and
 * controls as `\x{HEX}`), the domain as its A-label so the field stays short.
 */
function typedAddress(address: string): string {
  const clean = address.replace(CONTROLS, '').trim();
  if (!NON_ASCII.test(clean)) return `rfc822; ${clean.slice(0, MAX_WORD)}`;
  const at = clean.lastIndexOf('@');
  const local = at < 0 ? clean : clean.slice(0, at);
  const domain = at < 0 ? '' : `@${asciiDomain(clean.slice(at + 1))}`;
  let xtext = '';
  for (const c of local + domain) {
    const code = c.codePointAt(0) ?? 0;
    // RFC 6533 §3: QCHAR is printable ASCII but for "\\", "+" and "="; SP and the rest are EmbeddedUnicodeChar.
    const quoted = code > 0x20 && code < 0x7f && c !== '\\' && c !== '+' && c !== '=';
    const piece = quoted ? c : `\\x{${code.toString(16).toUpperCase().padStart(2, '0')}}`;
    if (xtext.length + piece.length > MAX_WORD) break;
    xtext += piece;
  }
  return `utf-8; ${xtext}`;
}

/**
 * The To header and envelope address of the report. An ASCII local part with an international
 * domain goes out with the domain's A-label (no SMTPUTF8 needed); a non-ASCII local part cannot be
 * written in ASCII at all, so the report needs SMTPUTF8 and carries the address as UTF-8 (RFC 6532 §3.2).
 */
function envelopeAddress(from: string): { header: string; envelope: string; smtpUtf8: boolean } {
  const clean = oneLine(from).trim();
  const at = clean.lastIndexOf('@');
  const local = at < 0 ? clean : clean.slice(0, at);
  if (NON_ASCII.test(local)) return { header: clean, envelope: clean, smtpUtf8: true };
  const ascii = at < 0 ? clean : `${local}@${asciiDomain(clean.slice(at + 1))}`;
  return { header: ascii, envelope: ascii, smtpUtf8: false };
}

/** The A-label form of a domain; the input unchanged when it is not a valid domain. */
function asciiDomain(domain: string): string {
  const clean = oneLine(domain).trim();
  if (/^[\x21-\x7e]*$/.test(clean)) return clean;
  const converted = domainToASCII(clean);
  return converted === '' ? ascii(clean) : converted;
}

/**
 * The original header block for the text/rfc822-headers part (RFC 6522 §4): CRLF line ends, the
 * blank line that ends it removed, cut at a field boundary beyond MAX_RETURNED_HEADER_BYTES. ASCII
 * comes back as a string (sent 7-bit when its lines allow, quoted-printable when not); raw 8-bit
 * bytes (RFC 6532 headers) as a Buffer, which MimeNode sends quoted-printable or base64.
 */
function returnedHeaders(head: Buffer): string | Buffer {
  let text = head.toString('latin1').replace(/\r?\n/g, '\r\n');
  const end = text.indexOf('\r\n\r\n');
  text = end < 0 ? text.replace(/(\r\n)*$/, '') : text.slice(0, end);
  if (text.length > MAX_RETURNED_HEADER_BYTES) {
    // Cut before a line that starts a field (not a folded continuation), so every field kept is whole.
    let cut = text.lastIndexOf('\r\n', MAX_RETURNED_HEADER_BYTES);
    while (cut > 0 && (text[cut + 2] === ' ' || text[cut + 2] === '\t')) cut = text.lastIndexOf('\r\n', cut - 1);
    text = text.slice(0, Math.max(cut, 0));
  }
  text += '\r\n';
  return NON_ASCII.test(text) ? Buffer.from(text, 'latin1') : text;
}

/** RFC 2045 §2.7 7-bit data: ASCII, no NUL, CR and LF only as CRLF, lines of at most 998 characters. */
function isSevenBit(text: string): boolean {
  return !NON_ASCII.test(text) && !text.includes('\0') && text.split('\r\n').every((line) => line.length <= 998 && !/[\r\n]/.test(line));
}

function isUtf8(bytes: Buffer | string): boolean {
  if (typeof bytes === 'string') return true;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** RFC 5322 §3.3 date-time in UTC: "Sun, 06 Dec 2026 04:02:14 +0000". */
function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}

// eslint-disable-next-line no-control-regex -- control characters are what it finds
const CONTROLS = /[\x00-\x1f\x7f]/g;
const NON_ASCII = /[\u0080-\uffff]/;

/** Control characters (CR and LF first) as spaces: nothing from outside starts a line or a field of its own. */
function oneLine(text: string): string {
  return text.replace(CONTROLS, ' ');
}

/** For the 7-bit report: one line, printable ASCII, non-ASCII as "?", no word longer than fits a line. */
function ascii(text: string): string {
  return oneLine(text)
    .replace(/[^\x20-\x7e]/gu, '?')
    .replace(new RegExp(`\\S{${MAX_WORD}}(?=\\S)`, 'g'), '$& ');
}
