/**
 * `npm run bench:fleet`: what sharing state through Redis (`state`) costs a message, and what a
 * message sees while Redis is away.
 *
 * Starts a private redis-server (its own port and folder), a fast sink, and two mailtrail processes
 * on loopback with the same configuration but for `state`: A keeps everything in its process, B
 * shares through Redis. The configuration makes every shared part that can sit on a message's path
 * do so: a fixed egress rate (one GCRA script per message), a per-address message limit (one bucket
 * script at MAIL FROM), the connection rate for every address (one at connect), and the duplicate
 * lookup (one GET while relaying); none of the limits is ever reached. Then, in the same run:
 *
 *   1. A/B: rounds of sequential messages through A and through B, alternated, one new connection
 *      per message (the usual application) and then on one reused connection;
 *   2. Redis killed: how fast B turns degraded (/readyz), a message's time while Redis is down,
 *      how fast B is shared again after Redis restarts;
 *   3. Redis frozen (SIGSTOP: connected, answering nothing): the first message's time (one command
 *      timeout), the next ones', and the way back after SIGCONT.
 *
 * Prints a table and writes bench/results/fleet-latest.json. Needs redis-server (Debian package
 * `redis-server`). Bounded: about 40 s.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT, startMailtrail, writeConfig } from './mailtrail-process.mjs';
import { findProgram, freePort, startSink } from './tools.mjs';
import { runLoad } from './smtp-load.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const PER_ROUND = Number(process.env.BENCH_MESSAGES ?? 150);
const COMMAND_TIMEOUT_MS = 250;

const redisServer = findProgram('redis-server');
if (redisServer === null) {
  console.error('redis-server is not installed (Debian package redis-server)');
  process.exit(2);
}

const work = mkdtempSync(join(os.tmpdir(), 'mailtrail-bench-fleet-'));
const cleanups = [];
const results = {};

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)];
}
function p95(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(s.length * 0.95))];
}
const ms = (x) => `${x.toFixed(2)} ms`;

async function redisPing(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 500);
    s.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    s.on('data', (d) => {
      clearTimeout(timer);
      s.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
    s.write('*1\r\n$4\r\nPING\r\n');
  });
}

async function startRedis(port) {
  const dir = join(work, 'redis');
  mkdirSync(dir, { recursive: true });
  const child = spawn(redisServer, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (let i = 0; i < 200 && !(await redisPing(port)); i++) await sleep(25);
  return child;
}

function killRedis(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  });
}

async function readyz(httpPort) {
  const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
  return res.json();
}

/** Polls /readyz until its sharedState mode is `mode`; the time it took from `since`. */
async function until(httpPort, mode, since, limitMs = 10_000) {
  while (performance.now() - since < limitMs) {
    const r = await readyz(httpPort).catch(() => null);
    if (r?.sharedState?.mode === mode) return performance.now() - since;
    await sleep(2);
  }
  return NaN;
}

async function mailtrail(name, sinkPort, state, httpPort) {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const none = { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null };
  const config = {
    listen: [{ host: '127.0.0.1', port }],
    clients: {
      networks: ['127.0.0.0/8'],
      rateLimits: { perUser: none, perIp: { ...none, messagesPerMinute: 10_000_000 } },
    },
    limits: { connectionRatePerIp: 10_000_000, connectionRateExempt: [] },
    upstreams: [
      {
        name: 'sink',
        url: `smtp://127.0.0.1:${sinkPort}`,
        tls: { mode: 'none' },
        pool: { maxConnections: 20 },
        probe: { enabled: false },
        rateLimit: { messagesPerSecond: 100_000, burst: 100 },
      },
    ],
    audit: { file: join(dir, 'audit.log') },
    dataDir: dir,
    log: { level: 'warn' },
    ...(httpPort ? { http: { host: '127.0.0.1', port: httpPort } } : {}),
    ...(state ? { state } : {}),
  };
  const file = join(dir, 'mailtrail.yaml');
  writeConfig(file, config, []);
  const proc = await startMailtrail({ configFile: file, logFile: join(dir, 'log.txt') });
  cleanups.push(() => proc.stop());
  return { port, proc };
}

async function timed(port, messages, reuse) {
  const r = await runLoad({ port, sessions: 1, messages, reuse, timings: true, deadlineMs: 60_000 });
  if (r.failed > 0) throw new Error(`${r.failed} messages failed: ${r.firstError}`);
  return r.timings;
}

async function main() {
  const redisPort = await freePort();
  let redis = await startRedis(redisPort);
  cleanups.push(() => killRedis(redis));
  const sink = await startSink();
  cleanups.push(() => sink.stop());
  const httpPort = await freePort();
  const state = { redis: `redis://127.0.0.1:${redisPort}/0`, timeout: `${COMMAND_TIMEOUT_MS}ms`, expectedInstances: 2 };
  const a = await mailtrail('local', sink.port, null, null);
  const b = await mailtrail('shared', sink.port, state, httpPort);
  if ((await readyz(httpPort)).sharedState?.mode !== 'shared') throw new Error('B did not start shared');

  // 1. A/B, alternated in rounds so both see the same machine.
  for (const reuse of [false, true]) {
    const local = [];
    const shared = [];
    await timed(a.port, 50, reuse);
    await timed(b.port, 50, reuse);
    for (let round = 0; round < ROUNDS; round++) {
      local.push(...(await timed(a.port, PER_ROUND, reuse)));
      shared.push(...(await timed(b.port, PER_ROUND, reuse)));
    }
    const key = reuse ? 'reusedConnection' : 'newConnection';
    results[key] = {
      messages: local.length,
      local: { median: median(local), p95: p95(local) },
      shared: { median: median(shared), p95: p95(shared) },
      addedMedianMs: median(shared) - median(local),
      addedP95Ms: p95(shared) - p95(local),
    };
  }

  // 2. Redis killed, then started again on the same port.
  const killedAt = performance.now();
  await killRedis(redis);
  const degradedAfterMs = await until(httpPort, 'degraded', killedAt);
  const whileDown = await timed(b.port, 200, false);
  const localNow = await timed(a.port, 200, false);
  const restartedAt = performance.now();
  redis = await startRedis(redisPort);
  const sharedAfterMs = await until(httpPort, 'shared', restartedAt);
  results.redisKilled = {
    degradedAfterMs,
    messageWhileDown: { median: median(whileDown), p95: p95(whileDown), localMedian: median(localNow) },
    sharedAgainAfterRestartMs: sharedAfterMs,
  };

  // 3. Redis frozen: connected, silent.
  await timed(b.port, 20, false);
  redis.kill('SIGSTOP');
  const frozenAt = performance.now();
  const [first] = await timed(b.port, 1, false);
  const degradedFrozenMs = await until(httpPort, 'degraded', frozenAt);
  const next = await timed(b.port, 100, false);
  const thawedAt = performance.now();
  redis.kill('SIGCONT');
  const sharedAfterThawMs = await until(httpPort, 'shared', thawedAt);
  results.redisFrozen = {
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    firstMessageMs: first,
    degradedAfterMs: degradedFrozenMs,
    nextMessages: { median: median(next), p95: p95(next) },
    sharedAgainAfterThawMs: sharedAfterThawMs,
  };

  const nc = results.newConnection;
  const rc = results.reusedConnection;
  const k = results.redisKilled;
  const f = results.redisFrozen;
  const rows = [
    ['new connection per message: local (median / p95)', `${ms(nc.local.median)} / ${ms(nc.local.p95)}`],
    ['new connection per message: shared (median / p95)', `${ms(nc.shared.median)} / ${ms(nc.shared.p95)}`],
    ['  added by Redis (median / p95)', `${ms(nc.addedMedianMs)} / ${ms(nc.addedP95Ms)}`],
    ['reused connection: local (median / p95)', `${ms(rc.local.median)} / ${ms(rc.local.p95)}`],
    ['reused connection: shared (median / p95)', `${ms(rc.shared.median)} / ${ms(rc.shared.p95)}`],
    ['  added by Redis (median / p95)', `${ms(rc.addedMedianMs)} / ${ms(rc.addedP95Ms)}`],
    ['Redis killed: degraded after', ms(k.degradedAfterMs)],
    [
      'Redis down: a message (median / p95; A at the same time)',
      `${ms(k.messageWhileDown.median)} / ${ms(k.messageWhileDown.p95)}; ${ms(k.messageWhileDown.localMedian)}`,
    ],
    ['Redis restarted: shared again after', ms(k.sharedAgainAfterRestartMs)],
    [`Redis frozen: first message (state.timeout ${COMMAND_TIMEOUT_MS} ms)`, ms(f.firstMessageMs)],
    ['Redis frozen: degraded after', ms(f.degradedAfterMs)],
    ['Redis frozen: next messages (median / p95)', `${ms(f.nextMessages.median)} / ${ms(f.nextMessages.p95)}`],
    ['Redis thawed: shared again after', ms(f.sharedAgainAfterThawMs)],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  console.log(`\nmailtrail shared state (Redis), ${ROUNDS} x ${PER_ROUND} messages per side, sink: ${sink.kind}, ${os.cpus().length} cores\n`);
  for (const [label, value] of rows) console.log(`${label.padEnd(width)}  ${value}`);
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'fleet-latest.json'), `${JSON.stringify({ time: new Date().toISOString(), ...results }, null, 2)}\n`);
}

const guard = setTimeout(() => {
  console.error('bench:fleet took over 3 minutes; stopped');
  process.exit(1);
}, 180_000);
guard.unref();

try {
  await main();
} finally {
  for (const stop of cleanups.reverse()) await Promise.resolve(stop()).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
