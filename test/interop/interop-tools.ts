/**
 * Real SMTP software for the interop tests: finding the Debian tools (swaks, curl, python3, Postfix's
 * smtp-sink and master), running them, and starting a private Postfix instance on a loopback port.
 *
 * `.ci/run` installs the packages. On a developer machine without them the tests that need a tool
 * are skipped with a note; under CI (CI=true) a missing tool is a failure, so a broken install step
 * cannot hide behind skipped tests.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';

/** Full path of `name` on PATH or in the sbin folders, or null. */
export function findTool(name: string): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin']) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // keep looking
    }
  }
  return null;
}

/** True when every tool is there; under CI a missing one throws instead. */
export function haveTools(...names: string[]): boolean {
  const missing = names.filter((n) => findTool(n) === null);
  if (missing.length === 0) return true;
  if (process.env.CI) throw new Error(`interop tools missing: ${missing.join(', ')} (.ci/run installs them)`);
  process.stderr.write(`[interop] skipped: ${missing.join(', ')} not installed\n`);
  return false;
}

export interface ToolRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to its end (never throws on a non-zero exit). */
export function runTool(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ToolRun> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 20_000, env: opts.env ?? process.env, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (((err as { code?: unknown }).code as number | null) ?? null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface SmtpSink {
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * Postfix's smtp-sink on a free loopback port. `args` are extra options (`-q .` drops the connection
 * after the final dot, `-r MAIL` refuses MAIL with 4xx, ...). As root it must drop privileges (-u).
 */
export async function startSmtpSink(args: string[] = []): Promise<SmtpSink> {
  const port = await freePort();
  const user = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const child: ChildProcess = spawn(findTool('smtp-sink')!, [...user, '-a', '-C', '-F', ...args, `127.0.0.1:${port}`, '64'], { stdio: 'ignore' });
  await waitForPort(port);
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

export interface PostfixInstance {
  readonly port: number;
  readonly dir: string;
  /** Postfix's own log (maillog_file). */
  maillog(): Promise<string>;
  /** Resolves once the log has a line matching `re`. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Can this process run a Postfix master (root, and Postfix's programs installed)? */
export function canRunPostfix(): boolean {
  if (!haveTools('postfix', 'postconf')) return false;
  if (userInfo().uid !== 0) {
    if (process.env.CI) throw new Error('the Postfix interop test must run as root (the Postfix master needs it)');
    process.stderr.write('[interop] skipped: Postfix needs root\n');
    return false;
  }
  return true;
}

/**
 * A private Postfix instance (its own config, queue and log folders under a temp dir), listening on
 * 127.0.0.1:<free port>, relaying nothing: every accepted message goes to the `discard` transport
 * and is logged as `status=sent (interop)`. STARTTLS with the given certificate; no SASL.
 * `mainCf` adds or overrides main.cf lines (restrictions, size limit, header checks).
 */
export async function startPostfix(opts: { cert: string; key: string; mainCf?: string[]; files?: Record<string, string> }): Promise<PostfixInstance> {
  const dir = await mkdtemp(join(tmpdir(), 'mailtrail-postfix-'));
  // mkdtemp makes it 0700; Postfix's daemons run as the postfix user and must reach data/ and queue/.
  await chmod(dir, 0o755);
  await mkdir(join(dir, 'queue'));
  await mkdir(join(dir, 'data'));
  // Postfix's master keeps its lock there and drops privileges to the postfix user.
  await chown(join(dir, 'data'), uidOf('postfix'), -1);
  await writeFile(join(dir, 'cert.pem'), opts.cert);
  await writeFile(join(dir, 'key.pem'), opts.key, { mode: 0o600 });
  for (const [name, text] of Object.entries(opts.files ?? {})) await writeFile(join(dir, name), text);
  const masterProto = await readFile('/etc/postfix/master.cf', 'utf8').catch(() => MINIMAL_MASTER_CF);

  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const mainCf = [
      'compatibility_level = 3.6',
      `queue_directory = ${dir}/queue`,
      `data_directory = ${dir}/data`,
      'mail_owner = postfix',
      'setgid_group = postdrop',
      'inet_interfaces = 127.0.0.1',
      'inet_protocols = ipv4',
      'myhostname = upstream.postfix.test',
      'mydestination =',
      'mynetworks = 127.0.0.0/8',
      'relay_domains =',
      'default_transport = discard:interop',
      'relay_transport = discard:interop',
      'alias_maps =',
      'alias_database =',
      `smtpd_tls_cert_file = ${dir}/cert.pem`,
      `smtpd_tls_key_file = ${dir}/key.pem`,
      'smtpd_tls_security_level = may',
      'smtpd_tls_loglevel = 1',
      'smtputf8_enable = yes',
      `maillog_file = ${dir}/maillog`,
      `maillog_file_prefixes = ${dir}`,
      ...(opts.mainCf ?? []).map((line) => line.replaceAll('{DIR}', dir)),
    ].join('\n');
    await writeFile(join(dir, 'main.cf'), mainCf + '\n');
    await writeFile(join(dir, 'master.cf'), masterCf(masterProto, port));
    const started = await runTool('postfix', ['-c', dir, 'start'], { timeoutMs: 30_000 });
    try {
      if (started.code !== 0) throw new Error(`postfix start exited ${started.code}`);
      await waitForPort(port, 10_000);
    } catch (err) {
      lastError = `${(err as Error).message}\n${started.stdout}${started.stderr}\n${await readFile(join(dir, 'maillog'), 'utf8').catch(() => '')}`;
      await runTool('postfix', ['-c', dir, 'stop']);
      continue; // most likely the port was taken in between: try another one
    }
    const maillog = () => readFile(join(dir, 'maillog'), 'utf8').catch(() => '');
    return {
      port,
      dir,
      maillog,
      async waitForLog(re, timeoutMs = 10_000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const text = await maillog();
          const m = re.exec(text);
          if (m) return m[0];
          if (Date.now() > deadline) throw new Error(`no ${re} in Postfix's log:\n${text.slice(-3000)}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      },
      async stop() {
        await runTool('postfix', ['-c', dir, 'stop'], { timeoutMs: 30_000 });
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`could not start Postfix:\n${lastError}`);
}

/** The numeric id of a system user (from /etc/passwd), 0 when unknown (Postfix then refuses, loudly). */
function uidOf(user: string): number {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  return line ? Number(line.split(':')[2]) : 0;
}

/**
 * The package's master.cf with the public `smtp inet` service replaced by one on our loopback port,
 * and no service chrooted (a chroot would need copies of /etc files inside the queue folder).
 */
function masterCf(proto: string, port: number): string {
  const lines = proto.split('\n').map((line) => {
    if (/^smtp\s+inet\s/.test(line)) return `127.0.0.1:${port} inet n - n - - smtpd`;
    const fields = line.split(/\s+/);
    if (/^[a-z]/.test(line) && fields.length >= 8 && fields[4] === 'y') {
      fields[4] = 'n';
      return fields.join(' ');
    }
    return line;
  });
  return lines.join('\n');
}

const MINIMAL_MASTER_CF = `smtp inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
`;
