/**
 * The spool on disk (docs/spool.md): durable acceptance, atomic meta updates, the durable "dot
 * pending" mark, removal at the end, recovery at start-up, and the index in memory.
 *
 *   <spool.dir>/tmp/<id>.eml, <id>.json   being written (anything here at start-up is a leftover)
 *   <spool.dir>/msg/<id>.eml              the message bytes as received (never changed)
 *   <spool.dir>/meta/<id>.json            the entry (spool-entry.ts); its presence is the commit point
 *   <spool.dir>/damaged/                  metas recovery could not use, kept for the operator
 *   <spool.dir>/spool.lock                the lock (a Unix socket, data-dir-lock.ts)
 *
 * Acceptance, after nullmailer: body to tmp/ and fsync; meta to tmp/ and fsync; rename the body into
 * msg/ and fsync msg/; rename the meta into meta/ and fsync meta/. Only then may the caller write
 * the acceptance record and answer 250. A meta update is a new file in tmp/, fsync, rename over
 * meta/<id>.json, fsync meta/. The end: the caller writes the end record, then remove() unlinks the
 * meta (fsync meta/), then the body.
 *
 * Every change of one entry waits for the previous change of that entry, so two callers never
 * rewrite one meta at once; different entries go on in parallel.
 */
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../logger.js';
import { DataDirLock, SPOOL_DIR } from '../data-dir-lock.js';
import { ERR } from '../error-codes.js';
import { FreeSpaceGuard, statfsProbe, type FreeSpaceProbe } from '../audit/free-space.js';
import { checkSpoolEntry, newSpoolEntry, parseSpoolEntry, serializeSpoolEntry, type NewSpoolEntry, type SpoolEntry } from './spool-entry.js';
import { copyDurably, FolderSync, NODE_SPOOL_FILE_OPS, removeFile, writeDurably, type SpoolFileOps } from './spool-files.js';
import { SpoolIndex, summaryOf, type SpoolCounts, type SpoolSummary } from './spool-index.js';

export type { SpoolCounts, SpoolSummary } from './spool-index.js';

const BODY = '.eml';
const META = '.json';
const ID_FILE = /^([0-9A-HJKMNP-TV-Z]{26})\.(eml|json)$/;

export interface SpoolStoreOptions {
  /** The spool folder (`spool.dir`); created if missing. */
  readonly dir: string;
  /** `spool.minFreeSpace`: below it hasRoom() is false (0 = no check). */
  readonly minFreeSpace: number;
  readonly log: Logger;
  /** Free bytes on the spool's filesystem; statfs by default (tests report a full disk). */
  readonly freeSpace?: FreeSpaceProbe;
  /** The calls durability rests on; node:fs by default (tests pass failing ones). */
  readonly fileOps?: Partial<SpoolFileOps>;
  /** The clock (ms); Date.now by default. */
  readonly now?: () => number;
}

/** What open() found and did: the leftovers of the process before, for the caller to act on and log. */
export interface SpoolRecovery {
  /** Entries in the spool after recovery. */
  readonly entries: number;
  /** Files left in tmp/ (writes a crash cut short), removed. */
  readonly tmpRemoved: number;
  /** Ids of bodies in msg/ without a committed meta: never acknowledged to a client, removed. */
  readonly orphanBodies: readonly string[];
  /** Ids of entries left `delivering` without a dot mark (nothing can have reached the upstream): queued again. */
  readonly requeued: readonly string[];
  /**
   * Entries whose final dot may have gone out without an answer (the dot mark was still set): the
   * upstream may have the message. Left as they are for the queue manager to settle (hold or resend,
   * `spool.unknownOutcome`); also listed by unknownOutcomes() until settled.
   */
  readonly unknownOutcomes: readonly SpoolSummary[];
  /**
   * Entries committed whose acceptance record is not known to be in the trail (a crash between the
   * commit and the record): they are delivered anyway, and each should get a `spool` record
   * `recovered` (then markRecorded()).
   */
  readonly unrecorded: readonly SpoolEntry[];
  /** Metas that could not be used (unreadable, or without their body), moved to damaged/ with why. */
  readonly damaged: readonly { readonly name: string; readonly problem: string }[];
  /** How long recovery took (ms). */
  readonly ms: number;
}

export interface SpoolOpened {
  readonly store: SpoolStore;
  readonly recovery: SpoolRecovery;
  /** Why the folder could not be locked against a second process (no sockets there), or null when it is. */
  readonly unlocked: string | null;
}

/** What accept() takes: the new entry's facts and the body, in memory or in a (spill) file. */
export interface SpoolAcceptInput extends Omit<NewSpoolEntry, 'now'> {
  readonly body: Buffer | { readonly path: string };
}

/** An accept() that did not commit, or an id the spool does not have. `code`: ESPOOLWRITE, ESPOOLENTRY. */
export class SpoolError extends Error {
  readonly code: typeof ERR.SPOOL_WRITE | typeof ERR.SPOOL_ENTRY;

  constructor(code: typeof ERR.SPOOL_WRITE | typeof ERR.SPOOL_ENTRY, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

export class SpoolStore {
  readonly dir: string;
  readonly #tmp: string;
  readonly #msg: string;
  readonly #meta: string;
  readonly #ops: SpoolFileOps;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #space: FreeSpaceGuard;
  readonly #index = new SpoolIndex();
  /** Entries found with a dot mark at start-up and not settled since. */
  readonly #unsettled = new Set<string>();
  /** The last change queued for each entry (see the file comment). */
  readonly #busy = new Map<string, Promise<unknown>>();
  #msgSync: FolderSync | null = null;
  #metaSync: FolderSync | null = null;
  #lock: DataDirLock | null = null;
  #closed = false;

  private constructor(opts: SpoolStoreOptions) {
    this.dir = opts.dir;
    this.#tmp = join(opts.dir, 'tmp');
    this.#msg = join(opts.dir, 'msg');
    this.#meta = join(opts.dir, 'meta');
    this.#ops = { ...NODE_SPOOL_FILE_OPS, ...opts.fileOps };
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log;
    this.#space = new FreeSpaceGuard(opts.dir, opts.minFreeSpace, this.#now, opts.freeSpace ?? statfsProbe);
  }

  /**
   * Creates the folder if needed (0700: whole messages), takes its lock (throws DataDirInUseError,
   * code ESPOOLINUSE, when a live process holds it), recovers what the process before left, and
   * builds the index. Run it before any message can arrive.
   */
  static async open(opts: SpoolStoreOptions): Promise<SpoolOpened> {
    const store = new SpoolStore(opts);
    for (const dir of [opts.dir, store.#tmp, store.#msg, store.#meta]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // mkdir's mode is narrowed by the umask, and ignored for a folder that is already there.
      chmodSync(dir, 0o700);
    }
    const attempt = await DataDirLock.acquire(opts.dir, SPOOL_DIR);
    store.#lock = attempt.lock;
    try {
      store.#msgSync = await FolderSync.open(store.#msg, store.#ops);
      store.#metaSync = await FolderSync.open(store.#meta, store.#ops);
      const recovery = await store.#recover();
      return { store, recovery, unlocked: attempt.lock === null ? attempt.why : null };
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Accepting

  /**
   * False while the spool's filesystem is below `spool.minFreeSpace` (statfs about once a second, not
   * per message; free-space.ts): the caller refuses with 452 4.3.1 instead of accepting.
   */
  hasRoom(): boolean {
    return this.#space.hasRoom();
  }

  /** Free bytes on the spool's filesystem at the last look, or null when unknown. */
  get freeBytes(): number | null {
    return this.#space.available;
  }

  /**
   * Writes a new `queued` entry, due at once, durably (the order in the file comment). When it
   * resolves the message is in the spool for good, a power cut included; only then may the caller
   * write the acceptance record and reply. Rejects with SpoolError ESPOOLWRITE when anything failed,
   * having removed what it wrote: nothing of the message is left to be delivered.
   */
  async accept(input: SpoolAcceptInput): Promise<SpoolEntry> {
    this.#open();
    const entry = newSpoolEntry({ ...input, now: this.#now() });
    const id = entry.id;
    const tmpBody = join(this.#tmp, id + BODY);
    const tmpMeta = join(this.#tmp, id + META);
    const body = this.bodyPath(id);
    const meta = this.#metaPath(id);
    const json = serializeSpoolEntry(entry);
    let bodyMoved = false;
    let metaMoved = false;
    try {
      if (Buffer.isBuffer(input.body)) await writeDurably(tmpBody, input.body, this.#ops);
      else await copyDurably(input.body.path, tmpBody, this.#ops);
      await writeDurably(tmpMeta, json, this.#ops);
      await this.#ops.rename(tmpBody, body);
      bodyMoved = true;
      await this.#msgSync!.sync();
      await this.#ops.rename(tmpMeta, meta);
      metaMoved = true;
      await this.#metaSync!.sync();
    } catch (err) {
      await this.#undoAccept(id, [tmpBody, tmpMeta], metaMoved ? meta : null, bodyMoved ? body : null);
      throw new SpoolError(ERR.SPOOL_WRITE, `could not write the message to the spool (${describe(err)})`, { cause: err });
    }
    this.#space.wrote(entry.message.size + json.length);
    this.#index.set(summaryOf(entry));
    return entry;
  }

  /**
   * The acceptance record is in the trail: the meta says so, so a restart does not take the entry
   * for one whose record was lost. Not flushed (no fsync): losing this mark to a power cut costs a
   * redundant `recovered` record, never a message.
   */
  markRecorded(id: string): Promise<SpoolEntry> {
    return this.#change(id, (e) => (e.recorded ? e : { ...e, recorded: true }), false);
  }

  // ---------------------------------------------------------------------------------------------
  // Reading

  /** The entry as its meta file has it now; null when the spool does not have it. */
  async get(id: string): Promise<SpoolEntry | null> {
    if (!this.#index.has(id)) return null;
    return this.#read(id).catch((err: unknown) => {
      if ((err as SpoolError).code === ERR.SPOOL_ENTRY) return null;
      throw err;
    });
  }

  /** What the index knows of the entry (no disk access); undefined when the spool does not have it. */
  summary(id: string): SpoolSummary | undefined {
    return this.#index.get(id);
  }

  /** Every entry's summary, in acceptance order (id order for those found at start-up). */
  list(): IterableIterator<SpoolSummary> {
    return this.#index.values();
  }

  /** Entries by state, bytes, and the oldest acceptance (one pass over the index). */
  counts(): SpoolCounts {
    return this.#index.counts();
  }

  /**
   * Up to `limit` `queued` entries due at `now`, earliest due first; `skip` leaves some out (those
   * whose route's upstreams are all parked). Never an entry with an unsettled unknown outcome: those
   * are not `queued`.
   */
  due(now: number, limit: number, skip?: (s: SpoolSummary) => boolean): SpoolSummary[] {
    return this.#index.due(now, limit, skip);
  }

  /** When the next `queued` entry falls due (ms), or null. */
  nextDueAt(): number | null {
    return this.#index.nextDueAt();
  }

  /**
   * Entries found at start-up with the dot mark set and not settled since (by an update that clears
   * the mark, or removal): the upstream may have them. The queue manager holds or resends each.
   */
  unknownOutcomes(): SpoolSummary[] {
    return [...this.#unsettled].map((id) => this.#index.get(id)).filter((s): s is SpoolSummary => s !== undefined);
  }

  /** Where the entry's body is (for the upstream's `raw: { path }`): the bytes as received. */
  bodyPath(id: string): string {
    return join(this.#msg, id + BODY);
  }

  // ---------------------------------------------------------------------------------------------
  // Changing

  /**
   * Rewrites the entry durably with what `change` makes of its current meta (its `id` must stay;
   * `updatedAt` is set here). Waits for earlier changes of the same entry. Resolves with the entry
   * as written; rejects with SpoolError ESPOOLENTRY when the spool does not have it, or with the
   * system error when the write failed (the meta is then as it was).
   */
  update(id: string, change: (entry: SpoolEntry) => SpoolEntry): Promise<SpoolEntry> {
    return this.#change(id, change, true);
  }

  /**
   * Takes a `queued` entry for an attempt: `delivering`, held by this process. Not flushed: after a
   * crash an entry left `delivering` without a dot mark is queued again at start-up, which is what it
   * was. Rejects with ESPOOLENTRY when the entry is gone or not `queued` (another caller took it).
   */
  lease(id: string): Promise<SpoolEntry> {
    return this.#change(
      id,
      (e) => {
        if (e.state !== 'queued') throw new SpoolError(ERR.SPOOL_ENTRY, `spool entry ${id} is ${e.state}, not queued`);
        return { ...e, state: 'delivering' };
      },
      false,
    );
  }

  /**
   * The durable mark before an attempt's final dot (docs/spool.md, "Before the final dot"): on disk
   * before the dot is written, so a crash after it is an unknown outcome, never a silent resend.
   */
  markDotPending(id: string, upstream: string): Promise<SpoolEntry> {
    const since = new Date(this.#now()).toISOString();
    return this.update(id, (e) => ({ ...e, state: 'delivering', dotPendingSince: since, dotPendingUpstream: upstream }));
  }

  /**
   * Clears the dot mark once the attempt's outcome is recorded, together with whatever `change` makes
   * of the entry (its next state: queued with a new due time, held, or its recipients' fates).
   */
  clearDotPending(id: string, change: (entry: SpoolEntry) => SpoolEntry = (e) => e): Promise<SpoolEntry> {
    return this.update(id, (e) => ({ ...change(e), dotPendingSince: null, dotPendingUpstream: null }));
  }

  /**
   * Removes the entry: meta first (flushed: from then on a restart no longer has it), then the body.
   * Write the end record before: an entry is never gone without its end in the trail. Also undoes an
   * acceptance whose record could not be written (the client is told 451 and will send it again).
   * Rejects with ESPOOLENTRY when the spool does not have it.
   */
  remove(id: string): Promise<void> {
    return this.#serialized(id, async () => {
      this.#open();
      if (!(await removeFile(this.#metaPath(id)))) throw noEntry(id);
      await this.#metaSync!.sync();
      this.#index.delete(id);
      this.#unsettled.delete(id);
      // A body without its meta is never delivered and is removed at start-up anyway.
      await removeFile(this.bodyPath(id)).catch((err: unknown) => this.#log.warn({ err, id }, 'spool body not removed; the next start removes it'));
    });
  }

  /** Waits for the changes in flight, closes the folders, releases the lock. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#busy.values()]);
    await this.#msgSync?.close();
    await this.#metaSync?.close();
    await this.#lock?.release();
  }

  // ---------------------------------------------------------------------------------------------

  #metaPath(id: string): string {
    return join(this.#meta, id + META);
  }

  #open(): void {
    if (this.#closed) throw new SpoolError(ERR.SPOOL_WRITE, 'the spool is closed');
  }

  async #read(id: string): Promise<SpoolEntry> {
    let text: string;
    try {
      text = await readFile(this.#metaPath(id), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw noEntry(id);
      throw err;
    }
    const parsed = parseSpoolEntry(text);
    if ('problem' in parsed) throw new Error(`spool entry ${id} cannot be read: ${parsed.problem}`);
    return parsed.entry;
  }

  #change(id: string, change: (entry: SpoolEntry) => SpoolEntry, durable: boolean): Promise<SpoolEntry> {
    return this.#serialized(id, async () => {
      this.#open();
      if (!this.#index.has(id)) throw noEntry(id);
      const current = await this.#read(id);
      const changed = change(current);
      if (changed === current) return current;
      const next: SpoolEntry = { ...changed, id, updatedAt: new Date(this.#now()).toISOString() };
      checkSpoolEntry(next);
      await this.#writeMeta(next, durable);
      this.#index.set(summaryOf(next));
      if (next.dotPendingSince === null) this.#unsettled.delete(id);
      return next;
    });
  }

  /** A meta replaced atomically: a new file renamed over the old one; flushed (both) when `durable`. */
  async #writeMeta(entry: SpoolEntry, durable: boolean): Promise<void> {
    const tmp = join(this.#tmp, entry.id + META);
    const json = serializeSpoolEntry(entry);
    try {
      if (durable) await writeDurably(tmp, json, this.#ops);
      else await writeFile(tmp, json, { mode: 0o600 });
      await this.#ops.rename(tmp, this.#metaPath(entry.id));
    } catch (err) {
      await removeFile(tmp).catch(() => undefined);
      throw err;
    }
    if (durable) await this.#metaSync!.sync();
  }

  /** Runs `op` after every change of `id` queued before it (each gets its own result or error). */
  #serialized<T>(id: string, op: () => Promise<T>): Promise<T> {
    const before = this.#busy.get(id) ?? Promise.resolve();
    const run = before.then(op);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#busy.set(id, settled);
    void settled.then(() => {
      if (this.#busy.get(id) === settled) this.#busy.delete(id);
    });
    return run;
  }

  /**
   * An accept that failed: everything it wrote goes. A meta already moved in goes first, flushed, so a
   * crash meanwhile never leaves a committed entry whose client was told 451.
   */
  async #undoAccept(id: string, tmp: readonly string[], meta: string | null, body: string | null): Promise<void> {
    const remove = async (path: string): Promise<void> => {
      try {
        await removeFile(path);
      } catch (err) {
        this.#log.error({ err, id, path }, 'could not remove what a failed spool acceptance wrote');
      }
    };
    for (const path of tmp) await remove(path);
    if (meta !== null) {
      await remove(meta);
      await this.#metaSync!.sync().catch((err: unknown) => this.#log.error({ err, id }, 'could not flush the spool folder after a failed acceptance'));
    }
    if (body !== null) await remove(body);
  }

  /**
   * Start-up (the lock held): tmp/ emptied; each meta read and indexed, or moved to damaged/; entries
   * left `delivering` without a dot mark queued again; bodies without a meta removed. Synchronous
   * reads: nothing else runs yet, and 100,000 small files go fastest this way (bench/spool-scale.mjs).
   */
  async #recover(): Promise<SpoolRecovery> {
    const started = performance.now();
    let tmpRemoved = 0;
    for (const name of readdirSync(this.#tmp)) {
      rmSync(join(this.#tmp, name), { recursive: true, force: true });
      tmpRemoved += 1;
    }
    const bodies = new Set<string>();
    for (const name of readdirSync(this.#msg)) {
      const m = ID_FILE.exec(name);
      if (m?.[2] === 'eml') bodies.add(m[1]!);
    }
    const damaged: { name: string; problem: string }[] = [];
    const requeue: SpoolEntry[] = [];
    const unrecorded: SpoolEntry[] = [];
    const unknown: SpoolSummary[] = [];
    const reader = new SmallFileReader();
    // ULIDs sort by time: the index starts in acceptance order.
    for (const name of readdirSync(this.#meta).sort()) {
      const m = ID_FILE.exec(name);
      if (m?.[2] !== 'json') continue;
      const id = m[1]!;
      const parsed = parseSpoolEntry(reader.read(join(this.#meta, name)));
      const problem =
        'problem' in parsed ? parsed.problem : parsed.entry.id !== id ? 'its id is not its file name' : !bodies.has(id) ? 'its body is missing' : null;
      if (problem !== null || !('entry' in parsed)) {
        damaged.push({ name, problem: problem ?? 'unreadable' });
        this.#quarantine(name, bodies.has(id) ? id : null);
        bodies.delete(id);
        continue;
      }
      bodies.delete(id);
      const entry = parsed.entry;
      const summary = summaryOf(entry);
      this.#index.set(summary);
      if (entry.dotPendingSince !== null) {
        this.#unsettled.add(id);
        unknown.push(summary);
      } else if (entry.state === 'delivering') {
        requeue.push(entry);
      }
      if (!entry.recorded) unrecorded.push(entry);
    }
    // Bodies left: renamed into msg/ but their meta never was, so no client was ever told 250.
    const orphanBodies = [...bodies];
    for (const id of orphanBodies) rmSync(this.bodyPath(id), { force: true });
    if (orphanBodies.length > 0) await this.#msgSync!.sync();
    const requeued: string[] = [];
    for (const entry of requeue) {
      await this.update(entry.id, (e) => ({ ...e, state: 'queued' }));
      requeued.push(entry.id);
    }
    return {
      entries: this.#index.size,
      tmpRemoved,
      orphanBodies,
      requeued,
      unknownOutcomes: unknown,
      unrecorded,
      damaged,
      ms: Math.round(performance.now() - started),
    };
  }

  /** Moves a meta (and its body, when there is one) to damaged/, out of the queue but kept. */
  #quarantine(metaName: string, bodyId: string | null): void {
    const damaged = join(this.dir, 'damaged');
    mkdirSync(damaged, { recursive: true, mode: 0o700 });
    renameSync(join(this.#meta, metaName), join(damaged, metaName));
    if (bodyId !== null) renameSync(this.bodyPath(bodyId), join(damaged, bodyId + BODY));
  }
}

/**
 * Reads many small files into one reused buffer: open, read, close and nothing else. readFileSync
 * also stats each file and allocates a buffer per file, which doubles the time start-up spends on
 * 100,000 metas (bench/spool-scale.mjs).
 */
class SmallFileReader {
  #buffer = Buffer.alloc(16 * 1024);

  read(path: string): string {
    const fd = openSync(path, 'r');
    try {
      let length = 0;
      for (;;) {
        if (length === this.#buffer.length) this.#buffer = Buffer.concat([this.#buffer, Buffer.alloc(this.#buffer.length)]);
        const n = readSync(fd, this.#buffer, length, this.#buffer.length - length, length);
        if (n === 0) break;
        length += n;
      }
      return this.#buffer.toString('utf8', 0, length);
    } finally {
      closeSync(fd);
    }
  }
}

function noEntry(id: string): SpoolError {
  return new SpoolError(ERR.SPOOL_ENTRY, `no entry ${id} in the spool`);
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message ?? String(err);
}
