/**
 * `mailtrail serve --workers N` as an operator runs it: the built CLI, a config file, real signals.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/records.js';
import { CLI, ensureBuilt } from '../../soak/mailtrail-child.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage } from '../helpers/relay-harness.js';
import { sendMessage } from '../helpers/smtp-client.js';

const run = promisify(execFile);

interface Served {
  readonly proc: ChildProcess;
  readonly out: () => string;
  readonly err: () => string;
  readonly smtpPort: number;
  readonly httpUrl: string;
  readonly exited: Promise<number | null>;
}

let dir = '';
let upstream: FakeUpstream | null = null;
const procs = new Set<ChildProcess>();

beforeAll(async () => {
  await ensureBuilt();
});

afterEach(async () => {
  for (const p of procs) p.kill('SIGKILL');
  procs.clear();
  await upstream?.close();
  upstream = null;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = '';
});

afterAll(() => {
  for (const p of procs) p.kill('SIGKILL');
});

async function waitFor(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function writeConfig(extra = 'workers: { count: 2, allowLocalLimits: true }', port = 0): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'mailtrail-workers-'));
  upstream ??= await startFakeUpstream();
  const file = join(dir, 'mailtrail.yaml');
  await writeFile(
    file,
    `listen: [{ host: 127.0.0.1, port: ${port} }]
upstreams: [{ name: fake, url: "smtp://127.0.0.1:${upstream.port}", tls: { mode: none }, probe: { enabled: false } }]
clients: { networks: [127.0.0.0/8] }
http: { host: 127.0.0.1, port: 0 }
instance: { id: mt-a }
dataDir: ./data
${extra}
`,
  );
  return file;
}

async function serve(file: string, args: string[] = []): Promise<Served> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', file, ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.add(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
  await waitFor(() => out.includes('  http ') || proc.exitCode !== null, 'the banner');
  const smtpPort = Number(/SMTP +127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
  const httpUrl = /http +(http:\/\/\S+)/.exec(out)?.[1] ?? '';
  return { proc, out: () => out, err: () => err, smtpPort, httpUrl, exited };
}

function trail(n: number): AuditRecord[] {
  return readFileSync(join(dir, 'data', `audit.log.w${n}`), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);
}

const send = (port: number, i: number) =>
  sendMessage({ port, from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ messageId: `<w-${i}@example.com>` }), startTls: false });

async function workerPids(supervisor: number): Promise<number[]> {
  const { stdout } = await run('pgrep', ['-P', String(supervisor)]);
  return stdout.trim().split('\n').filter(Boolean).map(Number);
}

describe('mailtrail serve --workers', () => {
  it('shares one listener among two workers, each with its own trail, chain and instance, behind one banner and one endpoint', async () => {
    const s = await serve(await writeConfig());
    expect(s.out().match(/mailtrail is running/g)).toHaveLength(1);
    expect(s.out()).toMatch(/workers {3}2 processes sharing the listeners: instances mt-a\.w1 … mt-a\.w2/);
    for (let i = 0; i < 8; i++) expect(await send(s.smtpPort, i), s.out()).toMatchObject({ ok: true, code: 250 });
    const [w1, w2] = [trail(1).filter((r) => r.type === 'relay'), trail(2).filter((r) => r.type === 'relay')];
    // Round-robin: both workers relayed, each record in its own worker's trail and chain.
    expect(w1.length + w2.length).toBe(8);
    expect(w1.length).toBeGreaterThan(0);
    expect(w2.length).toBeGreaterThan(0);
    expect(new Set(w1.map((r) => r.instance))).toEqual(new Set(['mt-a.w1']));
    expect(new Set(w2.map((r) => r.instance))).toEqual(new Set(['mt-a.w2']));
    expect(trail(1)[0]!.seq).toBe(1);
    expect(trail(2)[0]!.seq).toBe(1);
    const metrics = await (await fetch(`${s.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^mailtrail_relay_transactions_total\{outcome="delivered",class="none",upstream="fake"\} 8$/m);
    expect(metrics).toMatch(/^mailtrail_workers\{state="ready"\} 2$/m);
    const api = (await (await fetch(`${s.httpUrl}/api/transactions?messageId=${encodeURIComponent('<w-3@example.com>')}`)).json()) as {
      transactions: unknown[];
    };
    expect(api.transactions).toHaveLength(1);
    s.proc.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('restarts a worker that dies, and says so in the log', async () => {
    const s = await serve(await writeConfig());
    const [victim] = await workerPids(s.proc.pid!);
    process.kill(victim!, 'SIGKILL');
    await waitFor(() => s.err().includes('"msg":"worker restarted"'), 'the restart');
    expect(s.err()).toMatch(/"signal":"SIGKILL".*"msg":"worker died; restarting it"/);
    expect(await workerPids(s.proc.pid!)).toHaveLength(2);
    for (let i = 0; i < 4; i++) expect(await send(s.smtpPort, i)).toMatchObject({ code: 250 });
    const metrics = await (await fetch(`${s.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^mailtrail_worker_restarts_total 1$/m);
    s.proc.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('on SIGTERM lets every worker finish the messages in flight, then exits 0', async () => {
    upstream = await startFakeUpstream({ faults: { delayMs: { data: 1_500 } } });
    const s = await serve(await writeConfig());
    const sends = [0, 1, 2, 3].map((i) => send(s.smtpPort, i));
    // Every message has reached the upstream, which holds its verdict 1.5 s: all four are in flight.
    await waitFor(() => upstream!.allData.length >= 4, 'four messages at the upstream');
    s.proc.kill('SIGTERM');
    const results = await Promise.all(sends);
    expect(results.map((r) => r.code)).toEqual([250, 250, 250, 250]);
    expect(await s.exited).toBe(0);
    const relayed = [...trail(1), ...trail(2)].filter((r) => r.type === 'relay');
    expect(relayed).toHaveLength(4);
    expect(s.err()).toMatch(/every worker finishes its transactions in flight/);
  });

  it('stops every worker and exits 1 when one cannot start, naming it and why', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const s = await serve(await writeConfig(undefined, (taken.address() as AddressInfo).port));
      expect(await s.exited).toBe(1);
      expect(s.err()).toMatch(/^mailtrail: cannot start: worker \d: listen: .*EADDRINUSE/m);
      expect(s.err()).not.toContain('restarting');
      expect(s.out()).not.toContain('mailtrail is running');
    } finally {
      taken.close();
    }
  });

  it('refuses to start several processes while limits are kept per process, naming the keys', async () => {
    const s = await serve(await writeConfig('limits: { connectionRatePerIp: 30 }'), ['--workers', '3']);
    expect(await s.exited).toBe(1);
    expect(s.err()).toMatch(/^mailtrail: cannot start: workers: 3 processes would each allow the full limit of limits\.connectionRatePerIp /m);
    expect(s.err()).toContain('set state.redis');
  });
});
