/**
 * `npm run bench`: mailtrail against the physical limit of this machine.
 *
 * Starts a fast sink and mailtrail (a child process, production configuration: audit trail, hash
 * chain and metrics when this build has them) on loopback, then measures in the same run sending
 * straight to the sink and through mailtrail, so each figure is a ratio that survives a noisy
 * machine. Prints a table and writes bench/results/latest.json.
 *
 *   npm run bench                      the whole run, about 1.5 minutes, bounded at 3
 *   npm run bench -- --profile         the same with mailtrail under `node --cpu-prof`; prints the
 *                                      hot spots and keeps the .cpuprofile in bench/results/
 *   npm run bench -- --only="1 KiB c=20"   only the throughput scenarios whose label matches
 *   BENCH_SECONDS=1 npm run bench      shorter runs per scenario (default 2.5 s)
 *   BENCH_TOOLS=node npm run bench     the bench's own sink and load generator instead of Postfix's
 *
 * It also compares one process with `workers: 2` (docs/fleet.md) at 1 KiB c=20: each against the
 * sink directly, in the same run, CPU per message counting the supervisor and its workers.
 *
 *   BENCH_NODE_ARGS= npm run bench     Node.js options for mailtrail (default: the shipped heap
 *                                      settings, --max-old-space-size=192 --max-semi-space-size=2;
 *                                      empty: none)
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { hasVerify, ROOT, startMailtrail, writeConfig } from './mailtrail-process.mjs';
import { cpuMs, cpuMsTree, memory, sampleRss, toMiB } from './proc-stats.mjs';
import { summarizeProfile, formatProfile } from './profile-summary.mjs';
import { printReport } from './report.mjs';
import { freePort, generateLoad, loadGeneratorKind, ownLoad, startSink } from './tools.mjs';
import { openIdle } from './smtp-load.mjs';

const MiB = 1024 * 1024;
const RUN_SECONDS = Number(process.env.BENCH_SECONDS ?? 2.5);
/** Hard bound on the whole run: whatever is still going then is stopped and reported as such. */
const BUDGET_MS = 170_000;
const profile = process.argv.includes('--profile');
/**
 * Node.js options for the mailtrail process. Default: the heap cap the Dockerfile and the systemd unit
 * ship with; BENCH_NODE_ARGS= (empty) runs without it.
 */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '--max-old-space-size=192 --max-semi-space-size=2').split(' ').filter(Boolean);
/** `--only=PATTERN`: run only the throughput scenarios whose label contains PATTERN (for profiling). */
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length) ?? null;

const SCENARIOS = [];
for (const size of [1024, 100 * 1024]) {
  for (const sessions of [1, 20]) {
    for (const reuse of [false, true]) SCENARIOS.push({ size, sessions, reuse });
  }
}

/** The goals (never asserted: printed next to the figures). */
export const TARGETS = {
  ratio1kNew: 0.25,
  ratio1kReused: 0.2,
  ratio100k: 0.3,
  addedLatencyMs: 1.5,
  cpuMsPer1k: 1.0,
  rssUnderLoadMiB: 128,
  rss50MBAddedMiB: 32,
  rss1000IdleMiB: 256,
};

async function main() {
  const started = Date.now();
  const budgetLeft = () => BUDGET_MS - (Date.now() - started);
  const work = mkdtempSync(join(os.tmpdir(), 'mailtrail-bench-'));
  const results = { startedAt: new Date().toISOString(), machine: machine(), runSeconds: RUN_SECONDS, profiled: profile, nodeArgs: NODE_ARGS };
  let sink = null;
  let mt = null;
  let setup;
  try {
    sink = await startSink();
    results.tools = { sink: sink.kind, load: loadGeneratorKind(), latency: 'bench smtp-load (node)' };
    setup = await mailtrailConfig(work, sink.port);
    results.features = setup.features;
    const profDir = join(work, 'prof');
    mt = await startMailtrail({
      configFile: setup.file,
      logFile: join(work, 'mailtrail.log'),
      nodeArgs: [...NODE_ARGS, ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])],
    });
    log(`sink: ${sink.kind} on :${sink.port}; load: ${results.tools.load}; mailtrail pid ${mt.pid} on :${setup.port}`);
    log(`features: ${setup.features.join(', ') || 'audit trail only'}`);
    results.memory = { idleRssMiB: toMiB(memory(mt.pid).rss) };

    const rss = sampleRss(mt.pid);
    results.throughput = [];
    for (const s of SCENARIOS) {
      if (only !== null && !label(s).includes(only)) continue;
      if (budgetLeft() < 60_000) {
        log('time budget: skipping the remaining throughput scenarios');
        break;
      }
      results.throughput.push(await throughput(s, sink.port, setup.port, mt.pid));
    }
    results.memory.peakRssUnderLoadMiB = toMiB(rss.stop());
    results.memory.hwmAfterLoadMiB = toMiB(memory(mt.pid).hwm);
    if (only === null || only === 'workers') {
      if (budgetLeft() < 70_000) log('time budget: skipping the workers comparison');
      else results.workers = await workersComparison(work, sink.port);
    }
    if (only === null) results.floor = await floor(sink.port);

    if (only === null) {
      results.latency = await latency(sink.port, setup.port);
      results.memory.bigMessage = await bigMessage(setup.port, mt.pid);
      results.memory.idleConnections = await idleConnections(setup.port, mt.pid);
    }
    results.trail = trailCheck(setup.auditFile);
    if (setup.httpPort) results.http = await httpCheck(setup.httpPort);
  } finally {
    if (mt) await mt.stop('SIGTERM');
    if (sink) await sink.stop();
  }
  // After a clean stop the whole trail must verify (when this build has `mailtrail verify`).
  if (setup && results.trail && hasVerify()) results.trail.verify = verifyTrail(setup.auditFile);
  results.elapsedSeconds = Math.round((Date.now() - started) / 100) / 10;

  printReport(results, TARGETS);
  if (profile) {
    const prof = readdirSync(join(work, 'prof')).find((f) => f.endsWith('.cpuprofile'));
    if (prof) {
      const kept = join(ROOT, 'bench', 'results', 'mailtrail.cpuprofile');
      copyFileSync(join(work, 'prof', prof), kept);
      results.profile = summarizeProfile(JSON.parse(readFileSync(kept, 'utf8')), results.trail?.relayRecords ?? null);
      process.stdout.write('\n' + formatProfile(results.profile) + `\nprofile kept in bench/results/mailtrail.cpuprofile (open it in Chrome DevTools)\n`);
    }
  }
  // A partial or profiled run must not replace the figures of the last full run.
  const out = join(ROOT, 'bench', 'results', profile || only !== null ? 'latest-partial.json' : 'latest.json');
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
  process.stdout.write(`\nresults written to ${out.slice(ROOT.length)}\n`);
  rmSync(work, { recursive: true, force: true });
}

/** The production configuration, on loopback, pointing at the sink. */
async function mailtrailConfig(work, sinkPort, extra = {}) {
  const port = await freePort();
  const httpPort = await freePort();
  const auditFile = join(work, 'audit.log');
  const config = {
    hostname: 'bench.mailtrail.test',
    dataDir: join(work, 'data'),
    log: { level: 'info' },
    listen: [{ host: '127.0.0.1', port }],
    clients: { networks: ['127.0.0.0/8'] },
    // Raised from the defaults (500 / 50 per address) only so the 1,000-idle-connection figure can be
    // taken from one address, and the 50 MB message is allowed.
    limits: { maxMessageSize: '64MB', maxConnections: 2000, maxConnectionsPerIp: 2000 },
    upstreams: [{ name: 'sink', url: `smtp://127.0.0.1:${sinkPort}`, tls: { mode: 'none' }, pool: { maxConnections: 20, maxMessages: 1000 } }],
    audit: { file: auditFile, fsync: false, chain: true },
    http: { host: '127.0.0.1', port: httpPort },
    ...extra,
  };
  const file = join(work, 'mailtrail.yaml');
  const kept = writeConfig(file, config, ['audit.chain', 'http']);
  const features = ['audit trail', ...kept.map((k) => (k === 'audit.chain' ? 'hash chain' : k === 'http' ? 'metrics + /healthz' : k))];
  return { file, port, auditFile, features, httpPort: kept.includes('http') ? httpPort : null };
}

/** Picks a message count that takes about RUN_SECONDS from a short pilot run (which also warms up). */
async function timedRun(target, s) {
  const pilotCount = Math.max(s.sessions * 4, s.size > 10_000 ? 40 : 100);
  const pilot = await generateLoad({ port: target, ...s, messages: pilotCount, timeoutMs: 30_000 });
  if (pilot.failed > 0) return { ...pilot, rate: 0 };
  const rate = pilot.sent / (pilot.elapsedMs / 1000);
  const messages = Math.max(s.sessions * 10, Math.min(200_000, Math.round(rate * RUN_SECONDS)));
  return runMeasured(target, s, messages);
}

async function runMeasured(target, s, messages) {
  const r = await generateLoad({ port: target, ...s, messages, timeoutMs: Math.max(30_000, RUN_SECONDS * 8000) });
  return { ...r, messages, rate: r.failed > 0 ? 0 : r.sent / (r.elapsedMs / 1000) };
}

function label(s) {
  return `${s.size >= 1024 * 100 ? '100 KiB' : '1 KiB'} c=${s.sessions} ${s.reuse ? 'reused' : 'new conn'}`;
}

async function throughput(s, sinkPort, mtPort, pid, cpuOf = cpuMs) {
  const direct = await timedRun(sinkPort, s);
  // Through mailtrail: pilot first (warm-up), then the measured run with CPU read around it.
  const pilot = await generateLoad({ port: mtPort, ...s, messages: Math.max(s.sessions * 4, 40), timeoutMs: 30_000 });
  const guess = pilot.failed > 0 ? 0 : pilot.sent / (pilot.elapsedMs / 1000);
  const messages = Math.max(s.sessions * 10, Math.min(100_000, Math.round(guess * RUN_SECONDS)));
  const cpu0 = cpuOf(pid);
  const through = await runMeasured(mtPort, s, messages);
  const cpu1 = cpuOf(pid);
  const row = {
    label: label(s),
    ...s,
    direct: { msgPerSec: round(direct.rate), messages: direct.messages, error: direct.error ?? null },
    through: { msgPerSec: round(through.rate), messages: through.messages, error: through.error ?? null },
    ratio: direct.rate > 0 ? through.rate / direct.rate : null,
    cpuMsPerMessage: cpu0 !== null && cpu1 !== null && through.sent > 0 ? (cpu1 - cpu0) / through.sent : null,
  };
  log(
    `${row.label}: direct ${row.direct.msgPerSec}/s, through ${row.through.msgPerSec}/s (${pct(row.ratio)}), ${fix(row.cpuMsPerMessage, 2)} CPU-ms/msg` +
      (through.error ? `  ERROR ${through.error}` : '') +
      (direct.error ? `  DIRECT ERROR ${direct.error}` : ''),
  );
  return row;
}

/**
 * 1 KiB c=20 through one process (`workers: 1`) and through a supervisor with two workers
 * (`workers: 2`), each with its own mailtrail started for it, against the sink directly in between.
 * On a 2-core machine the load generator and the sink share the cores with the workers, so the
 * figure shows what a second process buys when the machine is already busy, not on an idle 8-core.
 */
async function workersComparison(work, sinkPort) {
  const rows = [];
  for (const count of [1, 2]) {
    const dir = join(work, `workers-${count}`);
    mkdirSync(dir, { recursive: true });
    const setup = await mailtrailConfig(dir, sinkPort, { workers: { count, allowLocalLimits: true } });
    let mt = null;
    try {
      mt = await startMailtrail({ configFile: setup.file, logFile: join(dir, 'mailtrail.log'), nodeArgs: NODE_ARGS, timeoutMs: 30_000 });
      for (const reuse of [false, true]) {
        const s = { size: 1024, sessions: 20, reuse };
        const row = await throughput(s, sinkPort, setup.port, mt.pid, cpuMsTree);
        rows.push({ ...row, label: `${row.label}, workers: ${count}`, workers: count });
      }
    } finally {
      if (mt) await mt.stop('SIGTERM');
    }
  }
  return rows;
}

/**
 * The floor: a bare smtp-server that relays and records nothing (bench/bare-smtp-server.mjs), at
 * 1 KiB c=20. Whatever it costs per message is the library's share of mailtrail's cost.
 */
async function floor(sinkPort) {
  const port = await freePort();
  const child = spawn(process.execPath, [join(ROOT, 'bench', 'bare-smtp-server.mjs'), String(port)], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((resolve) => child.stdout.once('data', resolve));
  const rows = [];
  try {
    for (const reuse of [false, true]) {
      const s = { size: 1024, sessions: 20, reuse };
      const direct = await timedRun(sinkPort, s);
      await generateLoad({ port, ...s, messages: 400, timeoutMs: 30_000 });
      const cpu0 = cpuMs(child.pid);
      const bare = await timedRun(port, s);
      const cpu1 = cpuMs(child.pid);
      const row = {
        label: `${label(s)}, bare smtp-server`,
        direct: { msgPerSec: round(direct.rate) },
        bare: { msgPerSec: round(bare.rate), error: bare.error ?? null },
        ratio: direct.rate > 0 ? bare.rate / direct.rate : null,
        // Includes the pilot run that timedRun makes first.
        cpuMsPerMessage: cpu0 !== null && cpu1 !== null ? (cpu1 - cpu0) / (bare.sent + Math.max(s.sessions * 4, 100)) : null,
      };
      rows.push(row);
      log(`floor ${row.label}: direct ${row.direct.msgPerSec}/s, bare ${row.bare.msgPerSec}/s (${pct(row.ratio)}), ${fix(row.cpuMsPerMessage, 2)} CPU-ms/msg`);
    }
  } finally {
    child.kill('SIGTERM');
  }
  return rows;
}

/** One client, 1 KiB, each message timed by the client; direct and through, new and reused connections. */
async function latency(sinkPort, mtPort) {
  const out = {};
  for (const reuse of [false, true]) {
    const opts = { sessions: 1, messages: 3000, size: 1024, reuse, timings: true, deadlineMs: RUN_SECONDS * 1000 };
    await ownLoad({ ...opts, port: mtPort, messages: 200 }); // warm-up
    const direct = await ownLoad({ ...opts, port: sinkPort });
    const through = await ownLoad({ ...opts, port: mtPort });
    const d = percentiles(direct.timings ?? []);
    const t = percentiles(through.timings ?? []);
    out[reuse ? 'reused' : 'newConnection'] = {
      direct: d,
      through: t,
      addedMs: { p50: t.p50 - d.p50, p99: t.p99 - d.p99 },
      messages: { direct: direct.sent, through: through.sent },
      error: through.error ?? direct.error ?? null,
    };
    log(
      `latency ${reuse ? 'reused' : 'new conn'}: direct p50 ${fix(d.p50, 3)} ms p99 ${fix(d.p99, 3)} ms; through p50 ${fix(t.p50, 3)} ms p99 ${fix(t.p99, 3)} ms`,
    );
  }
  return out;
}

/** RSS before, at peak while one 50 MiB message is relayed, and after. */
async function bigMessage(mtPort, pid) {
  await sleep(1000);
  const before = memory(pid).rss;
  const sampler = sampleRss(pid, 20);
  const r = await ownLoad({ port: mtPort, sessions: 1, messages: 1, size: 50 * MiB, reuse: false, deadlineMs: 60_000 });
  const peak = sampler.stop();
  await sleep(1000);
  const after = memory(pid).rss;
  const out = {
    sizeMiB: 50,
    ok: r.sent === 1,
    error: r.error ?? null,
    seconds: round(r.elapsedMs / 1000, 2),
    beforeMiB: toMiB(before),
    peakMiB: toMiB(peak),
    afterMiB: toMiB(after),
    addedMiB: toMiB(peak - before),
  };
  log(`50 MiB message: ${out.ok ? 'relayed' : 'FAILED ' + out.error} in ${out.seconds} s; RSS ${out.beforeMiB} → peak ${out.peakMiB} → ${out.afterMiB} MiB`);
  return out;
}

/** RSS with 1,000 client connections open and idle (greeted, nothing sent). */
async function idleConnections(mtPort, pid) {
  const before = memory(pid).rss;
  const idle = await openIdle(mtPort, 1000);
  await sleep(2000);
  const during = memory(pid).rss;
  idle.close();
  await sleep(1000);
  const after = memory(pid).rss;
  const out = { connections: 1000, greeted: idle.greeted, refused: idle.refused, beforeMiB: toMiB(before), withIdleMiB: toMiB(during), afterMiB: toMiB(after) };
  log(`1000 idle connections: ${idle.greeted} greeted, ${idle.refused} refused; RSS ${out.beforeMiB} → ${out.withIdleMiB} → ${out.afterMiB} MiB`);
  return out;
}

/** Every message relayed through mailtrail has one relay record with a 2xx reply. */
function trailCheck(file) {
  let relay = 0;
  let accepted = 0;
  let torn = 0;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      const r = JSON.parse(line);
      if (r.type !== 'relay') continue;
      relay += 1;
      if (r.clientReply?.code >= 200 && r.clientReply?.code < 300) accepted += 1;
    } catch {
      torn += 1;
    }
  }
  return { relayRecords: relay, accepted, unparsable: torn };
}

function verifyTrail(file) {
  const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'verify', file], { encoding: 'utf8', timeout: 60_000 });
  return { exitCode: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-3).join(' | ') };
}

async function httpCheck(port) {
  try {
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
    const text = await metrics.text();
    return { healthz: health.status, metrics: metrics.status, metricLines: text.split('\n').filter((l) => l && !l.startsWith('#')).length };
  } catch (err) {
    return { error: String(err?.message ?? err) };
  }
}

function percentiles(values) {
  if (values.length === 0) return { p50: NaN, p99: NaN, n: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50: at(0.5), p99: at(0.99), n: sorted.length };
}

function machine() {
  return { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null, loadavg: os.loadavg().map((l) => round(l, 2)) };
}

const round = (n, d = 0) => (n === null || !Number.isFinite(n) ? null : Math.round(n * 10 ** d) / 10 ** d);
const fix = (n, d) => (n === null || !Number.isFinite(n) ? 'n/a' : n.toFixed(d));
const pct = (r) => (r === null ? 'n/a' : `${(r * 100).toFixed(1)} %`);
const log = (line) => process.stderr.write(`[bench] ${line}\n`);

main().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
