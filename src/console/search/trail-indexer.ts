/**
 * Keeps the index up with the trail, as `mailtrail tail -f` follows it (tools/follow.ts): the first
 * time, every rotated file (gzip ones too) and then the current file from its start; afterwards,
 * from where the last batch ended. Records a rotation made it skip (the name moved on twice between
 * two polls, or the trail rotated while mailtrail was stopped) are read back from the rotated files
 * by seq (tools/rotation-gap.ts). Rows are keyed by record id, so reading a stretch twice is harmless.
 */
import { statSync } from 'node:fs';
import { followFile } from '../../tools/follow.js';
import { missedRecords } from '../../tools/rotation-gap.js';
import { withRotated } from '../../tools/trail-files.js';
import { parseRecord, readTrail, ReadProblems, type TrailEntry } from '../../tools/trail-reader.js';
import type { AuditRecord } from '../../audit/records.js';
import type { FollowPosition, IndexStore, Located } from './index-store.js';
import type { TrailLines } from './trail-lines.js';

export interface IndexerOptions {
  readonly pollMs: number;
  readonly signal: AbortSignal;
  /** A notice for the operational log. */
  readonly note: (message: string, fields?: Record<string, unknown>) => void;
}

export type IndexerState = 'building' | 'following';

/** Rows written per transaction, at most; lines handed to the event loop between two yields. */
const BATCH = 5_000;
const FLUSH_MS = 200;

export class TrailIndexer {
  readonly #store: IndexStore;
  readonly #trail: string;
  readonly #lines: TrailLines;
  #pending: Located[] = [];
  #position: FollowPosition | null = null;
  /** The position last written with a batch. */
  #saved: FollowPosition | null = null;
  #lastSeq: number | null = null;
  #state: IndexerState = 'building';
  #sinceYield = 0;
  #analyzed = false;
  #finishing = false;
  #onError: (err: unknown) => void = () => undefined;
  /** The rotated files are read: following the current file. */
  #following = false;

  constructor(store: IndexStore, trail: string, lines: TrailLines) {
    this.#store = store;
    this.#trail = trail;
    this.#lines = lines;
  }

  get state(): IndexerState {
    return this.#state;
  }

  /** Runs until `signal` aborts; `onError` hears of a failure outside the run itself (making the indexes). */
  async run(opts: IndexerOptions & { readonly onError?: (err: unknown) => void }): Promise<void> {
    if (opts.onError) this.#onError = opts.onError;
    const stored = this.#store.position();
    this.#lastSeq = stored?.lastSeq ?? null;
    const st = statOrNull(this.#trail);
    let start: { offset: number; line: number; head: string | null };
    this.#analyzed = this.#store.indexed;
    if (stored && st && stored.ino === st.ino && st.size >= stored.offset) {
      start = { offset: stored.offset, line: stored.line, head: stored.head };
      // Where it stands until a line is read: at the end of the file, it has caught up already.
      this.#position = stored;
      this.#saved = stored;
    } else if (stored && stored.lastSeq !== null) {
      opts.note('the trail rotated while the index was not following it: reading the rotated files from seq', { after: stored.lastSeq });
      for await (const entry of missedRecords(this.#trail, stored.lastSeq, Number.MAX_SAFE_INTEGER)) await this.#entry(entry);
      start = { offset: 0, line: 0, head: null };
    } else {
      for (const file of withRotated(this.#trail).filter((f) => f !== this.#trail)) {
        if (opts.signal.aborted) return;
        try {
          for await (const entry of readTrail([file], { problems: new ReadProblems() })) await this.#entry(entry);
        } catch (err) {
          // Retention or compression removed it meanwhile: its .gz (or nothing) is what is left.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      start = { offset: 0, line: 0, head: null };
    }
    this.#flush();
    let ino = st?.ino ?? 0;
    let line = start.line;
    let head = start.head;
    const timer = setInterval(() => this.#tick(), FLUSH_MS);
    this.#following = true;
    try {
      await followFile(this.#trail, {
        startAt: start.offset,
        pollMs: opts.pollMs,
        signal: opts.signal,
        onLine: async (text, offset) => {
          line += 1;
          const record = parseRecord(text);
          if (record) {
            if (head === null && typeof record.id === 'string') head = record.id;
            if (head !== null) {
              await this.#fillGap(record);
              this.#push({ record, head, offset, length: Buffer.byteLength(text), line });
            }
          }
          const length = Buffer.byteLength(text);
          this.#position = { head, ino, offset: offset + length + 1, line, lastSeq: this.#lastSeq };
          if (this.#pending.length >= BATCH) this.#flush();
          // Searches wait in the message queue of this thread: let them in while a big file is read.
          if (++this.#sinceYield >= 1_000) {
            this.#sinceYield = 0;
            await new Promise((resolve) => setImmediate(resolve));
          }
        },
        onReopen: () => {
          this.#flush();
          line = 0;
          head = null;
          ino = statOrNull(this.#trail)?.ino ?? 0;
        },
      });
    } finally {
      clearInterval(timer);
      this.#flush();
    }
  }

  /** Every FLUSH_MS: the batch so far is written; caught up once the end of the current file is reached. */
  #tick(): void {
    this.#flush();
    const size = statOrNull(this.#trail)?.size ?? 0;
    if (this.#state === 'building' && this.#following && !this.#finishing && (this.#position?.offset ?? 0) >= size) {
      if (this.#analyzed) {
        this.#state = 'following';
        return;
      }
      this.#finishing = true;
      this.#store.finishBuild().then(
        () => {
          this.#analyzed = true;
          this.#state = 'following';
          this.#finishing = false;
        },
        (err: unknown) => {
          this.#finishing = false;
          this.#onError(err);
        },
      );
    }
  }

  async #entry(entry: TrailEntry): Promise<void> {
    const head = await this.#lines.headOf(entry.file).catch(() => null);
    if (head === null) return;
    this.#push({ record: entry.record, head, offset: entry.offset, length: Buffer.byteLength(entry.raw), line: entry.line });
    if (this.#pending.length >= BATCH) {
      this.#flush();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** A seq that jumps ahead while following: the records between are in rotated files. */
  async #fillGap(record: AuditRecord): Promise<void> {
    const seq = record.seq;
    const last = this.#lastSeq;
    if (typeof seq !== 'number' || last === null || seq <= last + 1) return;
    for await (const entry of missedRecords(this.#trail, last, seq)) await this.#entry(entry);
  }

  #push(item: Located): void {
    const seq = item.record.seq;
    if (typeof seq === 'number') {
      if (this.#lastSeq !== null && seq <= this.#lastSeq && this.#position !== null) return;
      this.#lastSeq = Math.max(seq, this.#lastSeq ?? 0);
    }
    this.#pending.push(item);
  }

  #flush(): void {
    if (this.#pending.length === 0 && this.#position === this.#saved) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#store.add(batch, this.#position);
    this.#saved = this.#position;
  }
}

function statOrNull(file: string): { ino: number; size: number } | null {
  try {
    return statSync(file);
  } catch {
    return null;
  }
}
