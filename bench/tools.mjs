/**
 * The outside programs the bench drives: Postfix's smtp-sink and smtp-source when installed, else
 * the bench's own sink and load generator (bench/fast-sink.mjs, bench/smtp-load.mjs).
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import { delimiter, join } from 'node:path';

const HERE = new URL('.', import.meta.url).pathname;

/** BENCH_TOOLS=node: use the bench's own sink and load generator even where Postfix's are installed. */
const OWN_TOOLS_ONLY = process.env.BENCH_TOOLS === 'node';

/** Full path of `name` on PATH or in /usr/sbin (where Debian puts Postfix's tools), or null. */
export function findProgram(name) {
  if (OWN_TOOLS_ONLY && (name === 'smtp-sink' || name === 'smtp-source')) return null;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const full = join(dir, name);
    try {
      accessSync(full, constants.X_OK);
      return full;
    } catch {
      // not here
    }
  }
  return null;
}

/** A port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on `port`. */
export async function waitForPort(port, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts the fastest sink available on a free loopback port. Resolves with
 * { kind, port, pid, stop() }.
 */
export async function startSink() {
  const smtpSink = findProgram('smtp-sink');
  const port = await freePort();
  let child;
  let kind;
  if (smtpSink) {
    kind = 'postfix smtp-sink';
    // As root smtp-sink insists on dropping privileges (-u). -a -C -F: no AUTH, XCLIENT or XFORWARD
    // announced, like a provider. 1024 is the listen backlog.
    const user = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
    child = spawn(smtpSink, [...user, '-a', '-C', '-F', '-m', '1024', `127.0.0.1:${port}`, '1024'], { stdio: 'ignore' });
  } else {
    kind = 'bench fast-sink (node)';
    child = spawn(process.execPath, [join(HERE, 'fast-sink.mjs'), String(port)], { stdio: 'ignore' });
  }
  await waitForPort(port);
  return {
    kind,
    port,
    pid: child.pid,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Which load generator the throughput runs use. */
export function loadGeneratorKind() {
  return findProgram('smtp-source') ? 'postfix smtp-source' : 'bench smtp-load (node)';
}

function runChild(cmd, args, timeoutMs) {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err, elapsedMs: performance.now() - started });
    });
  });
}

/**
 * Sends `messages` messages of `size` bytes over `sessions` parallel sessions to `port`, with a new
 * connection per message or reused ones. Resolves with { sent, failed, elapsedMs, error }.
 */
export async function generateLoad({ port, sessions, messages, size, reuse, timeoutMs = 60_000 }) {
  const smtpSource = findProgram('smtp-source');
  if (smtpSource) {
    const args = [
      '-s',
      String(sessions),
      '-m',
      String(messages),
      '-l',
      String(size),
      ...(reuse ? ['-d'] : []),
      '-M',
      'bench.mailtrail.test',
      '-f',
      'bench@bench.mailtrail.test',
      '-t',
      'sink@bench.mailtrail.test',
      `127.0.0.1:${port}`,
    ];
    const r = await runChild(smtpSource, args, timeoutMs);
    // smtp-source stops at the first unexpected reply and says so on stderr.
    const ok = r.code === 0 && !r.err.trim();
    return { sent: ok ? messages : 0, failed: ok ? 0 : messages, elapsedMs: r.elapsedMs, error: ok ? null : r.err.trim() || `exit ${r.code ?? r.signal}` };
  }
  return ownLoad({ port, sessions, messages, size, reuse, deadlineMs: timeoutMs });
}

/** The bench's own client in a child process; `timings` adds each message's duration (ms). */
export async function ownLoad(opts) {
  const r = await runChild(process.execPath, [join(HERE, 'smtp-load.mjs'), JSON.stringify(opts)], (opts.deadlineMs ?? 60_000) + 30_000);
  if (r.code !== 0) return { sent: 0, failed: opts.messages, elapsedMs: r.elapsedMs, error: r.err.trim() || `exit ${r.code ?? r.signal}` };
  const result = JSON.parse(r.out.trim().split('\n').pop());
  return { ...result, error: result.firstError };
}
