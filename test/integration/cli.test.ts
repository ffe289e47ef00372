import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, RelayRecord } from '../../src/audit/records.js';
import { CLI, ensureBuilt, ROOT } from '../../soak/mailtrail-child.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage } from '../helpers/relay-harness.js';
import { sendMessage } from '../helpers/smtp-client.js';

const run = promisify(execFile);
const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)/;

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

function startCli(args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; stdin?: string }): RunningCli {
  const proc = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: opts.env, stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  children.add(proc);
  if (opts.stdin !== undefined) proc.stdin!.end(opts.stdin);
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

/**
 * Runs a command to its end. One still running after `withinMs` started something it should not
 * have: it is killed (the result then has signal SIGKILL and no exit code).
 */
async function runCli(args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; stdin?: string }, withinMs = 15_000): Promise<CliRun> {
  const cli = startCli(args, opts);
  const timer = setTimeout(() => cli.proc.kill('SIGKILL'), withinMs);
  try {
    return await cli.exited;
  } finally {
    clearTimeout(timer);
  }
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

    it('escapes control characters from the file in what it prints, so a key cannot drive the terminal', async () => {
      const dir = await folder();
      const name = 'evil\x1b]2;pwned\x07.yaml';
      await writeFile(join(dir, name), '"typo\x1b[2J": 1\n');
      const res = await runCli(['check-config', '--config', name], { cwd: dir, env: cleanEnv(dir) });
      expect(res.code).toBe(1);
      expect(res.stdout + res.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
      expect(res.stderr).toContain('\\x1b[2J');
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

  describe('bad usage', () => {
    /** Where a regression that starts the embedded default would listen: a free port, never 2525 / 8025. */
    async function guardedEnv(dir: string): Promise<NodeJS.ProcessEnv> {
      return cleanEnv(dir, { MAILTRAIL_LISTEN: `127.0.0.1:${await freePort()}`, MAILTRAIL_HTTP: 'off' });
    }

    const COMMANDS = ['serve', 'check-config', 'check-upstream', 'hash-password', 'verify', 'keygen', 'tail', 'report', 'lookup', 'queue'];

    it('serve given a file without --config exits 2 suggesting --config, and starts nothing', async () => {
      const dir = await folder();
      await writeFile(join(dir, 'my.yaml'), 'listen: []\n');
      const res = await runCli(['serve', 'my.yaml'], { cwd: dir, env: await guardedEnv(dir) });
      expect({ code: res.code, stdout: res.stdout }).toEqual({ code: 2, stdout: '' });
      expect(res.stderr.split('\n')[0]).toBe('mailtrail serve: unexpected argument my.yaml; did you mean --config my.yaml?');
      expect(existsSync(join(dir, 'data')), 'the embedded default was started').toBe(false);
    });

    it('check-config given a file without --config exits 2 instead of checking the embedded default', async () => {
      const dir = await folder();
      await writeFile(join(dir, 'my.yaml'), 'listen: []\nupstreams: []\n');
      const res = await runCli(['check-config', 'my.yaml'], { cwd: dir, env: cleanEnv(dir) });
      expect({ code: res.code, stdout: res.stdout }).toEqual({ code: 2, stdout: '' });
      expect(res.stderr.split('\n')[0]).toBe('mailtrail check-config: unexpected argument my.yaml; did you mean --config my.yaml?');
    });

    it.each(COMMANDS)('%s answers an unknown option with one line naming it, its usage and exit 2 (no stack trace)', async (command) => {
      const dir = await folder();
      const res = await runCli([command, '--bogus-option', 'x'], { cwd: dir, env: await guardedEnv(dir), stdin: '' });
      expect(res.code).toBe(2);
      const [first, blank, usage] = res.stderr.split('\n');
      expect(first).toBe(`mailtrail ${command}: unknown option --bogus-option`);
      expect(blank).toBe('');
      expect(usage).toMatch(new RegExp(`^usage: mailtrail ${command}( |$)`, 'i'));
      expect(res.stderr).not.toMatch(/\n\s+at /);
      expect(res.stdout).toBe('');
    });

    it('serve names the option a misspelt one probably was', async () => {
      const dir = await folder();
      const res = await runCli(['serve', '--confg', 'mailtrail.yaml'], { cwd: dir, env: await guardedEnv(dir) });
      expect(res.code).toBe(2);
      expect(res.stderr.split('\n')[0]).toBe('mailtrail serve: unknown option --confg; did you mean --config?');
    });

    it('keygen given a prefix without --out exits 2 suggesting --out, and writes no key', async () => {
      const dir = await folder();
      const res = await runCli(['keygen', 'signing'], { cwd: dir, env: cleanEnv(dir) });
      expect(res.code).toBe(2);
      expect(res.stderr.split('\n')[0]).toBe('mailtrail keygen: unexpected argument signing; did you mean --out signing?');
      expect(await readdir(dir)).toEqual([]);
    });

    it('hash-password refuses a password on the command line without printing it back', async () => {
      const dir = await folder();
      const secret = 'Cmdline-Secret-77gg';
      const res = await runCli(['hash-password', secret], { cwd: dir, env: cleanEnv(dir), stdin: 'from-stdin\n' });
      expect(res.code).toBe(2);
      expect(res.stderr.split('\n')[0]).toMatch(/^mailtrail hash-password: the password is read from standard input/);
      expect(res.stdout + res.stderr).not.toContain(secret);
    });

    it('without a command, lists the commands on stderr and exits 2, starting nothing', async () => {
      const dir = await folder();
      const res = await runCli([], { cwd: dir, env: await guardedEnv(dir) });
      expect({ code: res.code, stdout: res.stdout }).toEqual({ code: 2, stdout: '' });
      for (const command of COMMANDS) expect(res.stderr).toMatch(new RegExp(`^  mailtrail ${command} `, 'm'));
      expect(existsSync(join(dir, 'data')), 'the embedded default was started').toBe(false);
    });

    it("names the command that a command's options were given without", async () => {
      const dir = await folder();
      const res = await runCli(['--config', 'my.yaml'], { cwd: dir, env: await guardedEnv(dir) });
      expect(res.code).toBe(2);
      expect(res.stderr.split('\n')[0]).toBe('mailtrail: no command given; did you mean mailtrail serve --config my.yaml?');
    });

    it('names an unknown command and the one it probably was', async () => {
      const dir = await folder();
      const res = await runCli(['serv'], { cwd: dir, env: await guardedEnv(dir) });
      expect(res.code).toBe(2);
      expect(res.stderr.split('\n')[0]).toBe('mailtrail: unknown command "serv"; did you mean mailtrail serve?');
    });

    it('serve --help prints the usage of serve and exits 0 without starting the relay', async () => {
      const dir = await folder();
      const res = await runCli(['serve', '--help'], { cwd: dir, env: await guardedEnv(dir) });
      expect({ code: res.code, stderr: res.stderr }).toEqual({ code: 0, stderr: '' });
      expect(res.stdout).toMatch(/^usage: mailtrail serve \[--config FILE\]/);
      expect(existsSync(join(dir, 'data')), 'the relay was started').toBe(false);
    });
  });

  describe('help and version', () => {
    it('--version prints the version in package.json, from any folder', async () => {
      const dir = await folder();
      const res = await runCli(['--version'], { cwd: dir, env: cleanEnv(dir) });
      const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
      expect(res).toMatchObject({ code: 0, stdout: `mailtrail ${pkg.version}\n`, stderr: '' });
    });

    it("the README's usage block is the command list mailtrail --help prints", async () => {
      const dir = await folder();
      const res = await runCli(['--help'], { cwd: dir, env: cleanEnv(dir) });
      expect(res.code).toBe(0);
      const listed = /\nUsage:\n((?: {2}.*\n)+)/.exec(res.stdout)?.[1];
      expect(listed, 'no command list in --help').toBeDefined();
      const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
      const block = /\n## Running it\n\n```\n([\s\S]*?)```\n/.exec(readme)?.[1];
      expect(block).toBe(listed!.replace(/^ {2}/gm, ''));
    });
  });

  describe('start-up output', () => {
    it('shows each start-up warning in the banner, before any log line, and logs each once as JSON (not a terminal)', async () => {
      const dir = await folder();
      const port = await freePort();
      await mkdir(join(dir, 'trail'));
      // A trail torn by a crash mid-write: one more start-up warning.
      await writeFile(join(dir, 'trail', 'audit.log'), '{"type":"session","id":"cut short by a cra');
      await writeFile(
        join(dir, 'mailtrail.yaml'),
        [
          'listen:',
          `  - { host: 127.0.0.1, port: ${port} }`,
          'clients: { networks: [127.0.0.0/8] }',
          'upstreams:',
          // Never contacted: no message is sent and the probe is off.
          '  - { name: far, url: "smtp://192.0.2.10:25", tls: { mode: none }, probe: { enabled: false } }',
          'audit: { file: trail/audit.log }',
          'log: { level: info }',
          'hostname: mailtrail.test',
          '',
        ].join('\n'),
      );
      // stdout and stderr into one file, as a terminal (or a journal) shows them: in write order.
      const output = join(dir, 'output.txt');
      const fd = openSync(output, 'w');
      const proc = spawn(process.execPath, [CLI, 'serve', '--config', 'mailtrail.yaml'], { cwd: dir, env: cleanEnv(dir), stdio: ['ignore', fd, fd] });
      children.add(proc);
      closeSync(fd);
      const exited = new Promise<number | null>((r) => proc.once('close', (code) => (children.delete(proc), r(code))));
      const deadline = Date.now() + 15_000;
      while (!/"code":"audit_torn_tail"/.test(readFileSync(output, 'utf8'))) {
        if (Date.now() > deadline) throw new Error(`no start-up warnings logged within 15 s:\n${readFileSync(output, 'utf8')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);

      const lines = readFileSync(output, 'utf8').split('\n');
      expect(lines[0], 'something came before the banner').toBe('mailtrail is running');
      const firstJson = lines.findIndex((l) => l.startsWith('{'));
      const shown = lines
        .slice(0, firstJson)
        .filter((l) => l.startsWith('  warning   '))
        .map((l) => l.slice('  warning   '.length));
      const logged = lines
        .slice(firstJson)
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { level: string; code?: string; msg: string })
        .filter((l) => l.level === 'warn');
      expect(logged.map((l) => l.code).sort()).toEqual(['audit_torn_tail', 'tls_ephemeral', 'upstream_plaintext']);
      expect(shown.sort()).toEqual(logged.map((l) => l.msg).sort());
      expect(shown.find((w) => w.includes('far (192.0.2.10:25)'))).toMatch(/without TLS/);
    });
  });
});
