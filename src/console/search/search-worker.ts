/**
 * The index worker (node:worker_threads): builds and follows the search index and answers searches,
 * stories and statistics history from it, so that neither reading the trail nor SQLite ever runs on
 * the relay's event loop (docs/console.md, "The search index"). Started by search-index.ts.
 */
import { basename } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { QueryError } from '../query.js';
import { StatsBuckets } from '../stats.js';
import { inScope, storyView } from '../story-view.js';
import { IndexStore } from './index-store.js';
import { indexedStory, verifyStory } from './indexed-story.js';
import type { IndexStatus, WorkerMessage, WorkerRequest, WorkerSetup } from './protocol.js';
import { TrailIndexer } from './trail-indexer.js';
import { TrailLines } from './trail-lines.js';

const setup = workerData as WorkerSetup;
const port = parentPort!;
const lines = new TrailLines(setup.trail);

let store: IndexStore;
let indexer: TrailIndexer;
let stop = new AbortController();

function post(message: WorkerMessage): void {
  port.postMessage(message);
}

function notice(level: 'info' | 'warn' | 'error', text: string, fields?: Record<string, unknown>): void {
  post({ id: null, notice: text, level, ...(fields ? { fields } : {}) });
}

/** Opens (or builds) the index and follows the trail into it until stopped. */
function start(): void {
  const opened = IndexStore.open(setup.indexPath, setup.trail);
  store = opened.store;
  if (opened.rebuilt !== null && opened.rebuilt !== 'new') notice('warn', 'search index rebuilt from the trail', { why: opened.rebuilt });
  indexer = new TrailIndexer(store, setup.trail, lines);
  const signal = stop.signal;
  const failed = (err: unknown): void => {
    if (signal.aborted) return;
    if (isCorrupt(err)) return rebuild(err);
    notice('error', 'search index stopped following the trail', { err: String(err) });
  };
  indexer.run({ pollMs: setup.pollMs, signal, note: (text, fields) => notice('info', text, fields), onError: failed }).catch(failed);
}

/** A corrupt index: dropped and built again from the trail (the source of truth). */
function rebuild(err: unknown): void {
  notice('warn', 'search index unreadable: rebuilding it from the trail', { err: String(err) });
  stop.abort();
  stop = new AbortController();
  store.close();
  IndexStore.remove(setup.indexPath);
  start();
}

function isCorrupt(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT_INDEX';
}

async function answer(request: WorkerRequest): Promise<unknown> {
  switch (request.kind) {
    case 'status':
      return { state: indexer.state, records: store.count() } satisfies IndexStatus;
    case 'search':
      return store.search(request.query, request.scope, request.page);
    case 'story': {
      const story = await indexedStory(request.key, store, lines, { limit: request.limit, privacy: setup.privacy });
      const entries = story.entries.filter((e) => inScope(e.record, request.scope));
      if (!entries.some((e) => e.record.type === 'relay' || e.record.type === 'reject')) return null;
      const scoped = { ...story, entries };
      return { ...storyView(scoped, basename), verified: await verifyStory(scoped, lines) };
    }
    case 'history': {
      const buckets = new StatsBuckets();
      for (const row of store.statsRows(request.since, request.until)) buckets.add(row);
      return buckets.dump();
    }
  }
}

port.on('message', (message: { id: number; request: WorkerRequest }) => {
  answer(message.request).then(
    (value) => post({ id: message.id, ok: true, value }),
    (err: unknown) => {
      if (err instanceof QueryError) return post({ id: message.id, ok: false, error: { code: err.code, message: err.message } });
      post({ id: message.id, ok: false, error: { code: 'index_error', message: 'the search index could not answer' } });
      if (isCorrupt(err)) rebuild(err);
      else notice('error', 'search index request failed', { kind: message.request.kind, err: String(err) });
    },
  );
});

port.on('close', () => stop.abort());

try {
  start();
} catch (err) {
  notice('error', 'search index could not be opened', { err: String(err) });
}
