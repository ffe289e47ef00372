/**
 * The file operations the spool's durability rests on (docs/spool.md, "Durability"): a file written
 * and flushed before it is renamed into place, and the folder flushed after the rename, so that
 * after a crash or a power cut a file is either there whole or not there at all.
 *
 * A folder's fsync is shared: renames that ask while one is running wait for the next, which
 * starts when the running one ends. So under load one fsync of `meta/` commits many messages
 * (group commit), and each caller still gets an fsync that started after its own rename.
 */
import { constants } from 'node:fs';
import { copyFile, open, rename, unlink, type FileHandle } from 'node:fs/promises';

/**
 * The calls whose failures the spool must survive; node:fs by default. Tests pass failing ones
 * (a full disk, a failed fsync), as for the audit writer.
 */
export interface SpoolFileOps {
  /** fsync(2) of a file or a folder. */
  fsync(handle: FileHandle): Promise<void>;
  /** rename(2). */
  rename(from: string, to: string): Promise<void>;
}

export const NODE_SPOOL_FILE_OPS: SpoolFileOps = {
  fsync: (handle) => handle.sync(),
  rename: (from, to) => rename(from, to),
};

/** Messages are private: owner only. */
export const FILE_MODE = 0o600;

/**
 * Writes `data` to a new file at `path` (exclusively: never over an existing one) and flushes it to
 * disk before resolving. On failure the file may be left, partly written: the caller removes it.
 */
export async function writeDurably(path: string, data: Buffer | string, ops: SpoolFileOps): Promise<void> {
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
  try {
    await handle.writeFile(data);
    await ops.fsync(handle);
  } finally {
    await handle.close();
  }
}

/**
 * Copies the file at `from` (a spilled message body) to a new file at `path` and flushes it. The
 * kernel copies (copy_file_range), so a large body never passes through the process's memory.
 */
export async function copyDurably(from: string, path: string, ops: SpoolFileOps): Promise<void> {
  await copyFile(from, path, constants.COPYFILE_EXCL);
  const handle = await open(path, 'r+');
  try {
    await handle.chmod(FILE_MODE);
    await ops.fsync(handle);
  } finally {
    await handle.close();
  }
}

/** Removes a file; true when it was there. Other errors are thrown. */
export async function removeFile(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** A folder whose entries (renames, removals) are made durable with a shared fsync. */
export class FolderSync {
  readonly dir: string;
  readonly #handle: FileHandle;
  readonly #ops: SpoolFileOps;
  #running: Promise<void> | null = null;
  #next: Promise<void> | null = null;

  private constructor(dir: string, handle: FileHandle, ops: SpoolFileOps) {
    this.dir = dir;
    this.#handle = handle;
    this.#ops = ops;
  }

  /** Opens the folder (which must exist) for fsync. */
  static async open(dir: string, ops: SpoolFileOps): Promise<FolderSync> {
    return new FolderSync(dir, await open(dir, constants.O_RDONLY | constants.O_DIRECTORY), ops);
  }

  /** Resolves once an fsync of the folder that started after this call has ended; rejects when it failed. */
  sync(): Promise<void> {
    if (this.#running === null) return this.#start();
    // The running fsync may have started before the caller's rename: wait for the next one, shared by
    // every caller that comes while this one runs.
    this.#next ??= this.#running.then(
      () => this.#startNext(),
      () => this.#startNext(),
    );
    return this.#next;
  }

  /** Closes the folder's descriptor once the fsyncs in flight are done. */
  async close(): Promise<void> {
    await Promise.allSettled([this.#running, this.#next]);
    await this.#handle.close();
  }

  #startNext(): Promise<void> {
    this.#next = null;
    return this.#start();
  }

  #start(): Promise<void> {
    const run = this.#ops.fsync(this.#handle).finally(() => {
      if (this.#running === run) this.#running = null;
    });
    this.#running = run;
    return run;
  }
}
