/**
 * The console's search index on a large trail: how long the first build takes, how big the index
 * is, and how fast each key of the query syntax is answered (p50 and max), through the index worker
 * as the API asks it (docs/console.md, "The search index").
 *
 *   npm run build
 *   node bench/console-search.mjs [TRAIL] [--records 1000000] [--runs 20] [--reuse]
 *
 * Without TRAIL, a trail of --records records (bench/make-trail.mjs) is written to a temporary folder
 * and removed afterwards. --reuse keeps an index already beside TRAIL (only the searches are timed).
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readTrail, ReadProblems } from '../dist/tools/trail-reader.js';
import { SearchIndex } from '../dist/console/search/search-index.js';
import { parseQuery } from '../dist/console/query.js';
import { createLogger } from '../dist/logger.js';
import { writeTrail } from './make-trail.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { records: { type: 'string', default: '1000000' }, runs: { type: 'string', default: '20' }, reuse: { type: 'boolean', default: false } },
});
const runs = Number(values.runs);
let trail = positionals[0];
let scratch = null;
if (!trail) {
  scratch = mkdtempSync(join(tmpdir(), 'mailtrail-console-bench-'));
  trail = join(scratch, 'audit.log');
  const t = Date.now();
  await writeTrail(trail, { records: Number(values.records) });
  console.log(`trail: ${Number(values.records).toLocaleString('en')} records written in ${((Date.now() - t) / 1000).toFixed(1)} s`);
}
const indexPath = `${trail}.search.db`;
if (!values.reuse) for (const suffix of ['', '-wal', '-shm']) rmSync(`${indexPath}${suffix}`, { force: true });

const log = createLogger('warn');
const index = new SearchIndex({ trail, indexPath, pollMs: 250, privacy: null }, log);
const started = Date.now();
index.start();
let status;
for (;;) {
  await new Promise((r) => setTimeout(r, 1_000));
  status = await index.status().catch(() => null);
  if (status?.state === 'following') break;
}
const buildSeconds = (Date.now() - started) / 1000;
const sizeOf = (p) => (existsSync(p) ? statSync(p).size : 0);
const indexBytes = sizeOf(indexPath) + sizeOf(`${indexPath}-wal`);
const trailBytes = statSync(trail).size;
console.log(
  `index: ${status.records.toLocaleString('en')} relay/reject records; ${values.reuse ? 'reused' : `built in ${buildSeconds.toFixed(1)} s`}; ` +
    `${(indexBytes / 2 ** 20).toFixed(0)} MiB for a ${(trailBytes / 2 ** 20).toFixed(0)} MiB trail (${((indexBytes / trailBytes) * 100).toFixed(0)} %)`,
);

// Values to search for, spread over the whole trail.
const samples = [];
let n = 0;
for await (const { record } of readTrail([trail], { problems: new ReadProblems() })) {
  n += 1;
  if (record.type === 'relay' && n % Math.max(1, Math.floor(status.records / (runs * 2))) === 0) samples.push(record);
}
const pick = (i) => samples[(i * 7) % samples.length];
const hour = (r) => new Date(Date.parse(r.time)).toISOString();
const later = (r, ms) => new Date(Date.parse(r.time) + ms).toISOString();
const QUERIES = {
  'msgid:': (i) => `msgid:${pick(i).message.messageId}`,
  'id:': (i) => `id:${pick(i).id}`,
  'to: (address)': (i) => `to:${pick(i).rcpt[0].to}`,
  'from: (address)': (i) => `from:${pick(i).from}`,
  'to: (domain)': (i) => `to:@${pick(i).rcpt[0].to.split('@')[1]}`,
  'queueid:': (i) => `queueid:${pick(i).upstream?.queueId ?? 'none'}`,
  'class:': (i) => `class:${['throttled', 'quota', 'recipient_rejected', 'timeout', 'content_rejected'][i % 5]}`,
  'outcome:': (i) => `outcome:${['deferred', 'rejected', 'unknown', 'partial'][i % 4]}`,
  'user:': (i) => `user:${['billing', 'news', 'crm'][i % 3]}`,
  'client:': (i) => `client:${['10.0.4.17', '10.0.5.*', '10.0.7.20'][i % 3]}`,
  'upstream:': (i) => `upstream:${['ses', 'backup'][i % 2]}`,
  'code:': (i) => `code:${['550', '4xx', '5.7.1'][i % 3]}`,
  'type:': () => 'type:reject',
  'after:+before: (1 h)': (i) => `after:${hour(pick(i))} before:${later(pick(i), 3_600_000)}`,
  'before: (old)': (i) => `before:${hour(pick(i))}`,
  'bare word': (i) => pick(i).rcpt[0].to.split('@')[0].split('.')[0],
  'bare word (common)': (i) => ['gmail', 'example', 'outlook'][i % 3],
  combined: (i) => `class:recipient_rejected upstream:ses to:@gmail.com after:${hour(pick(i))} before:${later(pick(i), 6 * 3_600_000)}`,
  'combined, negated': (i) => `-outcome:delivered user:billing after:${hour(pick(i))}`,
  'empty, common terms': (i) => ['user:news client:10.0.4.17', 'class:throttled upstream:backup', 'user:crm from:@tenant3.example.com'][i % 3],
  '(no query), page 20': () => '',
};

const rows = [];
for (const [name, make] of Object.entries(QUERIES)) {
  const times = [];
  let found = 0;
  for (let i = 0; i < runs; i++) {
    const query = parseQuery(make(i), Date.now());
    let cursor = null;
    const pages = name.includes('page 20') ? 20 : 1;
    const t = performance.now();
    for (let p = 0; p < pages; p++) {
      const page = await index.search(query, null, { limit: 50, cursor });
      found += page.items.length;
      cursor = page.next;
      if (!cursor) break;
    }
    times.push((performance.now() - t) / pages);
  }
  times.sort((a, b) => a - b);
  rows.push({ query: name, p50: times[Math.floor(times.length / 2)], max: times[times.length - 1], avgItems: found / runs });
}
console.log('\nsearch, first page of 50 (ms, through the worker):');
console.log(`${'query'.padEnd(24)} ${'p50'.padStart(8)} ${'max'.padStart(8)} ${'items'.padStart(7)}`);
for (const r of rows) console.log(`${r.query.padEnd(24)} ${r.p50.toFixed(1).padStart(8)} ${r.max.toFixed(1).padStart(8)} ${r.avgItems.toFixed(0).padStart(7)}`);

const storyTimes = [];
for (let i = 0; i < Math.min(runs, 10); i++) {
  const t = performance.now();
  await index.story(pick(i).id, null, 1000);
  storyTimes.push(performance.now() - t);
}
storyTimes.sort((a, b) => a - b);
console.log(
  `\nstory (GET /api/v1/messages/<id>, verified): p50 ${storyTimes[Math.floor(storyTimes.length / 2)].toFixed(1)} ms, max ${storyTimes.at(-1).toFixed(1)} ms`,
);
console.log(
  JSON.stringify({
    records: status.records,
    buildSeconds: values.reuse ? null : buildSeconds,
    indexBytes,
    trailBytes,
    searches: rows.map((r) => ({ query: r.query, p50: Math.round(r.p50 * 10) / 10, max: Math.round(r.max * 10) / 10 })),
  }),
);
await index.stop();
if (scratch) rmSync(scratch, { recursive: true, force: true });
