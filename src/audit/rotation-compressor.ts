import { createReadStream, createWriteStream, renameSync, rmSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { PARTIAL_SUFFIX, type RotatedFiles } from './rotation.js';

/**
 * Background housekeeping of rotated files, one job at a time, off the relay path: gzip a rotated
 * file (to `<name>.gz.partial`, then renamed to `<name>.gz`, then the plain file removed: a crash at
 * any point leaves either the plain file or the complete `.gz`), then delete generations beyond
 * `keep`. Pruning runs in the same queue as compression, so a file is never deleted under the gzip
 * that reads it. The current trail file is never handed here.
 */
export class RotationCompressor {
  #files: RotatedFiles;
  #keep: number;
  #compress: boolean;
  #onError: (err: unknown, file: string) => void;
  #queue: Promise<void> = Promise.resolve();
  #pending = 0;

  constructor(files: RotatedFiles, opts: { keep: number; compress: boolean; onError: (err: unknown, file: string) => void }) {
    this.#files = files;
    this.#keep = opts.keep;
    this.#compress = opts.compress;
    this.#onError = opts.onError;
  }

  /** Jobs queued or running. */
  get pending(): number {
    return this.#pending;
  }

  /** A file was just rotated: compress it (when configured) and prune. */
  rotated(file: string): void {
    this.#enqueue(file, async () => {
      if (this.#compress) await gzipFile(file);
      this.#files.prune(this.#keep);
    });
  }

  /**
   * At start-up: finish what a crash interrupted. Partial archives are removed and their plain
   * files compressed again; plain rotated files are compressed; old generations pruned.
   */
  recover(): void {
    for (const g of this.#files.list()) {
      if (g.partial) rmSync(g.partial, { force: true });
      if (g.plain && g.gz) rmSync(g.plain, { force: true });
      else if (g.plain && this.#compress) {
        const plain = g.plain;
        this.#enqueue(plain, () => gzipFile(plain));
      }
    }
    this.#enqueue(this.#files.file, async () => void this.#files.prune(this.#keep));
  }

  /** Resolves when every queued job has finished. */
  async idle(): Promise<void> {
    while (this.#pending > 0) await this.#queue;
  }

  #enqueue(file: string, job: () => Promise<void>): void {
    this.#pending += 1;
    this.#queue = this.#queue
      .then(job)
      .catch((err: unknown) => this.#onError(err, file))
      .finally(() => {
        this.#pending -= 1;
      });
  }
}

/** `flush`: the archive is on disk before the plain file it replaces is removed. */
async function gzipFile(file: string): Promise<void> {
  const partial = `${file}${PARTIAL_SUFFIX}`;
  try {
    await pipeline(createReadStream(file), createGzip(), createWriteStream(partial, { mode: 0o640, flush: true }));
  } catch (err) {
    rmSync(partial, { force: true });
    throw err;
  }
  renameSync(partial, `${file}.gz`);
  rmSync(file, { force: true });
}
