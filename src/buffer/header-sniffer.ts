import addressparser, { type Address } from 'nodemailer/lib/addressparser';

/**
 * The three header facts the audit record carries (docs/audit-record.md, `message`). Every value is
 * decoded (RFC 2047 encoded words, folding) and `null` when the header is absent, empty or unreadable.
 */
export interface HeaderFacts {
  /** Message-ID with its angle brackets, e.g. `<inv-5521@example.com>`. */
  messageId: string | null;
  subject: string | null;
  /** The header From as text, e.g. `Billing <invoices@example.com>`. */
  from: string | null;
  /** The header block exceeded the cap: the facts come from its first part only. */
  truncated: boolean;
}

/** Header blocks larger than this are not legitimate mail; the rest of the message is still relayed. */
export const DEFAULT_HEADER_CAP = 256 * 1024;

const LF = 0x0a;
const CR = 0x0d;

// How much of a possible blank line the previous chunk ended with.
const NOTHING_PENDING = 0;
/** The chunk ended with LF: the next line may be the blank one. */
const AFTER_LF = 1;
/** The chunk ended with LF CR: an LF next completes `\n\r\n`. */
const AFTER_LF_CR = 2;
type Pending = typeof NOTHING_PENDING | typeof AFTER_LF | typeof AFTER_LF_CR;

/**
 * Collects the header block of a message arriving in chunks: the bytes up to and including the
 * first blank line (`\r\n\r\n`, or `\n\n` since smtp-server keeps bare LFs), at most `cap` bytes.
 * The blank line may straddle chunks. It keeps views of the chunks, not copies, and ignores
 * everything once done, so the per-chunk cost after the headers is a single branch.
 */
export class HeaderCollector {
  readonly #cap: number;
  #parts: Buffer[] = [];
  #length = 0;
  // A message that starts with a blank line has an empty header block, so we start "after an LF".
  #pending: Pending = AFTER_LF;
  #done = false;
  #truncated = false;

  constructor(cap: number = DEFAULT_HEADER_CAP) {
    this.#cap = cap;
  }

  /** The blank line was seen, or the cap was reached. */
  get done(): boolean {
    return this.#done;
  }

  /** The cap was reached before the blank line. */
  get truncated(): boolean {
    return this.#truncated;
  }

  push(chunk: Buffer): void {
    if (this.#done) return;
    const room = this.#cap - this.#length;
    const limit = Math.min(chunk.length, room);
    const end = this.#findBlankLine(chunk, limit);
    if (end >= 0) {
      this.#take(chunk, end + 1);
      this.#done = true;
      return;
    }
    this.#take(chunk, limit);
    if (this.#length >= this.#cap) {
      this.#done = true;
      this.#truncated = true;
    }
  }

  /** The bytes collected so far: the whole block once done, or all of a message that had no body. */
  head(): Buffer {
    if (this.#parts.length === 1) return this.#parts[0] as Buffer;
    const joined = Buffer.concat(this.#parts, this.#length);
    this.#parts = [joined];
    return joined;
  }

  #take(chunk: Buffer, count: number): void {
    if (count === 0) return;
    this.#parts.push(count === chunk.length ? chunk : chunk.subarray(0, count));
    this.#length += count;
  }

  /**
   * Index of the LF that ends the blank line within `chunk[0, limit)`, or -1. A blank line is an LF
   * followed by LF or by CR LF; a pending state carries a partial match over from the last chunk.
   */
  #findBlankLine(chunk: Buffer, limit: number): number {
    const pending = this.#pending;
    this.#pending = NOTHING_PENDING;
    if (limit === 0) {
      this.#pending = pending;
      return -1;
    }
    if (pending === AFTER_LF_CR) {
      if (chunk[0] === LF) return 0;
    } else if (pending === AFTER_LF) {
      const match = this.#matchAfterLf(chunk, 0, limit);
      if (match !== -1) return match;
    }
    for (let lf = chunk.indexOf(LF); lf !== -1 && lf < limit; lf = chunk.indexOf(LF, lf + 1)) {
      const match = this.#matchAfterLf(chunk, lf + 1, limit);
      if (match !== -1) return match;
    }
    return -1;
  }

  /** Given that the byte before `at` was an LF: the end of a blank line starting at `at`, or -1. */
  #matchAfterLf(chunk: Buffer, at: number, limit: number): number {
    if (at === limit) {
      this.#pending = AFTER_LF;
      return -1;
    }
    const byte = chunk[at];
    if (byte === LF) return at;
    if (byte !== CR) return -1;
    if (at + 1 === limit) {
      this.#pending = AFTER_LF_CR;
      return -1;
    }
    return chunk[at + 1] === LF ? at + 1 : -1;
  }
}

/**
 * Reads Message-ID, Subject and From from a header block. Never throws: anything unreadable gives
 * nulls. Async to keep the door open for a streaming parser; the work itself is synchronous.
 *
 * Why not mailparser's MailParser: it builds a pipeline of streams per message and decodes every
 * header. On a typical 1 KiB message that measured 100-130 µs of CPU against about 15 µs here, on
 * the path of every message. From still goes through mailparser's own `parseAddressHeader` (most
 * of those 15 µs), which knows groups, comments and encoded words hiding in addresses.
 */
export async function sniffHeaders(head: Buffer, truncated: boolean): Promise<HeaderFacts> {
  try {
    return readHeaderFacts(head, truncated);
  } catch {
    return { messageId: null, subject: null, from: null, truncated };
  }
}

const NEEDED = ['message-id', 'subject', 'from'] as const;

function readHeaderFacts(head: Buffer, truncated: boolean): HeaderFacts {
  const fields = headerFields(head, NEEDED);
  return {
    messageId: formatMessageId(fields.get('message-id')),
    subject: formatSubject(fields.get('subject')),
    from: formatFrom(fields.get('from')),
    truncated,
  };
}

/** Obsolete syntax (RFC 5322 §4.5) allows whitespace between a field name and its colon; this much is tolerated. */
const MAX_SPACE_BEFORE_COLON = 14;

/**
 * The unfolded raw values (encoded words left as they are) of the first occurrence of each field in
 * `names` (lower case) in a header block. Raw 8-bit header bytes are taken as UTF-8 (RFC 6532), as
 * mailparser does. Unfolding per RFC 5322 §2.2.3 removes each line break that is followed by
 * whitespace and keeps the whitespace. The first occurrence wins, as in mailparser and mail clients.
 * Reading stops at the blank line, or as soon as every field was found.
 */
export function headerFields<N extends string>(head: Buffer, names: readonly N[]): Map<N, string> {
  const found = new Map<N, string>();
  const lines = head.toString('utf8').split(/\r?\n/);
  const shortest = Math.min(...names.map((n) => n.length));
  const longest = Math.max(...names.map((n) => n.length)) + MAX_SPACE_BEFORE_COLON;
  let current: N | null = null;
  let value = '';
  for (const line of lines) {
    const first = line.charCodeAt(0);
    if (first === 0x20 || first === 0x09) {
      if (current !== null) value += line;
      continue;
    }
    if (current !== null) found.set(current, value);
    current = null;
    if (line.length === 0 || found.size === names.length) break;
    const colon = line.indexOf(':');
    if (colon < shortest || colon > longest) continue;
    const name = line.slice(0, colon).trimEnd().toLowerCase();
    if ((names as readonly string[]).includes(name) && !found.has(name as N)) {
      current = name as N;
      value = line.slice(colon + 1);
    }
  }
  if (current !== null) found.set(current, value);
  return found;
}

/** Mailparser's convention: the id in angle brackets, brackets added when the sender left them out. */
function formatMessageId(raw: string | undefined): string | null {
  const value = raw?.trim();
  if (!value) return null;
  const bracketed = /<([^<>]*)>/.exec(value);
  if (bracketed === null) return `<${value}>`;
  const id = (bracketed[1] as string).trim();
  return id ? `<${id}>` : null;
}

function formatSubject(raw: string | undefined): string | null {
  const value = raw === undefined ? '' : decodeEncodedWords(raw.trim());
  return value.length > 0 ? value : null;
}

/**
 * From as one line of text. Punycode domains are kept as sent: the audit trail records what the
 * message said, and a decoded look-alike domain would hide a homograph.
 */
function formatFrom(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  // nodemailer's address parser (already loaded for relaying) instead of mailparser's: the same
  // RFC 5322 splitting at a fraction of the cost per message; display names are RFC 2047-decoded here.
  const addresses = addressparser(raw.trim());
  const text = addresses.map(formatAddress).join(', ');
  return text.length > 0 ? text : null;
}

function formatAddress(entry: Address): string {
  const name = entry.name ? quotePhrase(decodeEncodedWords(entry.name)) : '';
  if (entry.group) return `${name}: ${entry.group.map(formatAddress).join(', ')};`;
  if (!entry.address) return name;
  return name ? `${name} <${entry.address}>` : entry.address;
}

/** Quote a display name only where RFC 5322 requires it, so plain names read as `Billing <a@b>`. */
function quotePhrase(name: string): string {
  if (!/[()<>[\]:;@\\,."]/.test(name)) return name;
  return `"${name.replace(/["\\]/g, '\\$&')}"`;
}

// RFC 2047 §2: =?charset?encoding?text?=. The language suffix of RFC 2231 (`charset*lang`) is
// allowed; the text may hold spaces because broken encoders put them there and mailparser accepts it.
// Only used with matchAll, which works on a copy, so the shared `lastIndex` is never touched.
const ENCODED_WORD = /=\?([^?*\s]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?]*)\?=/g;

/** One decoded run: bytes of consecutive encoded words in one charset, or literal text. */
interface Run {
  charset: string | null;
  text: string;
  bytes: Buffer[];
}

/**
 * Decodes the encoded words of an unstructured header. Whitespace between two encoded words is
 * dropped (RFC 2047 §6.2), and consecutive words in the same charset are joined as bytes before
 * decoding, so a multi-byte character split across two words comes out whole.
 */
export function decodeEncodedWords(value: string): string {
  if (!value.includes('=?')) return value;
  const runs: Run[] = [];
  let last = 0;
  for (const match of value.matchAll(ENCODED_WORD)) {
    const gap = value.slice(last, match.index);
    const previous = runs.at(-1);
    const charset = (match[1] as string).toLowerCase();
    const bytes = decodeWordBytes(match[2] as string, match[3] as string);
    const followsWord = previous !== undefined && previous.charset !== null && /^\s*$/.test(gap);
    if (!followsWord && gap.length > 0) runs.push({ charset: null, text: gap, bytes: [] });
    if (followsWord && previous.charset === charset) previous.bytes.push(bytes);
    else runs.push({ charset, text: '', bytes: [bytes] });
    last = match.index + match[0].length;
  }
  if (last < value.length) runs.push({ charset: null, text: value.slice(last), bytes: [] });
  return runs.map(decodeRun).join('');
}

function decodeRun(run: Run): string {
  if (run.charset === null) return run.text;
  const bytes = run.bytes.length === 1 ? (run.bytes[0] as Buffer) : Buffer.concat(run.bytes);
  return decodeCharset(bytes, run.charset);
}

function decodeWordBytes(encoding: string, text: string): Buffer {
  return encoding === 'B' || encoding === 'b' ? decodeBase64Word(text) : decodeQWord(text);
}

/** Some encoders concatenate padded segments in one word; Buffer stops at the first padding. */
function decodeBase64Word(text: string): Buffer {
  const segments = text.replace(/\s+/g, '').split(/(?<==)(?=[^=])/);
  if (segments.length === 1) return Buffer.from(text, 'base64');
  return Buffer.concat(segments.map((segment) => Buffer.from(segment, 'base64')));
}

/** RFC 2047 §4.2: `_` is a space, `=XX` a byte, anything else itself. A stray `=` is kept. */
function decodeQWord(text: string): Buffer {
  const source = Buffer.from(text.replace(/_/g, ' '), 'utf8');
  const out = Buffer.allocUnsafe(source.length);
  let length = 0;
  for (let i = 0; i < source.length; i++) {
    const byte = source[i] as number;
    const hex = byte === 0x3d ? hexPair(source[i + 1], source[i + 2]) : -1;
    if (hex >= 0) {
      out[length++] = hex;
      i += 2;
    } else {
      out[length++] = byte;
    }
  }
  return out.subarray(0, length);
}

function hexPair(high: number | undefined, low: number | undefined): number {
  const h = hexDigit(high);
  const l = hexDigit(low);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

function hexDigit(code: number | undefined): number {
  if (code === undefined) return -1;
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * Node's TextDecoder (full ICU) knows the charsets mail uses: ISO-8859-*, windows-125x, KOI8,
 * Shift_JIS, ISO-2022-JP, GB18030, Big5, EUC-KR. An unknown label falls back to UTF-8 with
 * replacement characters rather than failing the whole header.
 */
function decodeCharset(bytes: Buffer, charset: string): string {
  if (charset === 'utf-8' || charset === 'utf8') return bytes.toString('utf8');
  try {
    return new TextDecoder(charset).decode(bytes);
  } catch {
    return bytes.toString('utf8');
  }
}
