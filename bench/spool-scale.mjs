/**
 * The spool at scale: how a relay starts on, holds and lists a spool of many queued messages.
 *
 *   npm run build && node --expose-gc bench/spool-scale.mjs [--entries 100000] [--keep DIR]
 *
 * `--keep DIR` works in DIR and leaves it there; run again with the same DIR, the spool it holds is
 * measured again without filling it anew.
 *
 * 1. Fills a spool with N queued messages through the store's own API (SpoolStore.accept, 64 at a
 *    time; the fsyncs turned off for the filling only, which is not what is measured).
 * 2. Starts `node dist/cli.js serve` in spool mode on that folder, as an operator would, and measures
 *    the time from spawn to the banner, the spool's own recovery time (its "spool opened" log line)
 *    and the relay's resident memory (VmRSS) then, next to a relay on an empty spool.
 * 3. Opens the store in this process and measures the time to list every entry (and sort them by
 *    acceptance), to count them, to pick the 10 due first, and the heap the index takes.
 *
 * Prints the figures; nothing is asserted (benchmarks are scripts, not tests).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { CLI, ROOT } from './mailtrail-process.mjs';
import { memory } from './proc-stats.mjs';

const { SpoolStore } = await import(join(ROOT, 'dist', 'spool', 'spool-store.js'));
const { IdGenerator } = await import(join(ROOT, 'dist', 'ids.js'));
const { createLogger } = await import(join(ROOT, 'dist', 'logger.js'));

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const ENTRIES = Number(option('--entries', '100000'));
const keep = option('--keep', null);
const MiB = 1024 * 1024;
const log = createLogger('silent');

const work = keep ?? mkdtempSync(join(tmpdir(), 'mailtrail-spool-scale-'));
mkdirSync(work, { recursive: true });
const mb = (bytes) => (bytes === null ? 'n/a' : `${(bytes / MiB).toFixed(1)} MB`);
const ms = (n) => `${Math.round(n)} ms`;

/** A message of a typical transactional size (about 4 KB). */
function body(i) {
  return Buffer.from(
    `From: App <app@example.com>\r\nTo: <user${i}@example.org>\r\nSubject: Your receipt ${i}\r\nMessage-ID: <r${i}@example.com>\r\n\r\n${'Thank you for your order. '.repeat(150)}\r\n`,
  );
}

async function fill(dir, n) {
  const { store } = await SpoolStore.open({ dir, minFreeSpace: 0, log, fileOps: { fsync: async () => undefined } });
  const ids = new IdGenerator();
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const raw = body(i);
      const entry = await store.accept({
        id: ids.next(),
        acceptance: { mode: 'spool', reason: 'spool mode' },
        from: 'app@example.com',
        to: [`user${i}@example.org`],
        use8BitMime: false,
        message: { size: raw.length, sha256: '0'.repeat(64), messageId: `<r${i}@example.com>`, headerFrom: 'App <app@example.com>' },
        client: { ip: '10.0.4.17', user: 'billing' },
        body: raw,
      });
      // As the transaction does once the acceptance record is written: no `recovered` record at start-up.
      await store.markRecorded(entry.id);
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  const took = performance.now() - t0;
  await store.close();
  return took;
}

/** Starts a relay in spool mode on `spoolDir`; resolves with the figures once it is up, then stops it. */
function relayOn(spoolDir, name) {
  const dir = join(work, name);
  const config = join(work, `${name}.yaml`);
  writeFileSync(
    config,
    YAML.stringify({
      listen: [{ host: '127.0.0.1', port: 0, mode: 'spool' }],
      clients: { networks: ['127.0.0.0/8'] },
      upstreams: [{ name: 'provider', url: 'smtp://127.0.0.1:9', tls: { mode: 'none' }, probe: { enabled: false } }],
      spool: { dir: spoolDir, minFreeSpace: 0 },
      dataDir: dir,
    }),
  );
  const t0 = performance.now();
  const child = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const poll = setInterval(() => {
      if (child.exitCode !== null) {
        clearInterval(poll);
        reject(new Error(`mailtrail exited:\n${stderr}`));
      }
      if (!stdout.includes('mailtrail is running')) return;
      clearInterval(poll);
      const startMs = performance.now() - t0;
      // A moment for the heap to settle after start-up's garbage.
      setTimeout(() => {
        const opened = stderr
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l))
          .find((l) => l.msg === 'spool opened');
        const mem = memory(child.pid);
        child.once('exit', () => resolve({ startMs, recoveryMs: opened?.ms ?? null, entries: opened?.entries ?? null, rss: mem.rss, hwm: mem.hwm }));
        child.kill('SIGTERM');
      }, 500);
    }, 10);
  });
}

async function listInProcess(dir) {
  global.gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const { store, recovery } = await SpoolStore.open({ dir, minFreeSpace: 0, log });
  const openMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const openCpuMs = (cpu.user + cpu.system) / 1000;
  global.gc?.();
  const heap = process.memoryUsage().heapUsed - heap0;
  let t = performance.now();
  let n = 0;
  let bytes = 0;
  for (const s of store.list()) {
    n += 1;
    bytes += s.size;
  }
  const listMs = performance.now() - t;
  t = performance.now();
  const sorted = [...store.list()].sort((a, b) => a.acceptedAt - b.acceptedAt || (a.id < b.id ? -1 : 1));
  const sortMs = performance.now() - t;
  t = performance.now();
  const counts = store.counts();
  const countMs = performance.now() - t;
  t = performance.now();
  const due = store.due(Date.now(), 10);
  const dueMs = performance.now() - t;
  await store.close();
  return { openMs, openCpuMs, recovery, heap, n, bytes, listMs, sortMs, sorted: sorted.length, counts, countMs, due: due.length, dueMs };
}

try {
  const spoolDir = join(work, 'spool');
  const emptyDir = join(work, 'empty-spool');
  const kept = existsSync(join(spoolDir, 'meta')) ? readdirSync(join(spoolDir, 'meta')).length : 0;
  if (kept > 0) {
    process.stdout.write(`measuring the ${kept.toLocaleString('en-US')} queued messages already in ${spoolDir}\n`);
  } else {
    process.stdout.write(`filling a spool with ${ENTRIES.toLocaleString('en-US')} queued messages (through SpoolStore.accept) ...\n`);
    const fillMs = await fill(spoolDir, ENTRIES);
    process.stdout.write(`  ${ms(fillMs)} (${Math.round((ENTRIES / fillMs) * 1000).toLocaleString('en-US')} accepts/s without fsync)\n`);
  }

  const empty = await relayOn(emptyDir, 'relay-empty');
  const full = await relayOn(spoolDir, 'relay-full');
  process.stdout.write(`relay start-up (spawn to banner), node ${process.version}:\n`);
  process.stdout.write(`  empty spool:   ${ms(empty.startMs)}, spool recovery ${ms(empty.recoveryMs)}, RSS ${mb(empty.rss)} (peak ${mb(empty.hwm)})\n`);
  process.stdout.write(
    `  ${full.entries?.toLocaleString('en-US')} entries: ${ms(full.startMs)}, spool recovery ${ms(full.recoveryMs)}, RSS ${mb(full.rss)} (peak ${mb(full.hwm)})\n`,
  );
  process.stdout.write(
    `  RSS beyond the empty spool's: ${mb(full.rss - empty.rss)}, about ${Math.round((full.rss - empty.rss) / full.entries)} bytes per entry\n`,
  );

  const l = await listInProcess(spoolDir);
  process.stdout.write(`the store in this process (${global.gc ? 'heap measured after gc' : 'run with --expose-gc for an exact heap figure'}):\n`);
  process.stdout.write(
    `  open and recover: ${ms(l.openMs)} (${ms(l.openCpuMs)} of CPU, user and system); index heap ${mb(l.heap)} (${Math.round(l.heap / l.n)} bytes per entry)\n`,
  );
  process.stdout.write(`  list every entry: ${l.listMs.toFixed(1)} ms (${l.n.toLocaleString('en-US')} entries, ${mb(l.bytes)} of bodies, never read)\n`);
  process.stdout.write(`  list sorted by acceptance: ${l.sortMs.toFixed(1)} ms\n`);
  process.stdout.write(`  counts by state and oldest: ${l.countMs.toFixed(1)} ms (${JSON.stringify({ queued: l.counts.queued, total: l.counts.total })})\n`);
  process.stdout.write(`  the 10 due first: ${l.dueMs.toFixed(1)} ms\n`);
} finally {
  if (!keep) rmSync(work, { recursive: true, force: true });
}
