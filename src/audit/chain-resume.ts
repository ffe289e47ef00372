import { closeSync, constants, createReadStream, fstatSync, openSync, readSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { isChained, type ChainHead } from './chain.js';

/**
 * Where a trail file leaves the chain, read at start-up so that `seq` and `prev` continue across
 * restarts: the last record of the file. A final line without its newline (a write cut short by a
 * crash or a full disk) is skipped when it does not parse: a torn record, whose seq is reused. When
 * it does parse, only its newline is missing: it is a whole record, as every reader of the trail takes
 * it (verify, tail, report), so the chain goes on from it instead of writing a second record at its
 * seq (audit-writer.ts keeps such a record the same way when a write fails after it).
 */
export interface FileTail {
  /** The chain head of the file, or null when it holds no chained record. */
  readonly head: ChainHead | null;
  /** The file ends with bytes after its last newline (whole record or not). */
  readonly torn: boolean;
  /** The file's last record has no chain fields (written with `audit.chain: false`). */
  readonly unchained: boolean;
}

const NEWLINE = 0x0a;
/** How far back to look past damaged lines before giving up. */
const MAX_TAIL_BYTES = 4 * 1024 * 1024;
const MAX_TAIL_LINES = 1000;

const EMPTY: FileTail = { head: null, torn: false, unchained: false };

/** The tail of a plain (uncompressed) file, read backwards: constant time whatever its size. */
export function plainFileTail(file: string): FileTail {
  let fd: number;
  try {
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer (a regular file is
    // not affected).
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return EMPTY;
    throw err;
  }
  try {
    const stat = fstatSync(fd);
    // /dev/full, a pipe, a terminal: nothing to resume from.
    if (!stat.isFile() || stat.size === 0) return EMPTY;
    const readFrom = Math.max(0, stat.size - MAX_TAIL_BYTES);
    const buf = Buffer.alloc(stat.size - readFrom);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, readFrom + done);
      if (n === 0) break;
      done += n;
    }
    const bytes = buf.subarray(0, done);
    const torn = bytes.length > 0 && bytes[bytes.length - 1] !== NEWLINE;
    let end = bytes.lastIndexOf(NEWLINE);
    const lines: string[] = [];
    // The bytes after the last newline, newest of all, when they are a whole line's worth.
    if (torn && (end >= 0 || readFrom === 0)) lines.push(bytes.toString('utf8', end + 1));
    while (end > 0 && lines.length < MAX_TAIL_LINES) {
      const start = bytes.lastIndexOf(NEWLINE, end - 1) + 1;
      // A line cut by the read window (start 0 of a window not at the file's start) is not whole.
      if (start === 0 && readFrom > 0) break;
      lines.push(bytes.toString('utf8', start, end));
      end = start - 1;
    }
    return { ...headOf(lines), torn };
  } finally {
    closeSync(fd);
  }
}

/** The tail of a gzip-compressed rotated file: decompressed as a stream, keeping the last lines only. */
export async function gzipFileTail(file: string): Promise<FileTail> {
  const recent: string[] = [];
  let rest = '';
  const gunzip = createReadStream(file).pipe(createGunzip());
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      const text = rest + chunk.toString('utf8');
      const parts = text.split('\n');
      rest = parts.pop() ?? '';
      for (const p of parts.slice(-16)) {
        recent.push(p);
        if (recent.length > 16) recent.shift();
      }
    }
  } catch (err) {
    // A member cut short (compression interrupted by a crash): what came out is still good.
    const code = (err as { code?: string }).code;
    if (code !== 'Z_BUF_ERROR' && code !== 'Z_DATA_ERROR') throw err;
  }
  if (rest.length > 0) recent.push(rest);
  return { ...headOf(recent.reverse()), torn: rest.length > 0 };
}

/** The newest-first lines' first chained record; lines that do not parse (torn, damaged) are passed over. */
function headOf(newestFirst: readonly string[]): Omit<FileTail, 'torn'> {
  for (const line of newestFirst) {
    if (line.length === 0 || line.charCodeAt(0) !== 0x7b) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue; // a damaged line: look further back
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) continue;
    const record = value as Record<string, unknown>;
    if (isChained(record)) return { head: { seq: record.seq, hash: record.hash }, unchained: false };
    return { head: null, unchained: true };
  }
  return { head: null, unchained: false };
}
