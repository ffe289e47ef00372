import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, RelayRecord } from '../../src/audit/records.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage } from '../helpers/relay-harness.js';
import { sendMessage } from '../helpers/smtp-client.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist', 'cli.js');
const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)/;

/** Newest modification time under `dir` (files ending in .ts). */
async function newestSource(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
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

/** A port that was free a moment ago (listen on 0, read it, close). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** An environment without the caller's MAILTRAIL_* variables, plus `extra`. */
function cleanEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...extra };
}

interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface RunningCli {
  readonly proc: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves once stdout matches `re`; rejects on exit or timeout, with what was printed. */
  waitForStdout(re: RegExp, timeoutMs?: number): Promise<string>;
  readonly exited: Promise<CliRun>;
}

const children = new Set<ChildProcess>();

function startCli(args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): RunningCli {
  const proc = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<CliRun>((resolveExit) => {
    proc.once('close', (code, signal) => {
      children.delete(proc);
      resolveExit({ code, signal, stdout, stderr });
    });
  });
  return {
    proc,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    async waitForStdout(re, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      let done = false;
      void exited.then(() => (done = true));
      while (!re.test(stdout)) {
        if (done) throw new Error(`mailtrail exited before printing ${re}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
        if (Date.now() > deadline) throw new Error(`no ${re} on stdout within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return stdout;
    },
  };
}

async function runCli(args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<CliRun> {
  return startCli(args, opts).exited;
}

/** SIGTERM, then the exit. */
async function terminate(cli: RunningCli, timeoutMs = 10_000): Promise<CliRun> {
  cli.proc.kill('SIGTERM');
  const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit within ${timeoutMs} ms after SIGTERM`)), timeoutMs));
  return Promise.race([cli.exited, timer]);
}

async function readTrail(file: string): Promise<AuditRecord[]> {
  const text = await readFile(file, 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);
}

describe('the command line', () => {
  let work: string;
  let upstream: FakeUpstream;
  const UPSTREAM_PASS = 'Upstream-Pa55-q8w7e6';

  beforeAll(async () => {
    [, work, upstream] = await Promise.all([
      ensureBuilt(),
      mkdtemp(join(tmpdir(), 'mailtrail-cli-')),
      startFakeUpstream({ auth: { user: 'relay-account', pass: UPSTREAM_PASS } }),
    ]);
  }, 120_000);
  afterEach(() => {
    // A test that failed half-way must not leave a relay running.
    for (const proc of children) proc.kill('SIGKILL');
  });
  afterAll(async () => {
    await upstream.close();
    await rm(work, { recursive: true, force: true });
  });

  /** A fresh folder per test. */
  async function folder(): Promise<string> {
    return mkdtemp(join(work, 'case-'));
  }

  describe('check-config', () => {
    it('exits 0 for a valid file', async () => {
      const dir = await folder();
      await writeFile(
        join(dir, 'mailtrail.yaml'),
        [
          'listen:',
          '  - { host: 127.0.0.1, port: 2525 }',
          'clients:',
          '  networks: [127.0.0.0/8]',
          '  users:',
          '    - username: billing',
          '      password: ${BILLING_PW}',
          '      allowedSenders: ["@example.com"]',
          'upstreams:',
          '  - name: provider',
          '    url: smtp://relay-account:Url-Secret-11aa@smtp.example.net:587',
          'limits: { maxMessageSize: 10MB }',
          'timeouts: { relay: 30s }',
          '',
        ].join('\n'),
      );
      const res = await runCli(['check-config', '--config', 'mailtrail.yaml'], { cwd: dir, env: cleanEnv(dir, { BILLING_PW: 'Env-Secret-22bb' }) });
      expect({ code: res.code, stderr: res.stderr }).toEqual({ code: 0, stderr: '' });
      expect(res.stdout).toMatch(/config ok: mailtrail\.yaml: 1 listener\(s\), 1 upstream\(s\)/);
      expect(res.stdout).not.toContain('Url-Secret-11aa');
      expect(res.stdout).not.toContain('Env-Secret-22bb');
    });

    it('exits 1 listing every problem with its key path, and never a secret value', async () => {
      const dir = await folder();
      const secrets = ['Pw-Secret-33cc', 'Url-Secret-44dd', 'Auth-Secret-55ee', 'Hash-Secret-66ff'];
      await writeFile(
        join(dir, 'broken.yaml'),
        [
          'listen:',
          '  - { host: 127.0.0.1, port: 99999 }',
          'clients:',
          '  networks: [not-a-cidr]',
          '  users:',
          `    - { username: billing, password: ${secrets[0]}, allowedSenders: [nobody] }`,
          `    - { username: ops, password: ${secrets[0]}x, passwordHash: ${secrets[3]} }`,
          'upstreams:',
          `  - { name: provider, url: "http://relay-account:${secrets[1]}@smtp.example.net" }`,
          `  - { name: "bad name!", url: "smtp://smtp.example.net:587", auth: { user: u, pass: ${secrets[2]} } }`,
          'limits: { maxMessageSize: lots }',
          'timeouts: { relay: 5 parsecs }',
          'listne: typo',
          '',
        ].join('\n'),
      );
      const res = await runCli(['check-config', '--config', 'broken.yaml'], { cwd: dir, env: cleanEnv(dir) });
      expect(res.code).toBe(1);
      const out = res.stdout + res.stderr;
      for (const path of [
        'listen[0].port',
        'clients.networks[0]',
        'clients.users[0].allowedSenders[0]',
        'clients.users[1].passwordHash',
        'upstreams[0].url',
        'upstreams[1].name',
        'limits.maxMessageSize',
        'timeouts.relay',
        'listne',
      ]) {
        expect(out, `no problem reported at ${path}`).toMatch(new RegExp(`^\\s*${path.replace(/[[\].]/g, '\\$&')}: \\S`, 'm'));
      }
      for (const secret of secrets) expect(out, 'a secret was printed').not.toContain(secret);
    });
  });

  describe('serve', () => {
    it('starts from a config file, prints the banner, relays, and on SIGTERM exits 0 with the trail flushed', async () => {
      const dir = await folder();
      const port = await freePort();
      await writeFile(
        join(dir, 'mailtrail.yaml'),
        [
          'listen:',
          `  - { host: 127.0.0.1, port: ${port} }`,
          'clients: { networks: [127.0.0.0/8] }',
          'upstreams:',
          `  - { name: provider, url: "smtp://127.0.0.1:${upstream.port}", auth: { user: relay-account, pass: "\${UPSTREAM_PASS}" }, tls: { mode: none } }`,
          'audit: { file: trail/audit.log }',
          'log: { level: warn }',
          'hostname: mailtrail.test',
          '',
        ].join('\n'),
      );
      const cli = startCli(['serve', '--config', join(dir, 'mailtrail.yaml')], { cwd: work, env: cleanEnv(dir, { UPSTREAM_PASS }) });
      const banner = await cli.waitForStdout(/relaying/);
      expect(banner).toContain('mailtrail is running');
      expect(banner).toContain(`SMTP      127.0.0.1:${port}`);
      expect(banner).toContain(`upstream  provider → 127.0.0.1:${upstream.port}`);
      expect(banner).toContain(join(dir, 'trail', 'audit.log'));

      upstream.clearRecords();
      const res = await sendMessage({
        port,
        from: 'app@example.com',
        to: ['ana@example.org'],
        raw: simpleMessage({ messageId: '<cli-serve@example.com>' }),
        startTls: false,
      });
      expect(res).toMatchObject({ ok: true, code: 250 });
      expect(upstream.messages).toHaveLength(1);

      const exit = await terminate(cli);
      expect(exit.code).toBe(0);
      const id = ID_IN_REPLY.exec(res.response ?? '')?.[1];
      const records = await readTrail(join(dir, 'trail', 'audit.log'));
      const record = records.find((r): r is RelayRecord => r.type === 'relay' && r.id === id);
      expect(record).toMatchObject({ outcome: 'delivered', message: { messageId: '<cli-serve@example.com>' } });
      expect(exit.stdout + exit.stderr).not.toContain(UPSTREAM_PASS);
    });

    it('exits 1 listing the problems when the config file is invalid', async () => {
      const dir = await folder();
      await writeFile(join(dir, 'bad.yaml'), 'listen: []\nupstreams: []\n');
      const res = await runCli(['serve', '--config', 'bad.yaml'], { cwd: dir, env: cleanEnv(dir) });
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(/^\s*listen: /m);
      expect(res.stderr).toMatch(/^\s*upstreams: /m);
    });

    it('exits 1 with one line naming the key when a valid config cannot be brought up (no stack trace)', async () => {
      const dir = await folder();
      // A file where the audit folder should be: the trail cannot be opened.
      await writeFile(join(dir, 'not-a-folder'), '');
      await writeFile(
        join(dir, 'mailtrail.yaml'),
        'listen: [{ host: 127.0.0.1, port: 0 }]\nupstreams: [{ name: u, url: "smtp://127.0.0.1:2", tls: { mode: none } }]\naudit: { file: not-a-folder/audit.log }\n',
      );
      const res = await runCli(['serve', '--config', 'mailtrail.yaml'], { cwd: dir, env: cleanEnv(dir) });
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(/^mailtrail: cannot start: audit\.file: ENOTDIR: not a directory/m);
      expect(res.stderr).not.toMatch(/\n\s+at /);
    });
  });

  describe('the embedded default', () => {
    async function startDefault(): Promise<{ cli: RunningCli; cwd: string; port: number }> {
      const cwd = await folder();
      const port = await freePort();
      const cli = startCli(['serve'], { cwd, env: cleanEnv(cwd, { MAILTRAIL_LISTEN: `127.0.0.1:${port}` }) });
      await cli.waitForStdout(/relaying/);
      return { cli, cwd, port };
    }

    it('relays to the built-in local sink, keeping the .eml in ./data/sink and the trail in ./data/audit.log', async () => {
      const { cli, cwd, port } = await startDefault();
      expect(cli.stdout()).toContain('local-sink');
      const raw = simpleMessage({ messageId: '<cli-default@example.com>', body: 'Straight to the sink.' });
      const res = await sendMessage({ port, from: 'app@example.com', to: ['you@example.org'], raw, startTls: false });
      expect(res).toMatchObject({ ok: true, code: 250 });

      const exit = await terminate(cli);
      expect(exit.code).toBe(0);
      const emls = (await readdir(join(cwd, 'data', 'sink'))).filter((f) => f.endsWith('.eml'));
      expect(emls).toHaveLength(1);
      expect(await readFile(join(cwd, 'data', 'sink', emls[0]!))).toEqual(raw);
      const id = ID_IN_REPLY.exec(res.response ?? '')?.[1];
      const records = await readTrail(join(cwd, 'data', 'audit.log'));
      expect(records.find((r) => r.type === 'relay' && r.id === id)).toMatchObject({
        outcome: 'delivered',
        upstream: { name: 'local-sink' },
      });
    });

    it('answers swaks with 250', async (ctx) => {
      const swaks = await run('which', ['swaks']).then(
        (r) => r.stdout.trim(),
        () => '',
      );
      if (swaks === '' && process.env.CI) throw new Error('swaks is not installed (.ci/run installs it)');
      ctx.skip(swaks === '', 'swaks is not installed');
      const { cli, port } = await startDefault();
      const res = await run(swaks, ['--server', `127.0.0.1:${port}`, '--from', 'app@example.com', '--to', 'you@example.org', '--timeout', '10'], {
        timeout: 20_000,
      }).catch((err: Error & { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? '', stderr: `${err.message}\n${err.stderr ?? ''}` }));
      expect(res.stdout).toMatch(/^<- {2}250 .*\(id [0-9A-HJKMNP-TV-Z]{26}\)/m);
      expect((await terminate(cli)).code).toBe(0);
    });
  });
});
