/**
 * Raw messages for byte-exactness tests. Every message is deterministic (fixed dates, seeded
 * pseudo-random bytes), uses CRLF line ends and carries From/To/Subject/Message-ID/Date headers.
 *
 * `raw` is what the client sends. `expected` is what an upstream should receive through a
 * compliant relay: the same bytes, except that SMTP clients append a CRLF to a message that lacks
 * one (nodemailer does, and the SMTP framing requires it).
 *
 * @example
 * for (const m of corpus()) {
 *   const r = await sendMessage({ port, from: m.from, to: m.to, raw: m.raw });
 *   expect(upstream.messages.at(-1)!.raw.equals(m.expected)).toBe(true);
 * }
 * const huge = big(30 * 1024 * 1024); // exactly 30 MiB
 */

export interface CorpusMessage {
  /** Stable name, usable in test titles. */
  name: string;
  /** What the message exercises. */
  description: string;
  from: string;
  to: string[];
  /** The exact bytes the client sends. */
  raw: Buffer;
  /** What the upstream should store: `raw`, plus a final CRLF if it had none. */
  expected: Buffer;
  /** The client should send BODY=8BITMIME. */
  eightBit: boolean;
}

const FROM = 'sender@client.test';
const TO = 'rcpt@upstream.test';
const DATE = 'Tue, 01 Apr 2025 12:00:00 +0000';

/** xorshift32: deterministic bytes without holding a key schedule or calling crypto. */
export function seededBytes(length: number, seed = 0x9e3779b9): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  for (; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

function headers(name: string, extra: string[] = []): string {
  return (
    [
      `From: Corpus Sender <${FROM}>`,
      `To: <${TO}>`,
      `Subject: corpus ${name}`,
      `Message-ID: <corpus-${name}@client.test>`,
      `Date: ${DATE}`,
      'MIME-Version: 1.0',
      ...extra,
    ].join('\r\n') + '\r\n'
  );
}

function message(name: string, description: string, raw: Buffer, eightBit = false): CorpusMessage {
  const endsWithCrlf = raw.length >= 2 && raw[raw.length - 2] === 0x0d && raw[raw.length - 1] === 0x0a;
  return {
    name,
    description,
    from: FROM,
    to: [TO],
    raw,
    expected: endsWithCrlf ? raw : Buffer.concat([raw, Buffer.from('\r\n')]),
    eightBit,
  };
}

/** Wraps base64 at 76 characters per line, CRLF line ends. */
function base64Lines(data: Buffer): string {
  const b64 = data.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return lines.join('\r\n') + '\r\n';
}

/**
 * The named corpus: leading dots, 8-bit UTF-8, 998-character lines, a binary attachment, an empty
 * body, a message without a final CRLF, trailing whitespace and a folded header.
 *
 * @example
 * const dots = corpus().find((m) => m.name === 'leading-dots')!;
 */
export function corpus(): CorpusMessage[] {
  const text = (s: string) => Buffer.from(s, 'utf8');
  const plain = ['Content-Type: text/plain; charset=us-ascii', 'Content-Transfer-Encoding: 7bit'];

  const leadingDots = message(
    'leading-dots',
    'lines that start with dots: ".", "..", ".hidden", "..." (dot-stuffing must round-trip)',
    text(
      headers('leading-dots', plain) +
        '\r\n' +
        'First line.\r\n' +
        '.\r\n' +
        '..\r\n' +
        '.hidden\r\n' +
        '...\r\n' +
        '. a dot and a space\r\n' +
        'Last line.\r\n',
    ),
  );

  const utf8 = message(
    'utf8-8bit',
    '8-bit UTF-8 body (BODY=8BITMIME), several scripts and a 4-byte character',
    text(
      headers('utf8-8bit', ['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit']) +
        '\r\n' +
        'Grüße aus Köln, ça va? Ελληνικά, русский, 日本語, עברית, emoji 📬.\r\n' +
        'Non-breaking\u00a0space and en–dash.\r\n',
    ),
    true,
  );

  const line998 = 'x'.repeat(998);
  const longLines = message(
    'long-lines-998',
    'three body lines of exactly 998 characters (the RFC 5322 limit), one of them starting with a dot',
    text(headers('long-lines-998', plain) + '\r\n' + line998 + '\r\n' + '.' + line998.slice(1) + '\r\n' + line998 + '\r\n'),
  );

  const attachment = seededBytes(48 * 1024 + 7, 0x1234567);
  const boundary = '----=_corpus_boundary_42';
  const binary = message(
    'binary-attachment',
    'multipart/mixed with a 48 KiB base64 attachment of pseudo-random bytes',
    text(
      headers('binary-attachment', [`Content-Type: multipart/mixed; boundary="${boundary}"`]) +
        '\r\n' +
        'This is a multi-part message in MIME format.\r\n' +
        `--${boundary}\r\n` +
        'Content-Type: text/plain; charset=us-ascii\r\n' +
        '\r\n' +
        'See the attachment.\r\n' +
        `--${boundary}\r\n` +
        'Content-Type: application/octet-stream; name="random.bin"\r\n' +
        'Content-Transfer-Encoding: base64\r\n' +
        'Content-Disposition: attachment; filename="random.bin"\r\n' +
        '\r\n' +
        base64Lines(attachment) +
        `--${boundary}--\r\n`,
    ),
  );

  const empty = message('empty-body', 'headers, the blank line, and no body at all', text(headers('empty-body', plain) + '\r\n'));

  const noFinalCrlf = message(
    'no-final-crlf',
    'the last line has no CRLF (the client must add one; `expected` has it)',
    text(headers('no-final-crlf', plain) + '\r\n' + 'This line ends without a line break.'),
  );

  const whitespace = message(
    'trailing-whitespace',
    'trailing spaces and tabs, blank lines with spaces, a folded header (nothing may be trimmed)',
    text(
      headers('trailing-whitespace', [...plain, 'X-Folded: first part of a long header', '\tsecond part after a tab', '  third part after spaces']) +
        '\r\n' +
        'Trailing spaces   \r\n' +
        'Trailing tab\t\r\n' +
        '   \r\n' +
        '\r\n' +
        '\r\n' +
        'After blank lines.\r\n',
    ),
  );

  return [leadingDots, utf8, longLines, binary, empty, noFinalCrlf, whitespace];
}

/**
 * A deterministic message of exactly `sizeBytes` bytes: headers, then 76-character base64-alphabet
 * lines (a typical big attachment), CRLF line ends, ending with CRLF. Builds one Buffer in place.
 *
 * @example
 * const m = big(30 * 1024 * 1024);
 * expect(m.length).toBe(31457280);
 */
export function big(sizeBytes: number, seed = 0xc0ffee): Buffer {
  const head = Buffer.from(headers(`big-${sizeBytes}`, ['Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64']) + '\r\n', 'latin1');
  if (sizeBytes < head.length + 2) throw new Error(`big(): ${sizeBytes} bytes is smaller than the headers (${head.length + 2})`);
  const out = Buffer.allocUnsafe(sizeBytes);
  head.copy(out, 0);
  const alphabet = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', 'latin1');
  // the body: sizeBytes - head - final CRLF bytes of lines of up to 76 chars, each followed by CRLF
  let x = seed >>> 0 || 1;
  let pos = head.length;
  const bodyEnd = sizeBytes - 2; // the last CRLF
  let col = 0;
  while (pos < bodyEnd) {
    // a line break every 76 characters, but never leave a single byte before the final CRLF
    if (col === 76 && bodyEnd - pos >= 3) {
      out[pos++] = 0x0d;
      out[pos++] = 0x0a;
      col = 0;
      continue;
    }
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[pos++] = alphabet[x & 63]!;
    col++;
  }
  out[bodyEnd] = 0x0d;
  out[bodyEnd + 1] = 0x0a;
  return out;
}
