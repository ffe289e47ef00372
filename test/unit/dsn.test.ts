import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { IdGenerator } from '../../src/ids.js';
import { buildDsn, MAX_RETURNED_HEADER_BYTES, type Dsn, type DsnInput, type DsnRecipient } from '../../src/spool/dsn.js';

const ids = new IdGenerator();
const ARRIVED = new Date('2026-03-01T10:00:00Z');
const EXPIRES = new Date('2026-03-06T10:00:00Z');

const head = (...lines: string[]): Buffer => Buffer.from(lines.join('\r\n') + '\r\n\r\n');

const ORIGINAL = head(
  'Received: from app.example.com (app [10.0.0.7]) by relay.example.org; Sun, 1 Mar 2026 10:00:00 +0000',
  'From: Billing <billing@example.com>',
  'To: bob@example.net, ann@example.net',
  'Subject: Your invoice 42',
  'Message-ID: <inv-42@example.com>',
  'Date: Sun, 1 Mar 2026 10:00:00 +0000',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
);

function recipient(address: string, over: Partial<DsnRecipient> = {}): DsnRecipient {
  return { address, status: 'delivered', reply: null, remoteMta: null, lastAttemptAt: null, class: null, ...over };
}

const userUnknown = (address: string): DsnRecipient =>
  recipient(address, {
    status: 'failed',
    reply: { code: 550, enhanced: '5.1.1', text: `<${address}>: Recipient address rejected: User unknown in virtual mailbox table` },
    remoteMta: 'email-smtp.eu-west-1.amazonaws.com',
    lastAttemptAt: new Date('2026-03-01T10:00:02Z'),
    class: 'recipient_rejected',
  });

function input(over: Partial<DsnInput> = {}): DsnInput {
  return {
    id: ids.next(),
    spoolId: ids.next(),
    reportingHost: 'relay.example.org',
    from: 'bounces@example.com',
    recipients: [userUnknown('bob@example.net')],
    originalHeaders: ORIGINAL,
    arrivedAt: ARRIVED,
    expiresAt: EXPIRES,
    reportedAt: new Date('2026-03-01T10:00:03Z'),
    ...over,
  };
}

async function built(over: Partial<DsnInput> = {}): Promise<Dsn> {
  const result = await buildDsn(input(over));
  if (result.dsn === null) throw new Error(`refused: ${result.reason}`);
  return result.dsn;
}

/** The report as a mail client sees it; the delivery-status part kept as an attachment. */
function parse(dsn: Dsn): Promise<ParsedMail> {
  return simpleParser(dsn.raw, { keepDeliveryStatus: true });
}

function part(mail: ParsedMail, type: string): string {
  const found = mail.attachments.find((a) => a.contentType === type);
  if (!found) throw new Error(`no ${type} part`);
  return found.content.toString('utf8');
}

/** One delivery-status field, unfolded. */
interface Field {
  readonly name: string;
  readonly value: string;
}

/** The delivery-status body as blocks of unfolded fields: the per-message block, then one per recipient. */
function blocks(body: string): Field[][] {
  return body
    .replace(/\r\n$/, '')
    .split('\r\n\r\n')
    .map((block) =>
      block
        .replace(/\r\n(?=[ \t])/g, '')
        .split('\r\n')
        .map((line) => {
          const colon = line.indexOf(':');
          return { name: line.slice(0, colon), value: line.slice(colon + 1).trim() };
        }),
    );
}

const DATE_TIME = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$/;
const MTA = /^dns; ?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
/** RFC 6533 §3: utf-8-addr-xtext (QCHAR or \x{HEXPOINT}); rfc822 takes any printable text. */
const ADDRESS = /^(?:rfc822; ?[\x20-\x7e]+|utf-8; ?(?:[\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]|\\x\{[0-9A-F]{2,6}\})+)$/;

/** RFC 3464 §2.2 and §2.3: each field's value grammar, and the order the fields must come in. */
const PER_MESSAGE: Record<string, RegExp> = {
  'Original-Envelope-Id': /^[\x21-\x7e]+$/,
  'Reporting-MTA': MTA,
  'DSN-Gateway': MTA,
  'Received-From-MTA': MTA,
  'Arrival-Date': DATE_TIME,
};
const PER_RECIPIENT: Record<string, RegExp> = {
  'Original-Recipient': ADDRESS,
  'Final-Recipient': ADDRESS,
  Action: /^(failed|delayed|delivered|relayed|expanded)$/,
  Status: /^[245]\.\d{1,3}\.\d{1,3}$/,
  'Remote-MTA': MTA,
  'Diagnostic-Code': /^smtp; ?[\x20-\x7e]*$/,
  'Last-Attempt-Date': DATE_TIME,
  'Final-Log-ID': /^[\x20-\x7e]*$/,
  'Will-Retry-Until': DATE_TIME,
};
const EXTENSION = /^X-[A-Za-z0-9-]+$/;

/** Everything wrong with a message/delivery-status body, against RFC 3464's grammar; [] when nothing. */
function grammarProblems(body: string): string[] {
  const problems: string[] = [];
  if (/[^\x00-\x7f]/.test(body)) problems.push('non-ASCII in the report');
  if (/\r(?!\n)|(?<!\r)\n/.test(body)) problems.push('a bare CR or LF');
  for (const line of body.split('\r\n')) {
    if (line.length > 998) problems.push(`line over 998: ${line.slice(0, 40)}`);
    if (line.length > 78 && /\s/.test(line.trim())) problems.push(`line over 78 that could have been folded: ${line.slice(0, 40)}`);
  }
  const [perMessage, ...perRecipient] = blocks(body);
  const check = (block: Field[], grammar: Record<string, RegExp>, required: string[]): void => {
    const order = Object.keys(grammar);
    let last = -1;
    let extensions = false;
    for (const { name, value } of block) {
      if (EXTENSION.test(name)) {
        extensions = true;
        if (!/^[\x20-\x7e]*$/.test(value)) problems.push(`${name}: not text`);
        continue;
      }
      const at = order.indexOf(name);
      if (at < 0) problems.push(`unknown field ${name}`);
      else if (at <= last) problems.push(`${name} out of order or repeated`);
      else if (extensions) problems.push(`${name} after an extension field`);
      else if (!grammar[name]!.test(value)) problems.push(`${name}: "${value}" does not match the grammar`);
      last = Math.max(last, at);
    }
    for (const name of required) if (!block.some((f) => f.name === name)) problems.push(`${name} missing`);
  };
  check(perMessage ?? [], PER_MESSAGE, ['Reporting-MTA']);
  if (perRecipient.length === 0) problems.push('no recipient block');
  for (const block of perRecipient) {
    check(block, PER_RECIPIENT, ['Final-Recipient', 'Action', 'Status']);
    const action = block.find((f) => f.name === 'Action')?.value;
    const status = block.find((f) => f.name === 'Status')?.value ?? '';
    if (action === 'failed' && !/^[45]\./.test(status)) problems.push(`failed with status ${status}`);
    if (action === 'delayed' && !status.startsWith('4.')) problems.push(`delayed with status ${status}`);
    if (block.some((f) => f.name === 'Will-Retry-Until') && action !== 'delayed') problems.push('Will-Retry-Until without delayed');
  }
  return problems;
}

function fieldsOf(block: Field[] | undefined): Record<string, string> {
  return Object.fromEntries((block ?? []).map((f) => [f.name, f.value]));
}

/** Every line of the raw message, by CRLF; the message must not hold a bare CR or LF. */
function rawLines(dsn: Dsn): string[] {
  const text = dsn.raw.toString('utf8');
  expect(text).not.toMatch(/\r(?!\n)|(?<!\r)\n/);
  return text.split('\r\n');
}

describe('buildDsn: a permanent refusal', () => {
  it('is a multipart/report to the envelope sender, from MAILER-DAEMON, with the null sender as its envelope', async () => {
    const dsn = await built();
    const mail = await parse(dsn);
    expect(dsn.envelope).toEqual({ from: '', to: 'bounces@example.com' });
    expect(mail.from?.value).toEqual([{ name: 'Mail Delivery System', address: 'MAILER-DAEMON@relay.example.org' }]);
    expect((mail.to as AddressObject).value).toEqual([{ name: '', address: 'bounces@example.com' }]);
    const type = mail.headers.get('content-type') as { value: string; params: Record<string, string> };
    expect(type.value).toBe('multipart/report');
    expect(type.params['report-type']).toBe('delivery-status');
    expect(mail.headers.get('auto-submitted')).toBe('auto-replied');
    expect(mail.headers.get('mime-version')).toBe('1.0');
    expect(dsn.smtpUtf8).toBe(false);
  });

  it('has a fresh Message-ID made of its own id and the reporting host, and the report time as its Date', async () => {
    const id = ids.next();
    const mail = await parse(await built({ id, reportedAt: new Date('2026-03-01T10:00:03Z') }));
    expect(mail.messageId).toBe(`<${id}@relay.example.org>`);
    expect(mail.date?.toISOString()).toBe('2026-03-01T10:00:03.000Z');
  });

  it('says in its Subject that delivery failed, quoting the original subject', async () => {
    const dsn = await built();
    expect(dsn.subject).toBe('Delivery failed: Your invoice 42');
    expect((await parse(dsn)).subject).toBe('Delivery failed: Your invoice 42');
  });

  it('has its three parts in RFC 6522 order: text, delivery-status, the original headers', async () => {
    const raw = (await built()).raw.toString('utf8');
    const boundary = /boundary="([^"]+)"/.exec(raw)?.[1] ?? '';
    const parts = raw.split(`\r\n--${boundary}`).slice(1, -1);
    expect(parts.map((p) => /^\r\nContent-Type: ([a-z0-9/-]+)/.exec(p)?.[1])).toEqual(['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
    expect(raw).toMatch(new RegExp(`\r\n--${boundary}--\r\n$`));
  });

  it('tells the sender in the text what failed, why, what to do, and the mailtrail id to quote', async () => {
    const spoolId = ids.next();
    const mail = await parse(await built({ spoolId }));
    expect(mail.text).toContain('could not be delivered');
    expect(mail.text).toContain('<bob@example.net>');
    expect(mail.text?.replace(/\s+/g, ' ')).toContain(
      'email-smtp.eu-west-1.amazonaws.com answered: 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table',
    );
    expect(mail.text?.replace(/\s+/g, ' ')).toContain('check it for typos');
    expect(mail.text).toContain(`mailtrail id: ${spoolId}`);
    expect(mail.text).toContain('Message-ID:   <inv-42@example.com>');
  });

  it('reports the recipient with its upstream, the enhanced code and the reply (RFC 3464 §2.3)', async () => {
    const spoolId = ids.next();
    const [perMessage, bob, ...rest] = blocks(part(await parse(await built({ spoolId })), 'message/delivery-status'));
    expect(fieldsOf(perMessage)).toEqual({
      'Reporting-MTA': 'dns; relay.example.org',
      'X-Mailtrail-Id': spoolId,
      'Arrival-Date': 'Sun, 01 Mar 2026 10:00:00 +0000',
    });
    expect(fieldsOf(bob)).toEqual({
      'Final-Recipient': 'rfc822; bob@example.net',
      Action: 'failed',
      Status: '5.1.1',
      'Remote-MTA': 'dns; email-smtp.eu-west-1.amazonaws.com',
      'Diagnostic-Code': 'smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table',
      'Last-Attempt-Date': 'Sun, 01 Mar 2026 10:00:02 +0000',
    });
    expect(rest).toEqual([]);
  });

  it('names the Original-Envelope-Id first when the client gave an ENVID', async () => {
    const [perMessage] = blocks(part(await parse(await built({ envelopeId: 'QQ314159' })), 'message/delivery-status'));
    expect(perMessage?.[0]).toEqual({ name: 'Original-Envelope-Id', value: 'QQ314159' });
  });

  it('uses 5.0.0 when the refusal had no enhanced code, and none at all was given', async () => {
    const noEnhanced = recipient('a@example.net', {
      status: 'failed',
      reply: { code: 554, enhanced: null, text: 'Transaction failed' },
      remoteMta: 'mx.example.net',
    });
    const noReply = recipient('b@example.net', { status: 'failed' });
    const [, a, b] = blocks(part(await parse(await built({ recipients: [noEnhanced, noReply] })), 'message/delivery-status'));
    expect(fieldsOf(a)).toMatchObject({ Status: '5.0.0', 'Diagnostic-Code': 'smtp; 554 Transaction failed' });
    expect(fieldsOf(b)).toEqual({ 'Final-Recipient': 'rfc822; b@example.net', Action: 'failed', Status: '5.0.0' });
  });

  it('joins a multi-line reply into one Diagnostic-Code, folded within 78 characters', async () => {
    const gmail = recipient('x@example.net', {
      status: 'failed',
      reply: {
        code: 550,
        enhanced: '5.7.26',
        text: 'This mail has been blocked because the sender is unauthenticated.\nGmail requires all senders to authenticate with either SPF or DKIM.\nAuthentication results: DKIM = did not pass',
      },
      remoteMta: 'gmail-smtp-in.l.google.com',
      class: 'content_rejected',
    });
    const body = part(await parse(await built({ recipients: [gmail] })), 'message/delivery-status');
    expect(fieldsOf(blocks(body)[1])['Diagnostic-Code']).toBe(
      'smtp; 550 5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM. Authentication results: DKIM = did not pass',
    );
    expect(grammarProblems(body)).toEqual([]);
  });
});

describe('buildDsn: partial failure', () => {
  const recipients = [
    recipient('ann@example.net', { lastAttemptAt: new Date('2026-03-01T10:00:02Z') }),
    userUnknown('bob@example.net'),
    recipient('cy@example.net'),
  ];

  it('reports only the recipients that failed, and says how many of how many', async () => {
    const dsn = await built({ recipients });
    const [, ...perRecipient] = blocks(part(await parse(dsn), 'message/delivery-status'));
    expect(perRecipient.map((b) => fieldsOf(b)['Final-Recipient'])).toEqual(['rfc822; bob@example.net']);
    expect(dsn.subject).toBe('Delivery failed for 1 of 3 recipients: Your invoice 42');
  });

  it('lists the delivered recipients in the text, apart from the failed one', async () => {
    const text = (await parse(await built({ recipients }))).text ?? '';
    expect(text).toContain('could not be delivered to some of its recipients');
    const delivered = text.slice(text.indexOf('Delivered:'));
    expect(delivered).toContain('<ann@example.net>');
    expect(delivered).toContain('<cy@example.net>');
    expect(delivered).not.toContain('bob@');
  });

  it('reports recipients still being retried as delayed, with Will-Retry-Until the expiry', async () => {
    const retried = recipient('dee@example.net', {
      status: 'delayed',
      reply: { code: 452, enhanced: '4.2.2', text: 'Mailbox full' },
      remoteMta: 'mx.example.net',
      lastAttemptAt: new Date('2026-03-01T10:00:02Z'),
      class: 'recipient_deferred',
    });
    const body = part(await parse(await built({ recipients: [userUnknown('bob@example.net'), retried] })), 'message/delivery-status');
    expect(fieldsOf(blocks(body)[2])).toEqual({
      'Final-Recipient': 'rfc822; dee@example.net',
      Action: 'delayed',
      Status: '4.2.2',
      'Remote-MTA': 'dns; mx.example.net',
      'Diagnostic-Code': 'smtp; 452 4.2.2 Mailbox full',
      'Last-Attempt-Date': 'Sun, 01 Mar 2026 10:00:02 +0000',
      'Will-Retry-Until': 'Fri, 06 Mar 2026 10:00:00 +0000',
    });
    expect(grammarProblems(body)).toEqual([]);
  });

  it('warns of a delay alone when nothing failed yet', async () => {
    const dsn = await built({ recipients: [recipient('dee@example.net', { status: 'delayed' }), recipient('ann@example.net')] });
    expect(dsn.subject).toBe('Delivery delayed: Your invoice 42');
    const body = part(await parse(dsn), 'message/delivery-status');
    expect(fieldsOf(blocks(body)[1])).toMatchObject({ Action: 'delayed', Status: '4.0.0' });
  });
});

describe('buildDsn: expiry at spool.maxAge', () => {
  const throttled = recipient('bob@example.net', {
    status: 'expired',
    reply: { code: 451, enhanced: '4.7.1', text: 'Too many messages, slow down' },
    remoteMta: 'smtp.example.net',
    lastAttemptAt: new Date('2026-03-06T09:40:00Z'),
    class: 'throttled',
  });

  it('fails the recipient keeping the last transient code and reply (RFC 3463 §3.5), and says it expired after 5 days', async () => {
    const dsn = await built({ recipients: [throttled] });
    const mail = await parse(dsn);
    expect(dsn.subject).toBe('Delivery failed (expired after 5 days): Your invoice 42');
    expect(fieldsOf(blocks(part(mail, 'message/delivery-status'))[1])).toEqual({
      'Final-Recipient': 'rfc822; bob@example.net',
      Action: 'failed',
      Status: '4.7.1',
      'Remote-MTA': 'dns; smtp.example.net',
      'Diagnostic-Code': 'smtp; 451 4.7.1 Too many messages, slow down',
      'Last-Attempt-Date': 'Fri, 06 Mar 2026 09:40:00 +0000',
    });
    expect(mail.text).toContain('Not delivered within 5 days');
  });

  it('uses 4.4.7 (delivery time expired) when no server ever answered', async () => {
    const unreached = recipient('bob@example.net', { status: 'expired', lastAttemptAt: new Date('2026-03-06T09:40:00Z'), class: 'connect' });
    const mail = await parse(await built({ recipients: [unreached], expiresAt: new Date('2026-03-01T22:00:00Z') }));
    expect(mail.subject).toBe('Delivery failed (expired after 12 hours): Your invoice 42');
    expect(fieldsOf(blocks(part(mail, 'message/delivery-status'))[1])).toEqual({
      'Final-Recipient': 'rfc822; bob@example.net',
      Action: 'failed',
      Status: '4.4.7',
      'Last-Attempt-Date': 'Fri, 06 Mar 2026 09:40:00 +0000',
    });
    expect(mail.text).toContain('No server answered.');
  });

  it('does not take a permanent-looking enhanced code on a transient reply for the status', async () => {
    const odd = recipient('bob@example.net', { status: 'expired', reply: { code: 421, enhanced: '5.7.0', text: 'odd server' } });
    const body = part(await parse(await built({ recipients: [odd] })), 'message/delivery-status');
    expect(fieldsOf(blocks(body)[1]).Status).toBe('4.4.7');
  });
});

describe('buildDsn: refusals', () => {
  it('refuses a message whose MAIL FROM was <>: never a bounce to a bounce', async () => {
    const result = await buildDsn(input({ from: '' }));
    expect(result).toMatchObject({ dsn: null, refused: 'null-sender' });
    expect(result.reason).toContain('<>');
  });

  it('refuses a message that is itself a delivery status notification', async () => {
    const dsnHeaders = head('From: MAILER-DAEMON@mx.example.net', 'Content-Type: multipart/report; report-type=delivery-status;', ' boundary="b1"');
    expect(await buildDsn(input({ originalHeaders: dsnHeaders }))).toMatchObject({ dsn: null, refused: 'original-is-report' });
  });

  it('refuses a read receipt too (a multipart/report of any type)', async () => {
    const mdn = head('Content-Type: Multipart/Report (receipt); report-type="disposition-notification"; boundary=x');
    expect(await buildDsn(input({ originalHeaders: mdn }))).toMatchObject({ dsn: null, refused: 'original-is-report' });
  });

  it('refuses an automatic reply (Auto-Submitted: auto-replied, RFC 3834)', async () => {
    const vacation = head('Subject: Out of office', 'Auto-Submitted: Auto-Replied (vacation)');
    expect(await buildDsn(input({ originalHeaders: vacation }))).toMatchObject({ dsn: null, refused: 'original-is-auto-reply' });
  });

  it('refuses a bounce of its own report, whatever the envelope says', async () => {
    const own = await built();
    const ownHeaders = own.raw.subarray(0, own.raw.indexOf('\r\n\r\n') + 4);
    expect(await buildDsn(input({ originalHeaders: ownHeaders }))).toMatchObject({ dsn: null, refused: 'original-is-report' });
  });

  it('still bounces auto-generated mail, the kind applications send', async () => {
    const notification = head('Subject: Password reset', 'Auto-Submitted: auto-generated');
    expect((await buildDsn(input({ originalHeaders: notification }))).dsn).not.toBeNull();
  });

  it('refuses when every recipient was delivered: nothing to report', async () => {
    expect(await buildDsn(input({ recipients: [recipient('ann@example.net')] }))).toMatchObject({ dsn: null, refused: 'nothing-to-report' });
  });
});

describe('buildDsn: international text and addresses', () => {
  it('encodes a non-ASCII subject as RFC 2047 encoded words that mail clients decode', async () => {
    const dsn = await built({ originalHeaders: head('Subject: =?UTF-8?Q?Rechnung_f=C3=BCr_M=C3=A4rz?=') });
    expect(dsn.subject).toBe('Delivery failed: Rechnung für März');
    const subjectLines = rawLines(dsn).slice(rawLines(dsn).findIndex((l) => l.startsWith('Subject:')));
    expect(subjectLines[0]).toMatch(/^Subject: =\?UTF-8\?[QB]\?/);
    expect((await parse(dsn)).subject).toBe('Delivery failed: Rechnung für März');
  });

  it('takes a raw UTF-8 subject (RFC 6532) the same way', async () => {
    const dsn = await built({ originalHeaders: head('Subject: Grüße aus Köln') });
    expect((await parse(dsn)).subject).toBe('Delivery failed: Grüße aus Köln');
    expect(dsn.raw.toString('latin1')).toMatch(/^[\x00-\x7f]*$/);
  });

  it('cuts a long original subject in its own Subject, and folds the header', async () => {
    const long = 'Quarterly statement '.repeat(20).trim();
    const dsn = await built({ originalHeaders: head(`Subject: ${long}`) });
    expect(dsn.subject).toBe(`Delivery failed: ${long.slice(0, 120)}…`);
    const ownHeader = rawLines(dsn).slice(0, rawLines(dsn).indexOf(''));
    expect(ownHeader.filter((l) => l.length > 78)).toEqual([]);
    expect((await parse(dsn)).subject).toBe(dsn.subject);
  });

  it('writes a sender with an international domain as its A-label, needing no SMTPUTF8', async () => {
    const dsn = await built({ from: 'billing@bücher.example' });
    expect(dsn.envelope.to).toBe('billing@xn--bcher-kva.example');
    expect(dsn.smtpUtf8).toBe(false);
    expect(rawLines(dsn)).toContain('To: billing@xn--bcher-kva.example');
    // Mail clients show the U-label again.
    expect(((await parse(dsn)).to as AddressObject).value[0]?.address).toBe('billing@bücher.example');
  });

  it('sends to a sender with a non-ASCII local part in UTF-8, and says SMTPUTF8 is needed (RFC 6531, RFC 6532)', async () => {
    const dsn = await built({ from: 'jörg@example.de' });
    expect(dsn.envelope.to).toBe('jörg@example.de');
    expect(dsn.smtpUtf8).toBe(true);
    expect(((await parse(dsn)).to as AddressObject).value[0]?.address).toBe('jörg@example.de');
  });

  it('reports a non-ASCII recipient with the utf-8 address type in its 7-bit xtext form (RFC 6533 §3)', async () => {
    const failed = { ...userUnknown('jörg+rechnung=1@bücher.example') };
    const body = part(await parse(await built({ recipients: [failed] })), 'message/delivery-status');
    expect(fieldsOf(blocks(body)[1])['Final-Recipient']).toBe('utf-8; j\\x{F6}rg\\x{2B}rechnung\\x{3D}1@xn--bcher-kva.example');
    expect(grammarProblems(body)).toEqual([]);
  });

  it('keeps the report 7-bit when the upstream answered in UTF-8, and the text part in full', async () => {
    const failed = recipient('bob@example.net', {
      status: 'failed',
      reply: { code: 550, enhanced: '5.1.1', text: 'Empfänger unbekannt' },
      remoteMta: 'mx.example.de',
    });
    const mail = await parse(await built({ recipients: [failed] }));
    const body = part(mail, 'message/delivery-status');
    expect(fieldsOf(blocks(body)[1])['Diagnostic-Code']).toBe('smtp; 550 5.1.1 Empf?nger unbekannt');
    expect(mail.text).toContain('550 5.1.1 Empfänger unbekannt');
    expect(grammarProblems(body)).toEqual([]);
  });
});

describe('buildDsn: the original headers', () => {
  it('returns the header block as text/rfc822-headers, never the body', async () => {
    const whole = Buffer.concat([ORIGINAL, Buffer.from('Dear customer,\r\nthe secret body.\r\n')]);
    const dsn = await built({ originalHeaders: whole });
    const returned = part(await parse(dsn), 'text/rfc822-headers');
    expect(returned).toBe(ORIGINAL.toString('utf8').replace(/\r\n\r\n$/, '\r\n'));
    expect(dsn.raw.toString('utf8')).not.toContain('secret body');
  });

  it('makes CRLF of bare LF line ends', async () => {
    const lf = Buffer.from('Subject: hi\nFrom: a@example.com\n\n');
    const dsn = await built({ originalHeaders: lf });
    expect(part(await parse(dsn), 'text/rfc822-headers')).toBe('Subject: hi\r\nFrom: a@example.com\r\n');
    rawLines(dsn);
  });

  it('returns raw UTF-8 headers quoted-printable with their charset, decoded back to the same text', async () => {
    const utf8 = head('Subject: Grüße', 'From: Jörg <jörg@example.de>');
    const dsn = await built({ originalHeaders: utf8 });
    expect(dsn.raw.toString('utf8')).toMatch(/Content-Type: text\/rfc822-headers; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable/);
    expect(part(await parse(dsn), 'text/rfc822-headers')).toBe('Subject: Grüße\r\nFrom: Jörg <jörg@example.de>\r\n');
  });

  it('sends a header block with a line over 998 characters quoted-printable, decoded back to the same', async () => {
    const overlong = head('Subject: long', `X-Long: ${'y'.repeat(1_200)}`);
    const dsn = await built({ originalHeaders: overlong });
    expect(rawLines(dsn).filter((l) => l.length > 998)).toEqual([]);
    expect(part(await parse(dsn), 'text/rfc822-headers')).toBe(overlong.toString('utf8').replace(/\r\n\r\n$/, '\r\n'));
  });

  it('cuts a huge header block at a field boundary', async () => {
    const folded = Array.from({ length: 4_000 }, (_, i) => `X-Filler-${i}: ${'v'.repeat(20)}\r\n continued`);
    const dsn = await built({ originalHeaders: head('Subject: big', ...folded) });
    const returned = part(await parse(dsn), 'text/rfc822-headers');
    expect(returned.length).toBeLessThanOrEqual(MAX_RETURNED_HEADER_BYTES + 2);
    expect(returned).toMatch(/^Subject: big\r\n/);
    expect(returned).toMatch(/X-Filler-\d+: v{20}\r\n continued\r\n$/);
  });
});

describe('buildDsn: the bytes on the wire', () => {
  const nasty = recipient('bob@example.net', {
    status: 'failed',
    reply: { code: 550, enhanced: '5.7.1', text: `Rejected\r\nAction: delivered ${'x'.repeat(1_500)} ${'word '.repeat(400)}` },
    remoteMta: 'mx.example.net',
    class: 'content_rejected',
  });

  it('keeps every line within 998 characters, and folds the report within 78 where there is a space', async () => {
    const dsn = await built({ recipients: [nasty] });
    expect(rawLines(dsn).filter((l) => l.length > 998)).toEqual([]);
    expect(grammarProblems(part(await parse(dsn), 'message/delivery-status'))).toEqual([]);
  });

  it('never lets a reply text start a field of its own', async () => {
    const body = part(await parse(await built({ recipients: [nasty] })), 'message/delivery-status');
    expect(blocks(body)[1]?.map((f) => f.name)).toEqual(['Final-Recipient', 'Action', 'Status', 'Remote-MTA', 'Diagnostic-Code']);
  });

  it('is plain 7-bit ASCII when nothing in it needs more', async () => {
    const dsn = await built();
    expect(dsn.raw.toString('latin1')).toMatch(/^[\x00-\x7f]*$/);
    expect(dsn.raw.toString('utf8')).not.toContain('quoted-printable');
    // Its own lines, that is: the original headers come back as they were (their Received: is long).
    const lines = rawLines(dsn);
    const own = lines.slice(0, lines.indexOf('Content-Type: text/rfc822-headers'));
    expect(own.filter((l) => l.length > 78)).toEqual([]);
  });

  it('chooses another boundary when the original headers happen to contain it', async () => {
    const id = ids.next();
    const trap = head('Subject: trap', `X-Trap: --=_mailtrail-${id}-Part_1`);
    const dsn = await built({ id, originalHeaders: trap });
    const boundary = /boundary="([^"]+)"/.exec(dsn.raw.toString('utf8'))?.[1];
    expect(boundary).not.toBe(`=_mailtrail-${id}-Part_1`);
    const mail = await parse(dsn);
    expect(part(mail, 'text/rfc822-headers')).toContain('X-Trap:');
    expect(mail.attachments).toHaveLength(2);
  });

  it('passes the grammar check for every kind of report built here', async () => {
    const kinds: DsnRecipient[][] = [
      [userUnknown('a@example.net')],
      [recipient('a@example.net'), userUnknown('b@example.net'), recipient('c@example.net', { status: 'delayed' })],
      [recipient('ä@example.net', { status: 'expired' })],
      [nasty],
    ];
    for (const recipients of kinds) {
      const body = part(await parse(await built({ recipients, envelopeId: 'ENV1' })), 'message/delivery-status');
      expect(grammarProblems(body)).toEqual([]);
    }
  });
});
