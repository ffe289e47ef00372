/**
 * The records a follower missed because the trail rotated more than once between two of its polls.
 *
 * `tail -F` loses them: when the name moved on twice, the middle file was never opened. The chain
 * makes the loss visible (`seq` is gap-free across files and restarts), and the rotated files beside
 * the trail still hold what was skipped, so `tail -f` reads the gap back from them, newest file first
 * until one starts at or before the gap, then forwards in chain order.
 */
import { withRotated } from './trail-files.js';
import { readTrail, ReadProblems, type TrailEntry } from './trail-reader.js';

/**
 * The records with `after < seq < before` from the rotated files of `file` (not `file` itself), in
 * order; fewer than `before - after - 1` when retention already deleted some. Streams: a follower
 * that was stopped for an hour may have a large gap to read back.
 */
export async function* missedRecords(file: string, after: number, before: number): AsyncGenerator<TrailEntry> {
  for (const rotated of await filesCovering(file, after)) {
    for await (const entry of readRotated(rotated)) {
      const seq = entry.record.seq;
      if (typeof seq !== 'number' || seq <= after) continue;
      if (seq >= before) return;
      yield entry;
    }
  }
}

/** The newest rotated files back to the first one that starts at or before `after + 1`, oldest first. */
async function filesCovering(file: string, after: number): Promise<string[]> {
  const rotated = withRotated(file).filter((f) => f !== file);
  const needed: string[] = [];
  for (let i = rotated.length - 1; i >= 0; i--) {
    needed.unshift(rotated[i]!);
    const first = await firstSeq(rotated[i]!);
    if (first !== null && first <= after + 1) break;
  }
  return needed;
}

/** The `seq` of the first record of a file, or null when it has none (no chain, empty file). */
async function firstSeq(file: string): Promise<number | null> {
  for await (const entry of readRotated(file)) {
    return typeof entry.record.seq === 'number' ? entry.record.seq : null;
  }
  return null;
}

/**
 * A rotated file's records. Built-in rotation compresses in the background and then removes the
 * plain file: when it vanished between the listing and the open, its `.gz` holds the same records.
 * (ENOENT comes from the open, before any record, so nothing is read twice.)
 */
async function* readRotated(file: string): AsyncGenerator<TrailEntry> {
  const problems = new ReadProblems();
  try {
    yield* readTrail([file], { problems });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    if (file.endsWith('.gz')) return; // deleted by retention meanwhile: the caller reports the shortfall
    yield* readRotated(`${file}.gz`);
  }
}
