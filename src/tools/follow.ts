/**
 * Following a trail file as it grows, across rotation, the way `tail -F` does: poll the name; when it
 * names another file (logrotate or built-in rotation renamed ours and a new one was created), finish
 * the old file to its end, then reopen by name and read the new one from its start; when the file got
 * shorter (truncated in place, `copytruncate`), start again at 0. Polling, not fs.watch: it behaves
 * the same on every filesystem, including the network ones logs end up on.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';

const NEWLINE = 0x0a;

export interface FollowOptions {
  /** Byte offset to start at in the file as it is now (the end of what was already shown). */
  readonly startAt: number;
  readonly pollMs: number;
  readonly signal: AbortSignal;
  /** Each complete line (without the newline), with the byte offset of its start in the file. */
  onLine(text: string, offset: number): void | Promise<void>;
  /** The old file ended with an incomplete line when it was rotated away (a torn record). */
  onTorn?(file: string): void;
  /** The file was rotated or truncated (for a notice on stderr). */
  onReopen?(why: 'rotated' | 'truncated'): void;
}

interface OpenFile {
  readonly fd: number;
  readonly dev: number;
  readonly ino: number;
  pos: number;
  /** Bytes after the last newline: a record still being written. */
  rest: Buffer | null;
}

/** Follows `file` until `signal` aborts. A file that does not exist yet is waited for. */
export async function followFile(file: string, opts: FollowOptions): Promise<void> {
  let current = tryOpen(file, opts.startAt);
  const buf = Buffer.alloc(256 * 1024);
  try {
    while (!opts.signal.aborted) {
      if (current) await drain(current, buf, opts);
      const now = statOrNull(file);
      if (current && now && (now.ino !== current.ino || now.dev !== current.dev)) {
        // Rotated: whatever was appended to the old file before the writer reopened is still ours.
        await drain(current, buf, opts);
        if (current.rest && current.rest.length > 0) opts.onTorn?.(file);
        closeSync(current.fd);
        current = tryOpen(file, 0);
        opts.onReopen?.('rotated');
        continue;
      }
      if (current && now && now.size < current.pos) {
        current.pos = 0;
        current.rest = null;
        opts.onReopen?.('truncated');
        continue;
      }
      if (!current && now) {
        current = tryOpen(file, 0);
        continue;
      }
      await sleep(opts.pollMs, opts.signal);
    }
  } finally {
    if (current) closeSync(current.fd);
  }
}

function tryOpen(file: string, startAt: number): OpenFile | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const st = fstatSync(fd);
  return { fd, dev: st.dev, ino: st.ino, pos: Math.min(startAt, st.size), rest: null };
}

/** Reads from the current position to the end of the file, handing out complete lines. */
async function drain(f: OpenFile, buf: Buffer, opts: FollowOptions): Promise<void> {
  for (;;) {
    const n = readSync(f.fd, buf, 0, buf.length, f.pos);
    if (n === 0) return;
    // Where `chunk` starts in the file: the carried partial line comes before the bytes just read.
    const chunkAt = f.pos - (f.rest?.length ?? 0);
    f.pos += n;
    let chunk = buf.subarray(0, n);
    if (f.rest) chunk = Buffer.concat([f.rest, chunk]);
    let start = 0;
    for (let nl = chunk.indexOf(NEWLINE, start); nl !== -1; nl = chunk.indexOf(NEWLINE, start)) {
      const end = nl > start && chunk[nl - 1] === 0x0d ? nl - 1 : nl;
      await opts.onLine(chunk.toString('utf8', start, end), chunkAt + start);
      start = nl + 1;
    }
    // Copy: `buf` is reused for the next read.
    f.rest = start < chunk.length ? Buffer.from(chunk.subarray(start)) : null;
  }
}

function statOrNull(file: string): { ino: number; dev: number; size: number } | null {
  try {
    return statSync(file);
  } catch (err) {
    // Between the rename and the new file's creation the name points nowhere: keep reading the old one.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
