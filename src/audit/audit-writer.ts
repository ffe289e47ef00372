import { closeSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../logger.js';
import { HashChain, type ChainFields, type ChainHead, type SealedRecord } from './chain.js';
import { gzipFileTail, plainFileTail, type FileTail } from './chain-resume.js';
import { RotatedFiles, utcDay, type RotateConfig } from './rotation.js';
import { RotationCompressor } from './rotation-compressor.js';
import { FreeSpaceGuard } from './free-space.js';
import { ERR } from '../error-codes.js';

/** What AuditWriter.open() found in the trail it continues. */
export interface AuditOpenState {
  /** The file ended in the middle of a record (a crash mid-write): the next starts on a new line. */
  readonly tornTail: boolean;
  /** The file whose last record has no seq/prev/hash (audit.chain was off): a new chain starts. */
  readonly unchainedFile: string | null;
}

export interface AuditWriterOptions {
  /** Path of the trail; "-" = standard output. */
  readonly file: string;
  readonly fsync: boolean;
  /** Add seq / prev / hash to every record (chain.ts). */
  readonly chain: boolean;
  /** Built-in rotation; null = none (SIGHUP reopen still works for logrotate). */
  readonly rotate: RotateConfig | null;
  readonly log: Logger;
  /** Free space to keep on the trail's filesystem (free-space.ts); 0 or absent = no check. */
  readonly minFreeSpace?: number;
  /** The calls whose failures the writer must survive; node:fs by default (tests pass failing ones). */
  readonly fileOps?: TrailFileOps;
}

/** The system calls that put records in the file, as the writer uses them. */
export interface TrailFileOps {
  /** write(2): the number of bytes written, possibly fewer than asked; throws on failure. */
  write(fd: number, data: Buffer, offset: number, length: number): number;
  /** fsync(2). */
  fsync(fd: number): void;
  /** ftruncate(2). */
  truncate(fd: number, length: number): void;
}

const NODE_FILE_OPS: TrailFileOps = {
  write: (fd, data, offset, length) => writeSync(fd, data, offset, length),
  fsync: (fd) => fsyncSync(fd),
  truncate: (fd, length) => ftruncateSync(fd, length),
};

const NEWLINE = Buffer.from('\n');

/**
 * The audit trail's only writer: one JSON line per record, one synchronous write(2) each, so a record
 * the client's reply depends on is in the file (the kernel's page cache) before the reply leaves. With
 * `fsync` each record also survives a power loss, at one fsync per record.
 *
 * Why not a pino destination: SonicBoom in sync mode reports a failed write as an 'error' event and
 * keeps the bytes queued for the next write, so the caller cannot tell that *this* record is missing.
 * Here a failed write throws, and the relay answers 451 instead of accepting mail it cannot record.
 *
 * Whatever fails (write(2), a short write, fsync(2), the cut after it), the file is left ending where
 * the chain stands, so the next record, or a restart reading the file's tail (chain-resume.ts),
 * continues the chain without a repeated or a missing seq (docs/audit-record.md#integrity):
 * - a record that failed is cut off again (ftruncate), and its seq is used by the next record;
 * - when the cut fails too and the whole record is in the file (at most its newline missing), it is a
 *   record of the trail: the chain goes on from it (the caller still hears of the failure, and the
 *   error says `recordKept`);
 * - when the cut fails and only a fragment is there, it is a torn line: the next record starts on a
 *   line of its own and reuses the seq (verify tolerates a torn line the chain goes on after).
 *
 * Everything happens synchronously between two records, rotation included: no record can land in
 * two files or in none, whatever the load.
 */
export class AuditWriter {
  readonly file: string;
  #atOpen: AuditOpenState = { tornTail: false, unchainedFile: null };
  #fd = -1;
  #fsync: boolean;
  #chain: HashChain | null;
  #rotate: RotateConfig | null;
  #rotated: RotatedFiles | null;
  #compressor: RotationCompressor | null;
  #log: Logger;
  #space: FreeSpaceGuard | null;
  #ops: TrailFileOps;
  /** Bytes in the current file: its size when opened plus every byte written since. */
  #size = 0;
  #regular = false;
  /** UTC day of the current file's records, for daily rotation; null while it is empty. */
  #fileDay: string | null = null;
  /** The file ends without a newline (a torn record): start the next record on a line of its own. */
  #needsNewline = false;

  private constructor(opts: AuditWriterOptions, head: ChainHead | null) {
    this.file = opts.file;
    this.#fsync = opts.fsync;
    this.#log = opts.log;
    this.#ops = opts.fileOps ?? NODE_FILE_OPS;
    this.#space = opts.file === '-' ? null : new FreeSpaceGuard(dirname(opts.file), opts.minFreeSpace ?? 0);
    this.#chain = opts.chain ? new HashChain(head ?? undefined) : null;
    const rotating = opts.rotate !== null && opts.file !== '-';
    this.#rotate = rotating ? opts.rotate : null;
    this.#rotated = rotating ? new RotatedFiles(opts.file) : null;
    this.#compressor =
      rotating && this.#rotated && opts.rotate
        ? new RotationCompressor(this.#rotated, {
            keep: opts.rotate.keep,
            compress: opts.rotate.compress,
            onError: (err, file) => this.#log.error({ err, file }, 'audit rotation housekeeping failed'),
          })
        : null;
  }

  /**
   * Opens the trail for appending. With the chain on, `seq` and `prev` continue from the last
   * complete record of the file, or, when the file is empty or new, of the newest rotated file
   * beside it (built-in rotation's names, or logrotate's `audit.log.1`, `audit.log-20261125.gz`).
   */
  static async open(opts: AuditWriterOptions): Promise<AuditWriter> {
    const resumed = opts.chain && opts.file !== '-' ? await resumeHead(opts.file) : { head: null, unchainedFile: null };
    const writer = new AuditWriter(opts, resumed.head);
    writer.#openFile();
    writer.#atOpen = { tornTail: writer.#needsNewline, unchainedFile: resumed.unchainedFile };
    writer.#compressor?.recover();
    return writer;
  }

  /** What open() found in the trail (App.start() reports it as start-up warnings). */
  get atOpen(): AuditOpenState {
    return this.#atOpen;
  }

  /** False when the trail's filesystem is below `minFreeSpace` (checked cheaply; see free-space.ts). */
  hasRoom(): boolean {
    return this.#space?.hasRoom() ?? true;
  }

  /** Free bytes on the trail's filesystem at the last look, or null when unknown. */
  get freeBytes(): number | null {
    return this.#space?.available ?? null;
  }

  /** The last record written (seq 0 before the first); null when the chain is off. */
  get head(): ChainHead | null {
    return this.#chain?.head ?? null;
  }

  /**
   * Appends one record (and with `fsync` flushes it to disk). Returns its chain fields (null with the
   * chain off). Throws when that failed; the record is then cut off again, or, when it cannot be and
   * it is whole in the file, kept as a record of the trail (the error has `recordKept: true`).
   */
  write(record: object): ChainFields | null {
    if (this.#fd < 0) throw Object.assign(new Error('Audit trail is closed'), { code: ERR.AUDIT_CLOSED });
    const sealed = this.#chain?.seal(record) ?? null;
    const data = Buffer.from(sealed ? sealed.line : JSON.stringify(record) + '\n', 'utf8');
    const now = Date.now();
    if (this.#rotationDue(data.length, now)) this.#rotateNow(now);
    if (this.#needsNewline) {
      this.#append(NEWLINE);
      this.#needsNewline = false;
    }
    const start = this.#size;
    try {
      this.#append(data);
      // fsync(2) fails on a pipe or a terminal (EINVAL): only a regular file has a disk to flush to.
      if (this.#fsync && this.#regular) this.#ops.fsync(this.#fd);
    } catch (err) {
      this.#failed(start, data.length, sealed, now, err);
    }
    this.#wrote(sealed, now);
    return sealed && { seq: sealed.seq, prev: sealed.prev, hash: sealed.hash };
  }

  /** Reopen the file by name (after logrotate moved it away). The chain continues. */
  reopen(): void {
    if (this.file === '-' || this.#fd < 0) return;
    const old = this.#fd;
    this.#openFile();
    closeSync(old);
    if (this.#needsNewline) {
      this.#log.warn({ file: this.file }, 'audit file ends with a torn record (a crash mid-write); continuing on a new line');
    }
  }

  /** Flushes and closes the file. Background compression may still run: await `idle()`. */
  close(): void {
    if (this.#fd === 1 || this.#fd < 0) {
      this.#fd = -1;
      return;
    }
    if (this.#regular) this.#ops.fsync(this.#fd);
    closeSync(this.#fd);
    this.#fd = -1;
  }

  /** Resolves when background compression and pruning of rotated files are done. */
  async idle(): Promise<void> {
    await this.#compressor?.idle();
  }

  #openFile(): void {
    if (this.file === '-') {
      this.#fd = 1;
      return;
    }
    mkdirSync(dirname(this.file), { recursive: true });
    // a+: appending, and reading back the last byte (was the last record torn?).
    const fd = openSync(this.file, 'a+', 0o640);
    const stat = fstatSync(fd);
    this.#fd = fd;
    this.#regular = stat.isFile();
    this.#size = this.#regular ? stat.size : 0;
    this.#fileDay = this.#size > 0 ? utcDay(stat.mtimeMs) : null;
    this.#needsNewline = this.#regular && this.#size > 0 && !endsWithNewline(fd, this.#size);
  }

  #rotationDue(bytes: number, now: number): boolean {
    const rotate = this.#rotate;
    if (!rotate || !this.#regular || this.#size === 0) return false;
    if (rotate.size !== null && this.#size + bytes > rotate.size) return true;
    return rotate.daily && this.#fileDay !== null && this.#fileDay !== utcDay(now);
  }

  /**
   * Rename the current file to its rotated name and start a new one. A failure here is logged and
   * the record goes to the current file: rotation never costs a record.
   */
  #rotateNow(now: number): void {
    const target = this.#rotated!.nextName(now);
    const old = this.#fd;
    try {
      renameSync(this.file, target);
    } catch (err) {
      this.#log.error({ err, file: this.file }, 'audit rotation failed; still writing to the current file');
      return;
    }
    try {
      this.#openFile();
    } catch (err) {
      // Could not create the new file: move the old one back and carry on with it.
      this.#log.error({ err, file: this.file }, 'audit rotation could not open a new file; still writing to the current file');
      renameSync(target, this.file);
      this.#fd = old;
      return;
    }
    try {
      this.#ops.fsync(old);
    } catch {
      // the data is in the page cache either way
    }
    closeSync(old);
    this.#compressor!.rotated(target);
  }

  /**
   * write(2) may write less than asked (a full disk mid-record, a signal): go on until all is written
   * or it throws. `#size` follows every byte that went in, so a failure knows what is in the file.
   */
  #append(data: Buffer): void {
    let offset = 0;
    while (offset < data.length) {
      const n = this.#ops.write(this.#fd, data, offset, data.length - offset);
      offset += n;
      this.#size += n;
    }
    this.#space?.wrote(data.length);
  }

  /** The record is in the file: the chain moves on to it. */
  #wrote(sealed: SealedRecord | null, now: number): void {
    if (this.#fileDay === null) this.#fileDay = utcDay(now);
    if (sealed) this.#chain?.commit(sealed);
  }

  /**
   * Writing the record that started at byte `start` failed (see the class comment): leave the file
   * ending where the chain stands, then throw `err`.
   */
  #failed(start: number, length: number, sealed: SealedRecord | null, now: number, err: unknown): never {
    const inFile = this.#size - start;
    if (inFile === 0 || this.#cutTo(start)) throw err;
    if (inFile >= length - 1) {
      // The whole record, at most its newline missing: it parses, so it is a record of the trail.
      this.#needsNewline = inFile < length;
      this.#wrote(sealed, now);
      throw Object.assign(asError(err), { recordKept: true });
    }
    // A fragment that does not parse: end its line before the next record, which reuses the seq.
    this.#needsNewline = true;
    throw err;
  }

  /** Cut the file back to `size` bytes; false when that is not possible (not a regular file, or it failed). */
  #cutTo(size: number): boolean {
    if (!this.#regular) return false;
    try {
      this.#ops.truncate(this.#fd, size);
    } catch {
      return false;
    }
    this.#size = size;
    return true;
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function endsWithNewline(fd: number, size: number): boolean {
  const last = Buffer.alloc(1);
  return readSync(fd, last, 0, 1, size - 1) === 1 && last[0] === 0x0a;
}

/**
 * The chain head to continue from (null = start a new chain at seq 1), and the file whose last record
 * has no chain fields (written with the chain off), if that is why a new chain starts.
 */
async function resumeHead(file: string): Promise<{ head: ChainHead | null; unchainedFile: string | null }> {
  const current = plainFileTail(file);
  if (current.head || current.unchained) return fromTail(current, file);
  // Built-in rotation's names sort by time; otherwise (logrotate) the most recently written file.
  const previous = new RotatedFiles(file).newest() ?? newestSibling(file);
  if (!previous) return { head: null, unchainedFile: null };
  return fromTail(isGzip(previous) ? await gzipFileTail(previous) : plainFileTail(previous), previous);
}

function fromTail(tail: FileTail, file: string): { head: ChainHead | null; unchainedFile: string | null } {
  return { head: tail.head, unchainedFile: tail.unchained ? file : null };
}

/**
 * The most recently modified rotated file beside the trail: `audit.log.<anything>` or
 * `audit.log-<anything>`, which covers built-in rotation and logrotate's numbered and dated names.
 */
function newestSibling(file: string): string | null {
  const dir = dirname(file);
  const base = basename(file);
  let best: { path: string; mtime: number } | null = null;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return null;
  }
  for (const name of names) {
    if (!(name.startsWith(`${base}.`) || name.startsWith(`${base}-`)) || name.endsWith('.partial')) continue;
    // `audit.log.w2` and its rotations are a worker's trail, another chain (workers/worker-config.ts).
    if (WORKER_TRAIL.test(name.slice(base.length))) continue;
    const path = join(dir, name);
    try {
      const st = statSync(path);
      if (st.isFile() && st.size > 0 && (!best || st.mtimeMs > best.mtime)) best = { path, mtime: st.mtimeMs };
    } catch {
      // vanished meanwhile (pruned)
    }
  }
  return best?.path ?? null;
}

/** What a worker's trail name adds to the configured one: `.w<N>`, then its rotations' suffixes. */
const WORKER_TRAIL = /^\.w\d+(?:$|[.-])/;

function isGzip(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(2);
    return readSync(fd, head, 0, 2, 0) === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    closeSync(fd);
  }
}
