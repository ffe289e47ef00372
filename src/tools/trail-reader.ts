/**
 * Reading the audit trail: JSON lines from files (plain or gzip-compressed, detected by the gzip
 * magic bytes, so rotated `audit.log.3.gz` files need no flag) or from standard input, in constant
 * memory. Every tool (tail, report, lookup) reads through here.
 *
 * Lines are split on the `\n` byte in Buffers, which is safe for UTF-8 (a newline byte never occurs
 * inside a multi-byte character) and several times faster than `readline`.
 *
 * Damage is skipped, counted and located, never fatal: a last line without its newline that does not
 * parse is a record torn by a crash (the writer does one write(2) per record, so only the end of a
 * file can be torn); a line elsewhere that is not a JSON object with a `type` is malformed. A gzip
 * file that ends early (a rotated file still being compressed) counts as torn too.
 */
import { closeSync, createReadStream, fstatSync, openSync, readSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { AuditRecord } from '../audit/records.js';
import { ERR } from '../error-codes.js';

/** `-` names standard input. */
export const STDIN = '-';

const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;
const NEWLINE = 0x0a;
const CHUNK = 1024 * 1024;

/**
 * One record with where it was found. `record` is any JSON object with a string `type`: tools switch
 * on `type` and ignore the ones they do not know (newer writers may add types).
 */
export interface TrailEntry {
  readonly record: AuditRecord;
  /** The line as it is in the file, without the newline (for `--json`: bytes the chain hashed). */
  readonly raw: string;
  /** File name as given, or `-` for standard input. */
  readonly file: string;
  /** 1-based line number within that file. */
  readonly line: number;
  /** Byte offset of the line's start in the file's content (after gunzip for a .gz file). */
  readonly offset: number;
}

export type ProblemKind = 'torn' | 'malformed';

export interface ProblemLocation {
  readonly kind: ProblemKind;
  readonly file: string;
  readonly line: number;
}

/** Counts of lines skipped while reading, with the first few locations for the message. */
export class ReadProblems {
  torn = 0;
  malformed = 0;
  readonly examples: ProblemLocation[] = [];
  static readonly MAX_EXAMPLES = 5;

  note(kind: ProblemKind, file: string, line: number): void {
    if (kind === 'torn') this.torn += 1;
    else this.malformed += 1;
    if (this.examples.length < ReadProblems.MAX_EXAMPLES) this.examples.push({ kind, file, line });
  }

  get total(): number {
    return this.torn + this.malformed;
  }

  /** One line for stderr, or null when nothing was skipped. */
  summary(): string | null {
    if (this.total === 0) return null;
    const parts: string[] = [];
    if (this.torn > 0) parts.push(`${this.torn} torn last line(s) (a crash mid-write; \`mailtrail verify\` tells it from tampering)`);
    if (this.malformed > 0) parts.push(`${this.malformed} malformed line(s)`);
    const where = this.examples.map((e) => `${e.file}:${e.line}`).join(', ');
    return `skipped ${parts.join(' and ')}: ${where}${this.total > this.examples.length ? ', ...' : ''}`;
  }
}

export interface ReadOptions {
  /** Where skipped lines are counted. */
  readonly problems: ReadProblems;
  /** Standard input, for the `-` source. */
  readonly stdin?: NodeJS.ReadableStream;
  /**
   * A cheap test on the line's bytes before it is even decoded (lookup: "does the line contain the
   * key at all?"). Lines it refuses are skipped unparsed, and so are not checked for damage either.
   */
  readonly prefilter?: BytePrefilter;
}

/**
 * Tests the line `buf[start, end)`. Called for the lines of one buffer in increasing order, so an
 * implementation may scan the whole buffer once (see line-prefilter.ts).
 */
export type BytePrefilter = (buf: Buffer, start: number, end: number) => boolean;

/**
 * Every record of `sources`, in order (file by file, line by line). Memory stays at about one chunk
 * (1 MiB) plus one line, whatever the size of the files.
 */
export async function* readTrail(sources: readonly string[], opts: ReadOptions): AsyncGenerator<TrailEntry> {
  for (const source of sources) {
    let lineNo = 0;
    /** Bytes of the blocks before this one: blocks are consecutive pieces of the content. */
    let base = 0;
    const blocks = lineBlocks(decompressed(openSource(source, opts.stdin)), () => {
      // A gzip stream that ends early: the last complete line was yielded, the rest is lost.
      opts.problems.note('torn', source, lineNo + 1);
    });
    // Lines are walked synchronously within a block: only records cross the async boundary.
    for await (const { buf, complete } of blocks) {
      let start = 0;
      while (start < buf.length) {
        const nl = complete ? buf.indexOf(NEWLINE, start) : buf.length;
        const end = complete ? stripCr(buf, start, nl) : buf.length;
        const next = nl + 1;
        lineNo += 1;
        if (end === start || (opts.prefilter && complete && !opts.prefilter(buf, start, end))) {
          start = next;
          continue;
        }
        const text = buf.toString('utf8', start, end);
        const lineStart = start;
        start = next;
        const record = parseRecord(text);
        if (record) yield { record, raw: text, file: source, line: lineNo, offset: base + lineStart };
        else opts.problems.note(complete ? 'malformed' : 'torn', source, lineNo);
      }
      base += buf.length;
    }
  }
}

/** The record on one line, or null when it is not a JSON object with a string `type`. */
export function parseRecord(text: string): AuditRecord | null {
  // Cheap test first: every record is an object; avoids a throw per garbage line.
  if (text.charCodeAt(0) !== 0x7b /* { */) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  if (typeof (value as { type?: unknown }).type !== 'string') return null;
  return value as AuditRecord;
}

/** True when the file starts with the gzip magic bytes (RFC 1952 §2.3.1). */
export function isGzipFile(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(2);
    const n = readSync(fd, head, 0, 2, 0);
    return n === 2 && head[0] === GZIP_MAGIC_0 && head[1] === GZIP_MAGIC_1;
  } finally {
    closeSync(fd);
  }
}

function openSource(source: string, stdin: NodeJS.ReadableStream | undefined): AsyncIterable<Buffer> {
  if (source === STDIN) {
    if (!stdin) throw Object.assign(new Error('standard input is not available'), { code: ERR.NO_STDIN });
    return stdin as AsyncIterable<Buffer>;
  }
  return createReadStream(source, { highWaterMark: CHUNK });
}

/**
 * The bytes of `source`, gunzipped when its first two bytes are the gzip magic. Works on pipes too
 * (`zcat`-free `mailtrail report - < audit.log.1.gz`). Multi-member gzip files (concatenated) are
 * read whole, as zlib does by default.
 */
async function* decompressed(source: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  // Closes the file when the reader stops early (lookup found enough, `| head` closed the pipe).
  const release = async (): Promise<void> => void (await it.return?.());
  let head = Buffer.alloc(0);
  try {
    // Two bytes decide; a pipe may deliver a single byte first.
    while (head.length < 2) {
      const next = await it.next();
      if (next.done) {
        if (head.length > 0) yield head;
        return;
      }
      head = Buffer.concat([head, toBuffer(next.value)]);
    }
  } catch (err) {
    await release();
    throw err;
  }
  async function* whole(): AsyncGenerator<Buffer> {
    try {
      yield head;
      for (;;) {
        const next = await it.next();
        if (next.done) return;
        yield toBuffer(next.value);
      }
    } finally {
      await release();
    }
  }
  if (head[0] !== GZIP_MAGIC_0 || head[1] !== GZIP_MAGIC_1) {
    yield* whole();
    return;
  }
  const gunzip = createGunzip({ chunkSize: 256 * 1024 });
  pipeline(Readable.from(whole()), gunzip, () => undefined);
  yield* gunzip as AsyncIterable<Buffer>;
}

function toBuffer(chunk: Buffer | string): Buffer {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
}

/** Bytes holding whole lines (`complete`: each ends with a newline), or a last line without one. */
interface LineBlock {
  readonly buf: Buffer;
  readonly complete: boolean;
}

/**
 * The stream cut at its last newline in each chunk, the remainder carried to the next one. A read
 * error after some data (a truncated gzip member) ends the blocks early and calls `onTruncated`
 * instead of throwing: what was read is still good. An error before any byte (a missing file) is
 * thrown.
 */
async function* lineBlocks(chunks: AsyncIterable<Buffer>, onTruncated: () => void): AsyncGenerator<LineBlock> {
  let rest: Buffer | null = null;
  let sawData = false;
  try {
    for await (const read of chunks) {
      sawData = true;
      let chunk = read;
      if (rest) {
        // Finish the carried line with the head of this chunk (a small copy, not the whole chunk).
        const nl = chunk.indexOf(NEWLINE);
        if (nl === -1) {
          rest = Buffer.concat([rest, chunk]);
          continue;
        }
        yield { buf: Buffer.concat([rest, chunk.subarray(0, nl + 1)]), complete: true };
        rest = null;
        chunk = chunk.subarray(nl + 1);
      }
      const last = chunk.lastIndexOf(NEWLINE);
      // Copy the remainder: it must not keep the whole chunk alive.
      rest = last + 1 < chunk.length ? Buffer.from(chunk.subarray(last + 1)) : null;
      if (last !== -1) yield { buf: chunk.subarray(0, last + 1), complete: true };
    }
  } catch (err) {
    if (!sawData || !isTruncation(err)) throw err;
    onTruncated();
    return;
  }
  if (rest && rest.length > 0) yield { buf: rest, complete: false };
}

/** A CR before the newline (a trail edited on Windows) is not part of the record. */
function stripCr(buf: Buffer, start: number, nl: number): number {
  return nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl;
}

function isTruncation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'Z_BUF_ERROR' || code === 'Z_DATA_ERROR';
}

/**
 * Complete lines of a plain file from its end backwards, for `tail` on a large file (the last ten
 * records of a 2 GB trail without reading 2 GB). `end` is the byte offset to read back from; a last
 * line without its newline is skipped (it is still being written, or torn) and `completeEnd` reports
 * the offset just after the last complete line, where following can pick up.
 */
export function lastLines(file: string): { readonly completeEnd: number; lines(): Generator<string> } {
  const probe = openSync(file, 'r');
  let tailEnd: number;
  try {
    tailEnd = completeEndOf(probe, fstatSync(probe).size);
  } finally {
    closeSync(probe);
  }
  return {
    completeEnd: tailEnd,
    *lines() {
      const fd = openSync(file, 'r');
      try {
        let pos = tailEnd;
        let carry: Buffer = Buffer.alloc(0);
        while (pos > 0) {
          const len = Math.min(CHUNK, pos);
          pos -= len;
          const chunk = Buffer.alloc(len);
          readFully(fd, chunk, pos);
          let buf = carry.length ? Buffer.concat([chunk, carry]) : chunk;
          // Lines end at buf.length (the first pass ends at tailEnd, just after a newline).
          let end = buf.length;
          if (end > 0 && buf[end - 1] === NEWLINE) end -= 1;
          // (A negative offset would make lastIndexOf search from the end again: stop at 0.)
          while (end > 0) {
            const nl = buf.lastIndexOf(NEWLINE, end - 1);
            if (nl === -1) break;
            yield buf.toString('utf8', nl + 1, stripCr(buf, nl + 1, end));
            end = nl;
          }
          carry = Buffer.from(buf.subarray(0, end));
          buf = Buffer.alloc(0);
        }
        if (carry.length > 0) yield carry.toString('utf8', 0, stripCr(carry, 0, carry.length));
      } finally {
        closeSync(fd);
      }
    },
  };
}

/** Offset just after the last newline at or before `size` (0 when there is none). */
function completeEndOf(fd: number, size: number): number {
  let pos = size;
  const buf = Buffer.alloc(64 * 1024);
  while (pos > 0) {
    const len = Math.min(buf.length, pos);
    pos -= len;
    readFully(fd, buf.subarray(0, len), pos);
    const nl = buf.subarray(0, len).lastIndexOf(NEWLINE);
    if (nl !== -1) return pos + nl + 1;
  }
  return 0;
}

function readFully(fd: number, into: Buffer, position: number): void {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) throw Object.assign(new Error('file shrank while reading'), { code: ERR.SHRANK });
    done += n;
  }
}
