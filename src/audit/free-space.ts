import { statfsSync } from 'node:fs';

/** Free bytes for an unprivileged writer on the filesystem holding `dir`; throws when it cannot tell. */
export type FreeSpaceProbe = (dir: string) => number;

/** statfs(2): available blocks (`bavail`, not `bfree`: the root reserve is not ours) times their size. */
export const statfsProbe: FreeSpaceProbe = (dir) => {
  const st = statfsSync(dir);
  return Number(st.bavail) * Number(st.bsize);
};

/** Look again at least this often while there is plenty of room (ms)... */
const RECHECK_MS = 1_000;
/** ...and at most this often while below the reserve, when every message asks. */
const LOW_RECHECK_MS = 250;

/**
 * Whether the filesystem holding the trail still has more than `reserve` bytes free for an
 * unprivileged writer (statfs `bavail`). A full disk is the usual reason a trail stops being
 * writable; seen beforehand, the relay refuses messages *before* relaying them, instead of finding
 * out at the record of a message the upstream already accepted. The reserve still holds the records
 * of those refusals. One statfs(2) a second while there is room, sooner once the bytes written since
 * could have used up half the margin: no syscall per message. The spool's folder has a guard of its
 * own (`spool.minFreeSpace`). `probe` is statfs; tests give one that reports a full disk.
 */
export class FreeSpaceGuard {
  #dir: string;
  #reserve: number;
  #now: () => number;
  #probe: FreeSpaceProbe;
  #available = Number.POSITIVE_INFINITY;
  #checkedAt = Number.NEGATIVE_INFINITY;
  #writtenSince = 0;

  constructor(dir: string, reserve: number, now: () => number = Date.now, probe: FreeSpaceProbe = statfsProbe) {
    this.#dir = dir;
    this.#reserve = reserve;
    this.#now = now;
    this.#probe = probe;
  }

  /** True while more than the reserve is free (or the filesystem cannot tell). */
  hasRoom(): boolean {
    if (this.#reserve <= 0) return true;
    const now = this.#now();
    const margin = this.#available - this.#writtenSince - this.#reserve;
    const stale =
      margin > 0 ? now - this.#checkedAt >= RECHECK_MS || this.#writtenSince * 2 >= this.#available - this.#reserve : now - this.#checkedAt >= LOW_RECHECK_MS;
    if (stale) this.#look(now);
    return this.#available - this.#writtenSince > this.#reserve;
  }

  /** Bytes just written (to the trail, or the spool). */
  wrote(bytes: number): void {
    this.#writtenSince += bytes;
  }

  /** Free bytes at the last look (for the log), or null when unknown. */
  get available(): number | null {
    return Number.isFinite(this.#available) ? this.#available : null;
  }

  #look(now: number): void {
    this.#checkedAt = now;
    this.#writtenSince = 0;
    try {
      this.#available = this.#probe(this.#dir);
    } catch {
      // A filesystem that cannot say (or a vanished folder, which the next write reports): no guess.
      this.#available = Number.POSITIVE_INFINITY;
    }
  }
}
