import { readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Built-in rotation of the trail (`audit.rotate`): when and under which names.
 *
 * A rotated file is named after the moment it was closed, in UTC:
 * `audit.log.2026-11-25T101502.123Z`, then `audit.log.2026-11-25T101502.123Z.gz` once compressed.
 * Names never change after rotation (no `.1` → `.2` shifting), so a file being compressed is never
 * renamed under the compressor, and the names sort in chain order: `mailtrail verify audit.log.*
 * audit.log` checks the whole retained trail. Two rotations in the same millisecond get consecutive
 * milliseconds, so names stay unique and ordered.
 */

export interface RotateConfig {
  /** Rotate before a record would take the file past this many bytes; null = no size limit. */
  readonly size: number | null;
  /** Rotate at the first record after midnight UTC. */
  readonly daily: boolean;
  /** Rotated files kept; older ones are deleted. */
  readonly keep: number;
  /** gzip rotated files in the background (never the current file). */
  readonly compress: boolean;
}

const STAMP = /^(\d{4}-\d{2}-\d{2}T\d{6}\.\d{3}Z)(\.gz|\.gz\.partial)?$/;

/** Suffix of a compression still in progress (or cut short by a crash: deleted at start-up). */
export const PARTIAL_SUFFIX = '.gz.partial';

export function stampOf(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-11-25T10:15:02.123Z
  return `${iso.slice(0, 13)}${iso.slice(14, 16)}${iso.slice(17)}`;
}

function msOf(stamp: string): number {
  return Date.parse(`${stamp.slice(0, 13)}:${stamp.slice(13, 15)}:${stamp.slice(15)}`);
}

/** The UTC day of a time, for daily rotation. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** A rotated generation: one stamp, and the files that hold it (plain, compressed, partial). */
export interface Generation {
  readonly stamp: string;
  readonly plain: string | null;
  readonly gz: string | null;
  readonly partial: string | null;
}

/** The rotated files beside a trail file: listing, naming, pruning. */
export class RotatedFiles {
  readonly file: string;
  #lastMs = 0;

  constructor(file: string) {
    this.file = file;
    for (const g of this.list()) this.#lastMs = Math.max(this.#lastMs, msOf(g.stamp));
  }

  /** A new, unused name for the current file, later than every earlier one. */
  nextName(now: number = Date.now()): string {
    this.#lastMs = Math.max(now, this.#lastMs + 1);
    return `${this.file}.${stampOf(this.#lastMs)}`;
  }

  /** Every rotated generation, oldest first. */
  list(): Generation[] {
    const dir = dirname(this.file);
    const prefix = `${basename(this.file)}.`;
    const byStamp = new Map<string, { plain: string | null; gz: string | null; partial: string | null }>();
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    for (const name of names) {
      if (!name.startsWith(prefix)) continue;
      const m = STAMP.exec(name.slice(prefix.length));
      if (!m) continue;
      const stamp = m[1]!;
      const entry = byStamp.get(stamp) ?? { plain: null, gz: null, partial: null };
      const path = join(dir, name);
      if (m[2] === '.gz') entry.gz = path;
      else if (m[2] === PARTIAL_SUFFIX) entry.partial = path;
      else entry.plain = path;
      byStamp.set(stamp, entry);
    }
    return [...byStamp.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([stamp, e]) => ({ stamp, ...e }));
  }

  /** The file holding the newest rotated generation (compressed when compression finished). */
  newest(): string | null {
    const g = this.list().at(-1);
    return g ? (g.gz ?? g.plain) : null;
  }

  /** Deletes every generation beyond the newest `keep`. Returns the files deleted. */
  prune(keep: number): string[] {
    const generations = this.list();
    const deleted: string[] = [];
    for (const g of generations.slice(0, Math.max(0, generations.length - keep))) {
      for (const path of [g.plain, g.gz, g.partial]) {
        if (path === null) continue;
        rmSync(path, { force: true });
        deleted.push(path);
      }
    }
    return deleted;
  }
}
