import { MailParser, type AddressObject } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { decodeEncodedWords, HeaderCollector, headerFields, sniffHeaders } from '../../src/buffer/header-sniffer.js';

const crlf = (...lines: string[]): Buffer => Buffer.from(lines.join('\r\n') + '\r\n\r\n');

/** Feed `bytes` to a fresh collector in the given pieces; return the collector. */
function collect(pieces: Buffer[], cap?: number): HeaderCollector {
  const collector = new HeaderCollector(cap);
  for (const piece of pieces) collector.push(piece);
  return collector;
}

/** What mailparser's MailParser makes of the same header block: the reference we agree with. */
function mailparserFacts(head: Buffer): Promise<{ messageId: unknown; subject: unknown; from: unknown }> {
  return new Promise((resolve, reject) => {
    const parser = new MailParser();
    parser.on('headers', (headers) => {
      const from = headers.get('from') as AddressObject | undefined;
      resolve({
        messageId: headers.get('message-id') ?? null,
        subject: headers.get('subject') ?? null,
        from: from ? from.value.map((a) => ({ name: a.name, address: a.address })) : null,
      });
    });
    parser.on('error', reject);
    parser.on('data', () => undefined);
    parser.end(head);
  });
}

describe('sniffHeaders', () => {
  it('reads Message-ID, Subject and From of a plain header block', async () => {
    const head = crlf(
      'Received: from app (app [10.0.0.1]) by relay; Tue, 25 Nov 2026 10:15:02 +0000',
      'Message-ID: <inv-5521@example.com>',
      'From: Billing <invoices@example.com>',
      'To: ana@example.org',
      'Subject: Your invoice',
    );
    expect(await sniffHeaders(head, false)).toEqual({
      messageId: '<inv-5521@example.com>',
      subject: 'Your invoice',
      from: 'Billing <invoices@example.com>',
      truncated: false,
    });
  });

  it('decodes base64 and quoted-printable encoded words in the Subject', async () => {
    const b = await sniffHeaders(crlf('Subject: =?UTF-8?B?SW52b2ljZSDigJMgTm92ZW1iZXI=?='), false);
    const q = await sniffHeaders(crlf('Subject: =?utf-8?q?Caf=C3=A9_cr=C3=A8me?='), false);
    expect([b.subject, q.subject]).toEqual(['Invoice – November', 'Café crème']);
  });

  it('decodes encoded words in a charset other than UTF-8', async () => {
    const facts = await sniffHeaders(crlf('Subject: =?ISO-8859-1?Q?Caf=E9?= =?koi8-r?B?8NLJ18XU?='), false);
    expect(facts.subject).toBe('CaféПривет');
  });

  it('joins a multi-byte character split across two encoded words', async () => {
    // "é" is C3 A9 in UTF-8; some encoders cut a word between the two bytes.
    const facts = await sniffHeaders(crlf('Subject: =?UTF-8?Q?Caf=C3?=', ' =?UTF-8?Q?=A9?='), false);
    expect(facts.subject).toBe('Café');
  });

  it('drops whitespace between encoded words and keeps it next to plain text', () => {
    expect(decodeEncodedWords('=?utf-8?q?a?=  =?utf-8?q?b?= c =?utf-8?q?d?=')).toBe('ab c d');
  });

  it('reads From with an encoded display name as Name <address>', async () => {
    const head = crlf('From: =?UTF-8?Q?Billing_D=C3=A9partement?= <invoices@example.com>');
    const facts = await sniffHeaders(head, false);
    expect(facts.from).toBe('Billing Département <invoices@example.com>');
  });

  it('quotes a display name that needs quoting, so the address stays unambiguous', async () => {
    const facts = await sniffHeaders(crlf('From: "Doe, John" <john@example.com>, jane@example.com'), false);
    expect(facts.from).toBe('"Doe, John" <john@example.com>, jane@example.com');
  });

  it('unfolds folded headers', async () => {
    const head = crlf('Subject: a long', '\tsubject line', 'Message-ID:', ' <folded@example.com>', 'From: Ana', '  <ana@example.org>');
    expect(await sniffHeaders(head, false)).toMatchObject({
      subject: 'a long\tsubject line',
      messageId: '<folded@example.com>',
      from: 'Ana <ana@example.org>',
    });
  });

  it('takes the first of a duplicated header, as mail clients show it', async () => {
    const facts = await sniffHeaders(crlf('Subject: first', 'Subject: second'), false);
    expect(facts.subject).toBe('first');
  });

  it('wraps a Message-ID sent without angle brackets', async () => {
    const facts = await sniffHeaders(crlf('Message-ID: bare-id@example.com'), false);
    expect(facts.messageId).toBe('<bare-id@example.com>');
  });

  it('accepts bare LF line endings', async () => {
    const facts = await sniffHeaders(Buffer.from('Subject: hi\nFrom: a@example.com\n\nbody\n'), false);
    expect(facts).toMatchObject({ subject: 'hi', from: 'a@example.com' });
  });

  it('does not read header-like lines of the body', async () => {
    const head = Buffer.from('To: a@example.com\r\n\r\nSubject: not a header\r\n');
    const facts = await sniffHeaders(head, false);
    expect(facts.subject).toBeNull();
  });

  it('returns nulls for garbage without throwing', async () => {
    const garbage = [
      Buffer.alloc(0),
      Buffer.from([0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x3a, 0x80, 0x0a, 0x0a]),
      Buffer.from('no colon here\r\n\tcontinued\r\n:\r\nSubject\r\n'),
      Buffer.from('From ana@example.org Mon Jan  1 00:00:00 2024\r\nX: y\r\n'),
      Buffer.from('Subject: =?x-unknown?B?!!!?= =?utf-8?Q?=ZZ?=\r\nFrom: <>\r\nMessage-ID:   \r\n'),
    ];
    const results = await Promise.all(garbage.map((head) => sniffHeaders(head, false)));
    const nothing = { messageId: null, subject: null, from: null, truncated: false };
    expect(results.slice(0, 4)).toEqual([nothing, nothing, nothing, nothing]);
    // Undecodable words stay as text rather than failing the header.
    expect(results[4]).toEqual({ ...nothing, subject: '=ZZ' });
  });

  it('agrees with mailparser on decoded Message-ID, Subject and From', async () => {
    const blocks = [
      crlf('Message-ID: <a.b@example.com>', 'Subject: =?UTF-8?B?w6lsw6h2ZQ==?= notes', 'From: =?utf-8?B?w4lsw6h2ZQ==?= <e@example.com>'),
      crlf('Subject: =?utf-8?q?one?=', ' =?utf-8?q?_two?=', 'From: "Quoted Name" <q@example.com>'),
      crlf('From: Group: a@example.com, "B" <b@example.com>;', 'Subject: plain, with: punctuation'),
    ];
    for (const head of blocks) {
      const ours = await sniffHeaders(head, false);
      const reference = await mailparserFacts(head);
      expect(ours.messageId).toBe(reference.messageId);
      expect(ours.subject).toBe(reference.subject);
      expect(ours.from).not.toBeNull();
      for (const { name, address } of reference.from as { name: string; address?: string }[]) {
        expect(ours.from).toContain(name);
        if (address) expect(ours.from).toContain(address);
      }
    }
  });

  it('passes the truncated flag through and still reads what arrived', async () => {
    const facts = await sniffHeaders(Buffer.from('Subject: cut\r\nX-Long: aaaa'), true);
    expect(facts).toMatchObject({ subject: 'cut', truncated: true });
  });
});

describe('headerFields', () => {
  it('finds the fields asked for, unfolded, case-insensitively, the first occurrence of each, up to the blank line', () => {
    const head = crlf(
      'Received: from a by b',
      'content-TYPE: multipart/report;',
      '\treport-type=delivery-status',
      'Auto-Submitted : auto-replied',
      'Content-Type: text/plain',
    );
    const body = Buffer.from('X-In-Body: no\r\n');
    const fields = headerFields(Buffer.concat([head, body]), ['content-type', 'auto-submitted', 'x-in-body']);
    expect([...fields]).toEqual([
      ['content-type', ' multipart/report;\treport-type=delivery-status'],
      ['auto-submitted', ' auto-replied'],
    ]);
  });
});

describe('HeaderCollector', () => {
  const message = Buffer.from('Subject: hi\r\nFrom: a@example.com\r\n\r\nbody line\r\n\r\nmore\r\n');
  const headLength = message.indexOf('\r\n\r\n') + 4;

  it('collects the header block up to and including the blank line', () => {
    const collector = collect([message]);
    expect(collector.done).toBe(true);
    expect(collector.head().toString()).toBe(message.subarray(0, headLength).toString());
  });

  it('finds a CRLF blank line split across chunks at any position', () => {
    for (let split = 1; split < message.length; split++) {
      const collector = collect([message.subarray(0, split), message.subarray(split)]);
      expect(collector.head().length, `split at ${split}`).toBe(headLength);
    }
  });

  it('finds the blank line when the message arrives one byte at a time', () => {
    const bytes = [...message].map((byte) => Buffer.from([byte]));
    const collector = collect(bytes);
    expect([collector.done, collector.head().length]).toEqual([true, headLength]);
  });

  it('finds a bare LF blank line split across chunks', () => {
    const lf = Buffer.from('Subject: hi\n\nbody\n');
    const collector = collect([lf.subarray(0, 12), lf.subarray(12)]);
    expect(collector.head().toString()).toBe('Subject: hi\n\n');
  });

  it('has an empty header block when the message starts with a blank line', () => {
    const collector = collect([Buffer.from('\r\nSubject: body text\r\n')]);
    expect([collector.done, collector.head().toString()]).toEqual([true, '\r\n']);
  });

  it('stops at the cap and marks the block truncated', () => {
    const collector = collect([Buffer.from('Subject: x\r\nX-Big: '), Buffer.alloc(100, 0x61)], 64);
    expect([collector.done, collector.truncated, collector.head().length]).toEqual([true, true, 64]);
  });

  it('is not truncated when the blank line ends exactly at the cap', () => {
    const collector = collect([message], headLength);
    expect([collector.done, collector.truncated]).toEqual([true, false]);
  });

  it('keeps everything of a message that has no body', () => {
    const collector = collect([Buffer.from('Subject: only headers\r\n')]);
    expect([collector.done, collector.truncated, collector.head().toString()]).toEqual([false, false, 'Subject: only headers\r\n']);
  });
});
