/**
 * Spool mode's cost and its queue's speed (docs/spool.md). Part of `npm run bench`; alone:
 *
 *   npm run build && node bench/spool.mjs [--drain 10000]
 *
 * 1. One mailtrail process with two listeners in front of the same fast sink, one in pass-through
 *    and one in spool mode. At 1 KiB, 20 sessions, a new connection per message: the throughput of
 *    each (in spool mode the queue delivers to the sink meanwhile, as in production), and each
 *    message's time as the client sees it (p50, p99). What spool mode adds is the durable acceptance:
 *    two file fsyncs and two folder fsyncs (group-committed) before the 250.
 * 2. The drain: N messages (default 10,000, about 1 KiB) put in a spool through the store's own API
 *    (fsync off for the filling only, which is not what is measured, as bench/spool-scale.mjs does),
 *    then mailtrail started on it in front of the fast sink: messages delivered per second until the
 *    spool is empty (the dot mark, the records and the removal of each one included).
 *
 * Prints the figures; nothing is asserted (benchmarks are scripts, not tests).
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import YAML from 'yaml';
import { startMailtrail } from './mailtrail-process.mjs';
import { freePort, generateLoad, ownLoad, startSink } from './tools.mjs';
import { fillSpool } from './spool-fill.mjs';

const SIZE = 1024;
const SESSIONS = 20;

/** The spool figures, in front of the sink on `sinkPort`; `work` is a scratch folder. */
export async function spoolBench({ sinkPort, work, log, messages = 2000, drainMessages = 10_000 }) {
  const out = { size: SIZE, sessions: SESSIONS };
  const side = await sideBySide(sinkPort, join(work, 'side'), log, messages);
  Object.assign(out, side);
  out.drain = await drain(sinkPort, join(work, 'drain'), log, drainMessages);
  return out;
}

async function sideBySide(sinkPort, dir, log, messages) {
  mkdirSync(dir, { recursive: true });
  const pass = await freePort();
  const spool = await freePort();
  const file = join(dir, 'mailtrail.yaml');
  writeFileSync(
    file,
    YAML.stringify({
      hostname: 'bench.mailtrail.test',
      dataDir: join(dir, 'data'),
      log: { level: 'warn' },
      listen: [
        { host: '127.0.0.1', port: pass, mode: 'passthrough' },
        { host: '127.0.0.1', port: spool, mode: 'spool' },
      ],
      clients: { networks: ['127.0.0.0/8'] },
      limits: { maxConnections: 2000, maxConnectionsPerIp: 2000 },
      upstreams: [{ name: 'sink', url: `smtp://127.0.0.1:${sinkPort}`, tls: { mode: 'none' }, pool: { maxConnections: 20, maxMessages: 1000 } }],
      audit: { file: join(dir, 'audit.log'), fsync: false, chain: true },
      spool: { minFreeSpace: 0 },
    }),
  );
  const mt = await startMailtrail({ configFile: file, logFile: join(dir, 'mailtrail.log') });
  try {
    const run = { size: SIZE, sessions: SESSIONS, reuse: false };
    // Warm-up of both paths.
    await generateLoad({ port: pass, ...run, messages: 200, timeoutMs: 30_000 });
    await generateLoad({ port: spool, ...run, messages: 200, timeoutMs: 30_000 });
    const rate = async (port) => {
      const r = await generateLoad({ port, ...run, messages, timeoutMs: 120_000 });
      return { msgPerSec: r.failed > 0 ? 0 : Math.round(r.sent / (r.elapsedMs / 1000)), error: r.error ?? null };
    };
    const throughput = { passthrough: await rate(pass), spool: await rate(spool) };
    await waitEmpty(join(dir, 'data', 'spool', 'meta'), 60_000);
    const latency = async (port) => {
      const r = await ownLoad({ port, ...run, messages: Math.min(messages, 1000), timings: true, deadlineMs: 60_000 });
      return percentiles(r.timings ?? []);
    };
    const passLatency = await latency(pass);
    const spoolLatency = await latency(spool);
    const result = {
      throughput: {
        ...throughput,
        ratio: throughput.passthrough.msgPerSec > 0 ? round(throughput.spool.msgPerSec / throughput.passthrough.msgPerSec, 2) : null,
      },
      latencyMs: {
        passthrough: passLatency,
        spool: spoolLatency,
        added: { p50: round(spoolLatency.p50 - passLatency.p50, 2), p99: round(spoolLatency.p99 - passLatency.p99, 2) },
      },
    };
    log(
      `spool 1 KiB c=${SESSIONS} new conn: pass-through ${throughput.passthrough.msgPerSec}/s, spool ${throughput.spool.msgPerSec}/s (${pct(result.throughput.ratio)}); ` +
        `latency p50 ${passLatency.p50} → ${spoolLatency.p50} ms, p99 ${passLatency.p99} → ${spoolLatency.p99} ms`,
    );
    return result;
  } finally {
    await mt.stop('SIGTERM');
  }
}

async function drain(sinkPort, dir, log, n) {
  mkdirSync(dir, { recursive: true });
  const spoolDir = join(dir, 'spool');
  const filledMs = await fill(spoolDir, n);
  const file = join(dir, 'mailtrail.yaml');
  writeFileSync(
    file,
    YAML.stringify({
      hostname: 'bench.mailtrail.test',
      dataDir: join(dir, 'data'),
      log: { level: 'warn' },
      listen: [{ host: '127.0.0.1', port: 0, mode: 'spool' }],
      clients: { networks: ['127.0.0.0/8'] },
      upstreams: [{ name: 'sink', url: `smtp://127.0.0.1:${sinkPort}`, tls: { mode: 'none' }, pool: { maxConnections: 20, maxMessages: 1000 } }],
      audit: { file: join(dir, 'audit.log'), fsync: false, chain: true },
      spool: { dir: spoolDir, minFreeSpace: 0 },
    }),
  );
  const t0 = performance.now();
  const mt = await startMailtrail({ configFile: file, logFile: join(dir, 'mailtrail.log'), timeoutMs: 60_000 });
  try {
    const left = await waitEmpty(join(spoolDir, 'meta'), 300_000);
    const seconds = (performance.now() - t0) / 1000;
    const result = {
      messages: n,
      concurrency: 10,
      seconds: round(seconds, 1),
      msgPerSec: left === 0 ? Math.round(n / seconds) : null,
      left,
      fillSeconds: round(filledMs / 1000, 1),
    };
    log(
      `spool drain: ${n} queued messages delivered in ${result.seconds} s (${result.msgPerSec ?? 'n/a'}/s, spool.concurrency 10)${left ? `; ${left} left` : ''}`,
    );
    return result;
  } finally {
    await mt.stop('SIGTERM');
  }
}

/** N queued messages of about 1 KiB (bench/spool-fill.mjs). */
function fill(dir, n) {
  return fillSpool(dir, n, (i) =>
    Buffer.from(
      `From: App <app@example.com>\r\nTo: <user${i}@example.org>\r\nSubject: Receipt ${i}\r\nMessage-ID: <d${i}@example.com>\r\n\r\n${'Thank you for your order. '.repeat(36)}\r\n`,
    ),
  );
}

/** Waits until the folder is empty (or `timeoutMs`); resolves with how many files are left. */
async function waitEmpty(dir, timeoutMs) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const left = readdirSync(dir).length;
    if (left === 0 || Date.now() > until) return left;
    await sleep(50);
  }
}

function percentiles(values) {
  if (values.length === 0) return { p50: null, p99: null, n: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50: round(at(0.5), 2), p99: round(at(0.99), 2), n: sorted.length };
}

const round = (n, d = 0) => (n === null || !Number.isFinite(n) ? null : Math.round(n * 10 ** d) / 10 ** d);
const pct = (r) => (r === null ? 'n/a' : `${(r * 100).toFixed(0)} %`);

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--drain');
  const drainMessages = i >= 0 ? Number(process.argv[i + 1]) : 10_000;
  const work = mkdtempSync(join(os.tmpdir(), 'mailtrail-bench-spool-'));
  const sink = await startSink();
  try {
    const r = await spoolBench({ sinkPort: sink.port, work, log: (l) => process.stderr.write(`[bench] ${l}\n`), drainMessages });
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  } finally {
    await sink.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
