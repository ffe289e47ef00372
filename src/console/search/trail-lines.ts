/**
 * Reading single lines of the trail where the index says they are, across rotation. The index names
 * a file by the id of its first record (its `head`): rotation renames files and compresses them, but
 * never changes what they hold, so a byte offset into a file's content stays true whether the file is
 * now `audit.log`, `audit.log.1` or `audit.log.2.gz` (offsets in a .gz file are in its uncompressed
 * content, which is then read from its start).
 */
import { createReadStream, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { withRotated } from '../../tools/trail-files.js';
import { isGzipFile, readTrail, ReadProblems } from '../../tools/trail-reader.js';

const NEWLINE = 0x0a;
/** A line longer than this is not a record mailtrail wrote. */
const MAX_LINE = 4 * 1024 * 1024;

interface Known {
  readonly ino: number;
  readonly size: number;
  readonly head: string | null;
}

export class TrailLines {
  readonly #trail: string;
  readonly #heads = new Map<string, Known>();

  constructor(trail: string) {
    this.#trail = trail;
  }

  /** The trail's files, oldest first, each with its head (null for a file without a record). */
  async files(): Promise<{ path: string; head: string | null }[]> {
    const out: { path: string; head: string | null }[] = [];
    for (const path of withRotated(this.#trail)) {
      const head = await this.headOf(path).catch(() => null);
      out.push({ path, head });
    }
    return out;
  }

  /** The id of the first record of `path` (cached while the file is the same and has not shrunk). */
  async headOf(path: string): Promise<string | null> {
    const st = statSync(path);
    const known = this.#heads.get(path);
    if (known && known.ino === st.ino && st.size >= known.size && known.head !== null) return known.head;
    let head: string | null = null;
    for await (const entry of readTrail([path], { problems: new ReadProblems() })) {
      head = typeof entry.record.id === 'string' ? entry.record.id : null;
      break;
    }
    this.#heads.set(path, { ino: st.ino, size: st.size, head });
    return head;
  }

  /** The path of the file whose head is `head`, or null when it is gone (retention deleted it). */
  async pathOf(head: string): Promise<string | null> {
    for (const f of await this.files()) if (f.head === head) return f.path;
    return null;
  }

  /**
   * The whole lines starting at `offsets` in `path` (without the newline); an offset at or past the
   * end of the content, or whose line has no newline yet, is left out.
   */
  async linesAt(path: string, offsets: readonly number[]): Promise<Map<number, string>> {
    const wanted = [...new Set(offsets)].sort((a, b) => a - b);
    return isGzipFile(path) ? linesFromStream(path, wanted) : linesFromFile(path, wanted);
  }
}

async function linesFromFile(path: string, offsets: readonly number[]): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const handle = await open(path, 'r');
  try {
    for (const offset of offsets) {
      let size = 16 * 1024;
      for (;;) {
        const buf = Buffer.alloc(size);
        const { bytesRead } = await handle.read(buf, 0, size, offset);
        const nl = buf.subarray(0, bytesRead).indexOf(NEWLINE);
        if (nl !== -1) {
          out.set(offset, buf.toString('utf8', 0, nl > 0 && buf[nl - 1] === 0x0d ? nl - 1 : nl));
          break;
        }
        if (bytesRead < size || size >= MAX_LINE) break;
        size *= 4;
      }
    }
  } finally {
    await handle.close();
  }
  return out;
}

/** One pass over the gunzipped content, keeping the lines that start at `offsets` (sorted). */
async function linesFromStream(path: string, offsets: readonly number[]): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const raw = createReadStream(path);
  const gunzip = raw.pipe(createGunzip());
  let pos = 0;
  let i = 0;
  let current: Buffer[] = [];
  let currentLength = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      let at = 0;
      while (i < offsets.length && at < chunk.length) {
        const offset = offsets[i]!;
        const start = Math.max(offset - pos, at);
        if (start >= chunk.length) break;
        const nl = chunk.indexOf(NEWLINE, start);
        const end = nl === -1 ? chunk.length : nl;
        current.push(chunk.subarray(start, end));
        currentLength += end - start;
        if (nl === -1 && currentLength < MAX_LINE) break;
        const line = Buffer.concat(current).toString('utf8');
        out.set(offset, line.endsWith('\r') ? line.slice(0, -1) : line);
        current = [];
        currentLength = 0;
        i += 1;
        at = end + 1;
      }
      pos += chunk.length;
      if (i >= offsets.length) break;
    }
  } catch (err) {
    // A .gz cut short (compression still running): the lines read so far are good.
    const code = (err as { code?: string }).code;
    if (code !== 'Z_BUF_ERROR' && code !== 'Z_DATA_ERROR') throw err;
  } finally {
    raw.destroy();
  }
  return out;
}
