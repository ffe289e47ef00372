/**
 * A private redis-server for the shared-state tests: its own loopback port, its own temporary folder,
 * no persistence; never the system service. Tests can stop it, kill it, freeze it (SIGSTOP: a Redis
 * that accepts connections and answers nothing) and start it again on the same port.
 *
 * `.ci/run` installs the Debian package `redis-server`. On a developer machine without it the tests
 * are skipped with a note; under CI (CI=true) a missing redis-server fails them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTool, freePort } from '../interop/interop-tools.js';

export function haveRedisServer(): boolean {
  if (findTool('redis-server') !== null) return true;
  if (process.env.CI) throw new Error('redis-server missing (.ci/run installs it)');
  process.stderr.write('[shared state] skipped: redis-server not installed\n');
  return false;
}

export interface TestRedis {
  readonly port: number;
  /** `redis://127.0.0.1:<port>/0` */
  readonly url: string;
  /** Starts it (again) on the same port and waits until it answers. */
  start(): Promise<void>;
  /** SIGKILL, and waits for the process to end. */
  kill(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing is answered. */
  freeze(): void;
  /** SIGCONT. */
  thaw(): void;
  /** One command over a plain socket (tests read keys with it), e.g. `['DBSIZE']`. */
  command(args: readonly string[]): Promise<string>;
  /** Kills it and removes its folder. */
  stop(): Promise<void>;
}

export async function startRedis(): Promise<TestRedis> {
  const bin = findTool('redis-server');
  if (bin === null) throw new Error('redis-server not installed');
  const dir = await mkdtemp(join(tmpdir(), 'mailtrail-redis-'));
  const port = await freePort();
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const start = async (): Promise<void> => {
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
    ];
    const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}`);
      const pong = await rawCommand(port, ['PING']).catch(() => '');
      if (pong === '+PONG') return;
      if (Date.now() > deadline) throw new Error('redis-server did not answer within 10 s');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const kill = async (): Promise<void> => {
    if (child === null || child.exitCode !== null) return;
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
    child = null;
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    start,
    kill,
    freeze: () => child?.kill('SIGSTOP'),
    thaw: () => child?.kill('SIGCONT'),
    command: (args) => rawCommand(port, args),
    stop: async () => {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Sends one command in RESP and returns the first line of the reply (enough for the tests' checks). */
function rawCommand(port: number, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no reply'));
    }, 2_000);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8');
      const reply = parseReply(data);
      if (reply === null) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(reply);
    });
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}

/** `+OK`, `:3`, a bulk string's content, or `(nil)`; null while incomplete. */
function parseReply(data: string): string | null {
  const end = data.indexOf('\r\n');
  if (end < 0) return null;
  const first = data.slice(0, end);
  if (first.startsWith('$')) {
    const length = Number(first.slice(1));
    if (length < 0) return '(nil)';
    if (data.length < end + 2 + length) return null;
    return data.slice(end + 2, end + 2 + length);
  }
  if (first.startsWith('*')) {
    // Arrays: the whole text, for the few tests that look at one.
    return data.endsWith('\r\n') ? data : null;
  }
  return first;
}
