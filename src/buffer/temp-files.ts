import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { chmod, lstat, mkdir, readdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Bytes the spill file may hold in its write queue before the writer must wait for 'drain'. Large
 * enough that a 64 KiB socket chunk does not pause the client on every write, small next to the
 * memory bound of a message.
 */
const SPILL_HIGH_WATER_MARK = 256 * 1024;

/** What `tempFilePath` names a spill file: nothing else in the data folder looks like this. */
const SPILL_FILE_NAME = /^mailtrail-[0-9a-f]{24}\.eml$/;

/** A fresh, unguessable name in `dir`: concurrent messages and processes never collide. */
export function tempFilePath(dir: string): string {
  return join(dir, `mailtrail-${randomBytes(12).toString('hex')}.eml`);
}

/** The folder of spill files: a folder of their own, so that clearing it can touch nothing else. */
export function spillDir(dataDir: string): string {
  return join(dataDir, 'spill');
}

export interface SpillSweep {
  /** The spill folder. */
  readonly dir: string;
  /** Spill files removed, and their bytes. */
  readonly removed: number;
  readonly bytes: number;
  /** Spill files that could not be removed (permissions), left where they are. */
  readonly failed: number;
}

/**
 * Creates the spill folder (0700: the files are whole messages) and removes the spill files an earlier
 * run left in it. A process that is killed (SIGKILL, the OOM killer, a power cut) never gets to remove
 * the file of a message it was receiving or relaying, and nothing else ever would. Only regular files
 * named like a spill file are touched; spill files in `dataDir` itself, where versions before the
 * folder wrote them, are removed too. A live process's spill files look exactly like a dead one's:
 * call this only while holding the data folder's lock (docs/design.md, "Spill files").
 */
export async function prepareSpillDir(dataDir: string): Promise<SpillSweep> {
  const dir = spillDir(dataDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // mkdir's mode is narrowed by the umask, and ignored for a folder that is already there.
  await chmod(dir, 0o700);
  let removed = 0;
  let bytes = 0;
  let failed = 0;
  for (const folder of [dir, dataDir]) {
    for (const name of await readdir(folder)) {
      if (!SPILL_FILE_NAME.test(name)) continue;
      const path = join(folder, name);
      try {
        const stat = await lstat(path);
        if (!stat.isFile()) continue;
        await unlink(path);
        removed += 1;
        bytes += stat.size;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') failed += 1;
      }
    }
  }
  return { dir, removed, bytes, failed };
}

/** Remove a file if it is there. Never throws: cleanup must not turn a result into a failure. */
export async function removeQuietly(path: string): Promise<void> {
  try {
    await rm(path, { force: true });
  } catch {
    // Already gone or not ours to remove; nothing useful to report to the caller.
  }
}

/**
 * A message body being written to a temp file. Opened exclusively (`wx`: never follows or reuses an
 * existing path) and readable only by this user (0o600: messages are private). The file is removed by
 * `discard()`, or by the owner of the finished message.
 */
export class SpillFile {
  readonly path: string;
  readonly #stream: WriteStream;
  #openFailed = false;

  /** `onError` is told about the first write or open failure; the file is then useless. */
  constructor(dir: string, onError: (error: Error) => void) {
    this.path = tempFilePath(dir);
    this.#stream = createWriteStream(this.path, {
      flags: 'wx',
      mode: 0o600,
      highWaterMark: SPILL_HIGH_WATER_MARK,
    });
    this.#stream.on('error', (error: NodeJS.ErrnoException) => {
      // A failed open created nothing of ours; with `wx` the path may even be someone else's file.
      if (error.syscall === 'open') this.#openFailed = true;
      onError(error);
    });
  }

  /** Queue a chunk. False when the queue is full: wait for `onceDrained` before writing more. */
  write(chunk: Buffer): boolean {
    return this.#stream.write(chunk);
  }

  /** Call `resume` once the write queue has room again (or the file was closed or discarded). */
  onceDrained(resume: () => void): void {
    const done = (): void => {
      this.#stream.off('drain', done);
      this.#stream.off('close', done);
      resume();
    };
    this.#stream.on('drain', done);
    this.#stream.on('close', done);
  }

  /**
   * Flush and close; resolves once the descriptor is closed, so a reader of `path` sees every byte.
   * Rejects if a write fails; the file is then still there for `discard()`.
   */
  close(): Promise<void> {
    const stream = this.#stream;
    return new Promise((resolve, reject) => {
      const onError = (error: Error): void => {
        stream.off('close', onClose);
        reject(error);
      };
      const onClose = (): void => {
        stream.off('error', onError);
        resolve();
      };
      stream.once('error', onError);
      stream.once('close', onClose);
      stream.end();
    });
  }

  /** Stop writing and remove the file. Idempotent, never throws. */
  async discard(): Promise<void> {
    if (!this.#stream.closed) {
      const closed = new Promise<void>((resolve) => this.#stream.once('close', () => resolve()));
      this.#stream.destroy();
      await closed;
    }
    if (!this.#openFailed) await removeQuietly(this.path);
  }
}
