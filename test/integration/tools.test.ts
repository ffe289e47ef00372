/**
 * The trail tools as an operator runs them: `node dist/cli.js serve` with built-in rotation and
 * compression, a stream of messages with mixed upstream faults, `tail -f` following the trail across
 * the rotations, then `report` and `lookup` over the rotated (gzip) files and the current one.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, RelayRecord } from '../../src/audit/records.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage } from '../helpers/relay-harness.js';
import { sendMessage } from '../helpers/smtp-client.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist', 'cli.js');
const MESSAGES = 120;

async function newestSource(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, await newestSource(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

/** Builds dist/ when cli.js is missing or older than any source file. */
async function ensureBuilt(): Promise<void> {
  const built = existsSync(CLI) ? statSync(CLI).mtimeMs : 0;
  if (built >= (await newestSource(join(ROOT, 'src')))) return;
  await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json')], { cwd: ROOT });
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

const children = new Set<ChildProcess>();

function start(args: string[], cwd: string): { proc: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, [CLI, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => proc.once('close', (code) => (children.delete(proc), r(code))));
  return { proc, out: () => out, err: () => err, exited };
}

async function cli(args: string[], cwd: string): Promise<{ code: number | null; out: string; err: string }> {
  const p = start(args, cwd);
  const code = await p.exited;
  return { code, out: p.out(), err: p.err() };
}

async function until(check: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every record of the trail's files (gzip or plain), oldest file first. */
function trailRecords(files: string[]): AuditRecord[] {
  return files.flatMap((f) => {
    const buf = readFileSync(f);
    const text = (buf[0] === 0x1f && buf[1] === 0x8b ? gunzipSync(buf) : buf).toString('utf8');
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditRecord);
  });
}

describe('the trail tools on a real, rotating trail', () => {
  let dir: string;
  let upstream: FakeUpstream;
  let relay: ReturnType<typeof start>;
  let follower: ReturnType<typeof start>;
  let port: number;
  let files: string[];
  const audit = (): string => join(dir, 'trail', 'audit.log');

  beforeAll(async () => {
    await ensureBuilt();
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-tools-it-'));
    upstream = await startFakeUpstream();
    port = await freePort();
    await writeFile(
      join(dir, 'mailtrail.yaml'),
      [
        'listen:',
        `  - { host: 127.0.0.1, port: ${port} }`,
        'clients: { networks: [127.0.0.0/8] }',
        'upstreams:',
        `  - { name: primary, url: "smtp://127.0.0.1:${upstream.port}", tls: { mode: none } }`,
        'audit:',
        '  file: trail/audit.log',
        '  rotate: { size: 24KB, keep: 50, compress: true }',
        'log: { level: warn }',
      ].join('\n') + '\n',
    );
    relay = start(['serve', '--config', 'mailtrail.yaml'], dir);
    await until(() => relay.out().includes('mailtrail is running'), 'the relay to start', 30_000);
    // -n all: what is already there, then what comes. One message first, to know the follower is up
    // before the trail rotates for the first time.
    follower = start(['tail', '-f', '-n', 'all', '--config', 'mailtrail.yaml'], dir);
    await sendMessage({
      port,
      startTls: false,
      timeoutMs: 30_000,
      from: 'warmup@example.com',
      to: ['r@example.org'],
      raw: simpleMessage({ messageId: '<warmup@example.com>' }),
    });
    await until(() => follower.out().includes('warmup@example.com'), 'tail -f to start', 30_000);

    // Mixed faults, decided per message: mostly delivered, some refused recipients, throttling, spam,
    // lost after the final dot.
    for (let i = 0; i < MESSAGES; i++) {
      const kind = i % 10;
      await upstream.setFaults({
        rcpt: kind === 3 ? (a) => (a.startsWith('gone') ? { code: 550, text: '5.1.1 User unknown' } : null) : undefined,
        mailFrom: kind === 5 ? { code: 454, text: '4.7.0 Throttling failure: Maximum sending rate exceeded.' } : undefined,
        data: kind === 7 ? { code: 554, text: '5.7.1 Message rejected: spam' } : kind === 9 && i % 20 === 9 ? 'drop-after-dot' : undefined,
      });
      const to = kind === 3 ? [`r${i}@example.org`, `gone${i}@example.net`] : [`r${i}@example.org`];
      await sendMessage({
        port,
        startTls: false,
        timeoutMs: 30_000,
        from: `app${i % 4}@example.com`,
        to,
        raw: simpleMessage({ from: `app${i % 4}@example.com`, to: to[0], messageId: `<m${i}@example.com>` }),
      });
    }
    await upstream.resetFaults();
    const relayCount = (): number =>
      follower
        .out()
        .split('\n')
        .filter((l) => / (delivered|partial|deferred|rejected|unknown|aborted) /.test(l)).length;
    await until(() => relayCount() >= MESSAGES + 1, `tail -f to print ${MESSAGES + 1} relay lines (has ${relayCount()})`, 60_000);
    follower.proc.kill('SIGINT');
    expect(await follower.exited).toBe(0);
    relay.proc.kill('SIGTERM');
    expect(await relay.exited).toBe(0);
    files = readdirSync(join(dir, 'trail'))
      .filter((f) => f.startsWith('audit.log.'))
      .sort()
      .map((f) => join(dir, 'trail', f));
    files.push(audit());
  }, 240_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await upstream?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('rotated into several compressed files while it ran', () => {
    expect(files.filter((f) => f.endsWith('.gz')).length).toBeGreaterThanOrEqual(3);
    expect(files.at(-1)).toBe(audit());
  });

  it('tail -f printed every relay record once, in order, across the rotations', () => {
    const relays = trailRecords(files).filter((r): r is RelayRecord => r.type === 'relay');
    expect(relays).toHaveLength(MESSAGES + 1);
    const printed = follower.out().split('\n').filter(Boolean);
    const printedRelayIds = printed.map((l) => l.split(/ {2}/).at(-1)!.replace(/ .*$/, '')).filter((id) => relays.some((r) => r.id === id));
    expect(printedRelayIds).toEqual(relays.map((r) => r.id));
    // Plain text: stdout is a pipe.
    expect(follower.out()).not.toContain('\u001b[');
  });

  it('report over the configured trail and its rotated files counts what a direct count gives', async () => {
    const { code, out } = await cli(['report', '--json', '--config', 'mailtrail.yaml'], dir);
    expect(code).toBe(0);
    const report = JSON.parse(out) as { files: string[]; records: Record<string, number>; outcomes: Record<string, number> };
    expect(report.files).toEqual(files);
    const records = trailRecords(files);
    const relays = records.filter((r): r is RelayRecord => r.type === 'relay');
    expect(report.records.relay).toBe(MESSAGES + 1);
    expect(report.records.session).toBe(records.filter((r) => r.type === 'session').length);
    for (const outcome of ['delivered', 'partial', 'deferred', 'rejected', 'unknown']) {
      expect(report.outcomes[outcome], outcome).toBe(relays.filter((r) => r.outcome === outcome).length);
      expect(report.outcomes[outcome], outcome).toBeGreaterThan(0);
    }
  });

  it('report prints the text summary an operator reads', async () => {
    const { code, out } = await cli(['report', '--config', 'mailtrail.yaml', '--by', 'sender-domain'], dir);
    expect(code).toBe(0);
    expect(out).toMatch(/relayed \(reached DATA\)\s+121/);
    expect(out).toContain('throttled  primary  454 4.7.0 Throttling failure: Maximum sending rate exceeded.');
    expect(out).toMatch(/By sender-domain\n.*\n {2}example\.com +121/);
  });

  it('lookup tells the story of a message kept in a compressed rotated file', async () => {
    const first = trailRecords([files[0]!]).find((r): r is RelayRecord => r.type === 'relay')!;
    const { code, out } = await cli(['lookup', first.message.messageId!, '--config', 'mailtrail.yaml'], dir);
    expect(code).toBe(0);
    expect(out).toContain(`relay  ${first.outcome}`);
    expect(out).toContain(first.id);
    expect(out).toContain(`${files[0]}:`);
    expect(out).toMatch(/session +127\.0\.0\.1/);
  });

  it('tail reads a compressed rotated file given by name', async () => {
    const { code, out } = await cli(['tail', files[0]!, '-n', '3'], dir);
    expect(code).toBe(0);
    expect(out.split('\n').filter(Boolean)).toHaveLength(3);
  });
});
