/**
 * The spool folder read without its lock (docs/spool.md, "Operating the queue"): what `mailtrail
 * queue list` and `show` read when the relay is not running. Read-only: nothing is removed, moved or
 * rewritten (that is the next start's recovery). A meta is replaced by a rename, so a reader sees the
 * old one or the new one, never half of one; a meta that cannot be read is left out.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SpoolReader } from './queue-admin.js';
import { parseSpoolEntry, type SpoolEntry, type SpoolState } from './spool-entry.js';

const META = /^([0-9A-HJKMNP-TV-Z]{26})\.json$/;

export class SpoolFolder implements SpoolReader {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Every readable entry's id and state, in id (acceptance) order; none when the folder does not exist. */
  async *summaries(): AsyncGenerator<{ readonly id: string; readonly state: SpoolState }> {
    let names: string[];
    try {
      names = await readdir(join(this.dir, 'meta'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names.sort()) {
      const id = META.exec(name)?.[1];
      if (id === undefined) continue;
      const entry = await this.get(id);
      if (entry !== null) yield { id, state: entry.state };
    }
  }

  async get(id: string): Promise<SpoolEntry | null> {
    if (!META.test(`${id}.json`)) return null;
    let text: string;
    try {
      text = await readFile(join(this.dir, 'meta', `${id}.json`), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const parsed = parseSpoolEntry(text);
    return 'entry' in parsed ? parsed.entry : null;
  }
}
