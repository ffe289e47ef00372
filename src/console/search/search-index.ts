/**
 * The main thread's side of the search index: starts the index worker (search-worker.ts), sends it
 * requests and awaits the answers. A worker that dies is started again (it resumes from the index);
 * requests in flight then fail with `index_unavailable`, never hang.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../logger.js';
import { QueryError, type Query } from '../query.js';
import type { StatsDump } from '../stats.js';
import type { StoryView } from '../story-view.js';
import type { TransactionSummary } from '../summary.js';
import type { Verified } from './indexed-story.js';
import type { IndexStatus, WorkerMessage, WorkerRequest, WorkerSetup } from './protocol.js';
import type { Page, Scope } from './sql-query.js';

/** A request the index could not answer: `code` is for the API's error. */
export class IndexError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const REQUEST_TIMEOUT_MS = 20_000;
/** The first restart after a worker died; doubled while it keeps dying young, up to a minute. */
const RESTART_DELAY_MS = 1_000;
const MAX_RESTART_DELAY_MS = 60_000;

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export class SearchIndex {
  readonly #setup: WorkerSetup;
  readonly #log: Logger;
  readonly #pending = new Map<number, Pending>();
  #worker: Worker | null = null;
  #nextId = 1;
  #stopped = false;
  #restart: NodeJS.Timeout | null = null;
  #restartDelay = RESTART_DELAY_MS;
  #startedAt = 0;

  constructor(setup: WorkerSetup, log: Logger) {
    this.#setup = setup;
    this.#log = log;
  }

  start(): void {
    const worker = new Worker(workerFile(), { workerData: this.#setup, resourceLimits: { maxOldGenerationSizeMb: 512 } });
    this.#worker = worker;
    this.#startedAt = Date.now();
    worker.on('message', (m: WorkerMessage) => this.#onMessage(m));
    worker.on('error', (err) => this.#log.error({ err }, 'search index worker failed'));
    worker.on('exit', (code) => {
      if (this.#worker !== worker) return;
      this.#worker = null;
      this.#failAll('the search index worker stopped');
      if (this.#stopped) return;
      // A worker that ran a while died of something passing; one that dies at once (a native module
      // that does not load) is retried ever more slowly, not in a loop.
      this.#restartDelay = Date.now() - this.#startedAt > MAX_RESTART_DELAY_MS ? RESTART_DELAY_MS : Math.min(this.#restartDelay * 2, MAX_RESTART_DELAY_MS);
      this.#log.warn({ code, retryInMs: this.#restartDelay }, 'search index worker exited: starting it again');
      this.#restart = setTimeout(() => {
        this.#restart = null;
        if (!this.#stopped) this.start();
      }, this.#restartDelay);
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#restart) clearTimeout(this.#restart);
    const worker = this.#worker;
    this.#worker = null;
    this.#failAll('mailtrail is stopping');
    if (worker) await worker.terminate();
  }

  search(query: Query, scope: Scope, page: Page): Promise<{ items: TransactionSummary[]; next: string | null }> {
    return this.#ask({ kind: 'search', query, scope, page }) as Promise<{ items: TransactionSummary[]; next: string | null }>;
  }

  /** The story of `key`, or null when no record the scope allows names it. */
  story(key: string, scope: Scope, limit: number): Promise<(StoryView & { verified: Verified }) | null> {
    return this.#ask({ kind: 'story', key, scope, limit }) as Promise<(StoryView & { verified: Verified }) | null>;
  }

  /** Statistics of the records written in [since, until). */
  history(since: number, until: number): Promise<StatsDump> {
    return this.#ask({ kind: 'history', since, until }) as Promise<StatsDump>;
  }

  status(): Promise<IndexStatus> {
    return this.#ask({ kind: 'status' }) as Promise<IndexStatus>;
  }

  #ask(request: WorkerRequest): Promise<unknown> {
    const worker = this.#worker;
    if (!worker) return Promise.reject(new IndexError('index_unavailable', 'the search index is not running'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new IndexError('index_timeout', 'the search index did not answer in time'));
      }, REQUEST_TIMEOUT_MS);
      this.#pending.set(id, { resolve, reject, timer });
      worker.postMessage({ id, request });
    });
  }

  #onMessage(m: WorkerMessage): void {
    if (m.id === null) {
      this.#log[m.level]({ ...m.fields }, m.notice);
      return;
    }
    const pending = this.#pending.get(m.id);
    if (!pending) return;
    this.#pending.delete(m.id);
    clearTimeout(pending.timer);
    if (m.ok) pending.resolve(m.value);
    // The asker's mistake (a cursor this server never gave): 400 bad_query, not the index's failure.
    else pending.reject(m.error.code === 'bad_query' ? new QueryError(m.error.message) : new IndexError(m.error.code, m.error.message));
  }

  #failAll(why: string): void {
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new IndexError('index_unavailable', why));
      this.#pending.delete(id);
    }
  }
}

/**
 * The compiled worker beside this file; when this file runs from the TypeScript sources (the test
 * suite), the compiled one in dist/ (`npm run build` makes it; `npm test` builds first).
 */
function workerFile(): URL {
  const here = new URL('./search-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  return new URL('../../../dist/console/search/search-worker.js', import.meta.url);
}
