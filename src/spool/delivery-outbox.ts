import { access, mkdir, open, opendir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeTime } from 'ulid';
import { DELIVERY_EVENT_TYPES, type DeliveryEventType } from './delivery-event.js';

/**
 * The delivery-event outbox on disk (`<spool.dir>/events/`): one file per event and endpoint, named
 * `<event id>.<type>.<endpoint key>.json`, holding exactly the bytes POSTed (and signed). A file is
 * written to `<name>.tmp`, fsynced, renamed into place and the folder fsynced before `write` returns,
 * so an event the caller was told about survives a crash; it is removed after the endpoint's 2xx.
 * A `.tmp` file found at start-up belongs to a write that never returned: removed.
 */

/** One pending event for one endpoint, as its file name tells it. */
export interface OutboxEntry {
  /** The file name. */
  readonly name: string;
  readonly id: string;
  readonly type: DeliveryEventType;
  /** Which endpoint it is for (deliveryEndpointKey). */
  readonly key: string;
  /** When the event was made (the time in its ULID), epoch ms. */
  readonly createdAt: number;
}

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const KEY = /^[0-9a-f]{16}$/;
const TMP = '.tmp';

export function isEventId(id: string): boolean {
  return ULID.test(id);
}

/** The entry a file name stands for; null for anything else in the folder. */
function entryOf(name: string): OutboxEntry | null {
  const parts = name.split('.');
  if (parts.length !== 4 || parts[3] !== 'json') return null;
  const [id, type, key] = parts as [string, string, string];
  if (!isEventId(id) || !KEY.test(key) || !(DELIVERY_EVENT_TYPES as readonly string[]).includes(type)) return null;
  return { name, id, type: type as DeliveryEventType, key, createdAt: decodeTime(id) };
}

export class DeliveryOutbox {
  readonly dir: string;
  #made: Promise<unknown> | null = null;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Creates the folder; removes the `.tmp` leftovers of writes a crash cut short. */
  async prepare(): Promise<void> {
    await this.#mkdir();
    const leftovers: string[] = [];
    for await (const e of await opendir(this.dir)) if (e.isFile() && e.name.endsWith(TMP)) leftovers.push(e.name);
    await Promise.all(leftovers.map((name) => unlink(join(this.dir, name)).catch(() => undefined)));
  }

  /**
   * Writes `body` once for each endpoint key, durably. Returns the entries written now; a file that
   * already exists (the same event emitted again after a crash) is left as it is and not returned.
   */
  async write(id: string, type: DeliveryEventType, keys: readonly string[], body: Buffer): Promise<OutboxEntry[]> {
    const written: OutboxEntry[] = [];
    // Events may be emitted before start(): the folder is made on first use either way.
    await this.#mkdir();
    for (const key of keys) {
      const name = `${id}.${type}.${key}.json`;
      const path = join(this.dir, name);
      if (await exists(path)) continue;
      const file = await open(`${path}${TMP}`, 'w');
      try {
        await file.writeFile(body);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(`${path}${TMP}`, path);
      written.push(entryOf(name)!);
    }
    if (written.length > 0) await syncDir(this.dir);
    return written;
  }

  /** The event's bytes; null when the file is gone (sent and removed meanwhile). */
  async read(name: string): Promise<Buffer | null> {
    try {
      return await readFile(join(this.dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /**
   * Removes the file; true when this call removed it. Not fsynced: a removal a crash undoes only
   * sends the event once more, which at-least-once allows.
   */
  async remove(name: string): Promise<boolean> {
    try {
      await unlink(join(this.dir, name));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  #mkdir(): Promise<unknown> {
    this.#made ??= mkdir(this.dir, { recursive: true }).catch((err: unknown) => {
      this.#made = null;
      throw err;
    });
    return this.#made;
  }

  /** Every entry in the folder, streamed (the folder may hold many): nothing is listed in memory at once. */
  async *entries(): AsyncGenerator<OutboxEntry> {
    for await (const e of await opendir(this.dir)) {
      const entry = e.isFile() ? entryOf(e.name) : null;
      if (entry !== null) yield entry;
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** fsync(2) on the folder, so the renames in it survive a power loss. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
