/**
 * The fault soak: many clients send through mailtrail (a child process) for a fixed time while the
 * fake upstream injects every fault of docs/failures.md at random, and mailtrail is stopped once with
 * SIGTERM and once killed with SIGKILL, each time started again on the same port and trail. Then
 * the ledger (soak/accounting.ts) must balance.
 *
 * Run by test/integration/soak.test.ts (`npm run soak` for the long form, SOAK_SECONDS to choose).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeUpstream } from '../test/helpers/fake-upstream.js';
import { account, formatAccounting, parseTrail, type Accounting } from './accounting.js';
import { injectFaults, type FaultCounts } from './fault-plan.js';
import { startMailtrail, verifyTrail, writeConfig, type MailtrailChild } from './mailtrail-child.js';
import { runClient, type ClientMessage } from './soak-client.js';
import { accountSpool, type SpoolAccounting } from './spool-accounting.js';

export interface SoakOptions {
  readonly seconds: number;
  readonly clients: number;
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /**
   * `spool`: the listener spools (docs/spool.md); after the traffic the upstream heals and the queue
   * drains (at most `drainSeconds`), then the spool ledger (soak/spool-accounting.ts) is checked
   * instead of the pass-through one. Default `passthrough`.
   */
  readonly mode?: 'passthrough' | 'spool';
  readonly drainSeconds?: number;
}

export interface SoakReport {
  /** The pass-through ledger; null in spool mode. */
  readonly accounting: Accounting | null;
  /** The spool ledger; null in pass-through mode. */
  readonly spool: SpoolAccounting | null;
  readonly faults: FaultCounts;
  readonly features: string[];
  readonly restarts: { readonly signal: 'SIGTERM' | 'SIGKILL'; readonly atSeconds: number; readonly exit: string; readonly downMs: number }[];
  readonly connections: { readonly opened: number; readonly refused: number; readonly greetingRefused: number };
  /** `mailtrail verify` on the trail, when this build has it. */
  readonly verify: { readonly ok: boolean; readonly output: string } | null;
  readonly tornLines: number[];
  readonly trailLines: number;
  /** mailtrail's stderr lines at level error or fatal (each instance). */
  readonly errorLogLines: string[];
  readonly text: string;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function errorLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => /"level":"(error|fatal)"/.test(l))
    .slice(0, 20);
}

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const log = opts.log ?? (() => undefined);
  const work = await mkdtemp(join(tmpdir(), 'mailtrail-soak-'));
  const upstream = await startFakeUpstream({ name: 'soak-upstream.test', closeTimeoutMs: 200 });
  const port = await freePort();
  const auditFile = join(work, 'audit.log');
  const spoolMode = opts.mode === 'spool';
  const config = {
    hostname: 'soak.mailtrail.test',
    dataDir: join(work, 'data'),
    log: { level: 'warn' },
    listen: [{ host: '127.0.0.1', port, mode: spoolMode ? 'spool' : 'passthrough' }],
    // Short pauses so the queue drains within the run; an unknown outcome sent again (a possible
    // duplicate, recorded) so nothing waits for an operator.
    ...(spoolMode ? { spool: { retry: { first: '200ms', max: '1s' }, unknownOutcome: 'resend', minFreeSpace: 0 } } : {}),
    clients: { networks: ['127.0.0.0/8'] },
    limits: { maxConnections: 1000, maxConnectionsPerIp: 1000, maxMessageSize: '10MB' },
    timeouts: { clientIdle: '30s', relay: '8s', shutdown: '5s' },
    upstreams: [
      {
        name: 'flaky',
        url: `smtp://127.0.0.1:${upstream.port}`,
        tls: { mode: 'none' },
        pool: { maxConnections: 10, maxMessages: 50, idleTimeout: '5s' },
        timeouts: { connect: '1s', greeting: '1s', socket: '1500ms', total: '6s' },
        // The breaker and the adaptive throttle stay on, tuned so that a third of all upstream
        // operations failing still lets most traffic reach the upstream and meet its faults.
        breaker: { failures: 20, failureRate: 0.9, cooldown: '500ms' },
        rateLimit: { backoff: { initial: '5ms', max: '20ms', decay: '500ms' } },
      },
    ],
    audit: { file: auditFile, chain: true },
    http: { host: '127.0.0.1', port: await freePort() },
  };
  const configFile = join(work, 'mailtrail.yaml');
  const kept = await writeConfig(configFile, config, ['audit.chain', 'http', 'upstreams.0.breaker', 'upstreams.0.rateLimit']);
  const names: Record<string, string> = {
    'audit.chain': 'hash chain',
    http: 'metrics + /healthz',
    'upstreams.0.breaker': 'circuit breaker',
    'upstreams.0.rateLimit': 'adaptive throttle',
  };
  const features = ['audit trail', ...kept.map((k) => names[k] ?? k)];

  let generation = 1;
  let mailtrail: MailtrailChild = await startMailtrail(configFile, generation);
  const instances: MailtrailChild[] = [mailtrail];
  const killed = new Set<number>();
  const restarts: SoakReport['restarts'][number][] = [];
  const started = Date.now();
  log(`mailtrail on :${port} (${features.join(', ')}), fake upstream on :${upstream.port}; ${opts.clients} clients for ${opts.seconds} s`);

  const faults = injectFaults(upstream);
  const messages: ClientMessage[] = [];
  const stats = { connectRefused: 0, greetingRefused: 0, connections: 0 };
  let stopped = false;
  const clients = Array.from({ length: opts.clients }, (_, i) =>
    runClient(
      i,
      { port: () => port, generation: () => generation, runId: Date.now().toString(36), random: Math.random, replyTimeoutMs: 30_000 },
      messages,
      stats,
      () => stopped,
    ),
  );

  const restart = async (signal: 'SIGTERM' | 'SIGKILL'): Promise<void> => {
    const at = (Date.now() - started) / 1000;
    const down = Date.now();
    const old = mailtrail;
    const exit = signal === 'SIGKILL' ? await old.kill() : await old.stop();
    if (signal === 'SIGKILL') killed.add(old.generation);
    generation += 1;
    mailtrail = await startMailtrail(configFile, generation);
    instances.push(mailtrail);
    const entry = { signal, atSeconds: Math.round(at * 10) / 10, exit: exit.signal ?? `exit ${exit.code}`, downMs: Date.now() - down };
    restarts.push(entry);
    log(`${signal} at ${entry.atSeconds} s: ${entry.exit}; back after ${entry.downMs} ms`);
  };

  const runMs = opts.seconds * 1000;
  await sleep(runMs * 0.35);
  await restart('SIGTERM');
  await sleep(Math.max(0, started + runMs * 0.7 - Date.now()));
  await restart('SIGKILL');
  await sleep(Math.max(0, started + runMs - Date.now()));

  stopped = true;
  await Promise.all(clients);
  await faults.stop();
  const meta = join(config.dataDir, 'spool', 'meta');
  const inSpool = async (): Promise<string[]> => (await readdir(meta).catch(() => [])).map((n) => n.replace(/\.json$/, ''));
  if (spoolMode) {
    // The upstream is healthy again: the queue drains (DSNs included).
    const until = Date.now() + (opts.drainSeconds ?? 60) * 1000;
    while ((await inSpool()).length > 0 && Date.now() < until) await sleep(100);
    log(
      `spool drained ${(await inSpool()).length === 0 ? 'completely' : `but for ${(await inSpool()).length} entries`} ${Math.round((Date.now() - started) / 100) / 10} s after the start`,
    );
  }
  const last = await mailtrail.stop();
  const left = new Set(await inSpool());
  restarts.push({ signal: 'SIGTERM', atSeconds: Math.round((Date.now() - started) / 100) / 10, exit: last.signal ?? `exit ${last.code}`, downMs: 0 });
  await upstream.close();

  const trailText = await readFile(auditFile, 'utf8');
  const trail = parseTrail(trailText);
  const accounting = spoolMode ? null : account(messages, upstream.allData, trail, killed);
  const spool = spoolMode ? accountSpool(messages, upstream.allData, trailText, left) : null;
  const verify = await verifyTrail(auditFile);
  const errorLogLines = instances.flatMap((i) => errorLines(i.stderr()));

  const faultLines = Object.entries(faults.counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `  ${String(v).padStart(7)}  ${k}`);
  const text = [
    `soak: ${opts.seconds} s, ${opts.clients} clients, mailtrail with ${features.join(', ')}`,
    `restarts: ${restarts.map((r) => `${r.signal} at ${r.atSeconds} s (${r.exit}${r.downMs ? `, down ${r.downMs} ms` : ''})`).join('; ')}`,
    `client connections: ${stats.connections} opened, ${stats.connectRefused} refused (mailtrail down), ${stats.greetingRefused} not greeted with 220`,
    'faults injected by the upstream:',
    ...faultLines,
    ...(accounting ? [formatAccounting(accounting).replace(/\nsent \d+.*$/, '')] : []),
    ...(spool ? [spool.text, ...spool.problems.map((p) => `  ${p}`)] : []),
    `trail: ${trail.lines} lines, ${trail.relay.length} relay records, ` +
      (trail.tornLines.length ? `torn line(s) ${trail.tornLines.join(', ')} (a record cut by SIGKILL)` : 'no torn line') +
      `; verify: ${verify === null ? 'not available in this build' : verify.ok ? 'ok' : 'FAILED'}${verify ? ` (${verify.output.split('\n').slice(-2).join(' | ')})` : ''}`,
    ...(errorLogLines.length ? ['mailtrail logged errors:', ...errorLogLines.map((l) => `  ${l.slice(0, 300)}`)] : []),
    ...(accounting
      ? [
          `sent ${accounting.sent}, accepted ${accounting.accepted}, delivered ${accounting.delivered}, lost ${accounting.lost}, unaccounted ${accounting.unaccounted}`,
        ]
      : []),
  ].join('\n');

  const balanced = accounting ? accounting.unaccounted === 0 : spool!.problems.length === 0;
  if (balanced && (verify === null || verify.ok)) await rm(work, { recursive: true, force: true });
  else log(`kept the run's files in ${work}`);

  return {
    accounting,
    spool,
    faults: faults.counts,
    features,
    restarts,
    connections: { opened: stats.connections, refused: stats.connectRefused, greetingRefused: stats.greetingRefused },
    verify,
    tornLines: trail.tornLines,
    trailLines: trail.lines,
    errorLogLines,
    text,
  };
}
