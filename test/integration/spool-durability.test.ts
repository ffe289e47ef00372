/**
 * Spool mode's promise, checked on a real process: no `250 queued` before the message is durable.
 *
 * - The order of the system calls of one acceptance, seen by strace: body written and flushed, meta
 *   written and flushed, body renamed into msg/ and the folder flushed, meta renamed into meta/ and
 *   the folder flushed, the acceptance record written, and only then the 250 on the socket.
 * - kill -9 in the middle of many acceptances (a real child process): every message that got its
 *   250 is in the spool afterwards, byte for byte, with its record in the trail.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { AuditRecord } from '../../src/audit/records.js';
import { CLI, ensureBuilt, startMailtrail, type MailtrailChild } from '../../soak/mailtrail-child.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { findTool } from '../interop/interop-tools.js';
import { simpleMessage } from '../helpers/relay-harness.js';
import { sendMessage } from '../helpers/smtp-client.js';

const QUEUED = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]{26})/;

/** Writes a config of one spool listener on a free port in `dir`; returns its path. */
async function spoolConfig(dir: string, upstreamPort: number): Promise<string> {
  const file = join(dir, 'mailtrail.yaml');
  await writeFile(
    file,
    YAML.stringify({
      listen: [{ host: '127.0.0.1', port: 0, mode: 'spool' }],
      clients: { networks: ['127.0.0.0/8'] },
      upstreams: [{ name: 'provider', url: `smtp://127.0.0.1:${upstreamPort}`, tls: { mode: 'none' }, probe: { enabled: false } }],
      spool: { minFreeSpace: 0 },
      dataDir: './data',
    }),
  );
  return file;
}

function smtpPort(stdout: string): number {
  const port = /SMTP\s+127\.0\.0\.1:(\d+)/.exec(stdout)?.[1];
  if (port === undefined) throw new Error(`no SMTP listener in the banner:\n${stdout}`);
  return Number(port);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function trail(file: string): AuditRecord[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{') && l.endsWith('}'))
    .map((l) => JSON.parse(l) as AuditRecord);
}

describe('spool acceptance on a real process', () => {
  let upstream: FakeUpstream;
  let work: string;

  beforeAll(async () => {
    await ensureBuilt();
    upstream = await startFakeUpstream();
    work = await mkdtemp(join(tmpdir(), 'mailtrail-spool-durability-'));
  }, 120_000);
  afterAll(async () => {
    await upstream.close();
    await rm(work, { recursive: true, force: true });
  });

  describe('the order of the system calls of one acceptance', () => {
    const strace = findTool('strace');
    const usable = strace !== null && straceWorks(strace);
    if (!usable && process.env.CI) throw new Error('strace is not installed or cannot trace here (.ci/run installs it)');
    if (!usable) process.stderr.write('[spool] skipped: strace is not installed or cannot trace here\n');

    it.skipIf(!usable)(
      'flushes the body, the meta and both folders, writes the record, and only then answers 250',
      async () => {
        const dir = await mkdtemp(join(work, 'strace-'));
        const config = await spoolConfig(dir, upstream.port);
        const traceFile = join(dir, 'trace.txt');
        const traced = await startTraced(strace!, traceFile, config);
        let id: string;
        try {
          const res = await sendMessage({
            port: smtpPort(traced.stdout()),
            from: 'app@example.com',
            to: ['ana@example.org'],
            raw: simpleMessage(),
            startTls: false,
          });
          id = QUEUED.exec(res.ok ? res.response : '')?.[1] ?? '';
          expect(id, JSON.stringify(res)).not.toBe('');
        } finally {
          await traced.stop();
        }
        const calls = completedCalls(await readFile(traceFile, 'utf8'));
        const spool = join(dir, 'data', 'spool');
        const steps: [string, (c: Call) => boolean][] = [
          ['body written to tmp/', (c) => isWrite(c) && c.args.startsWith(fd(join(spool, 'tmp', `${id}.eml`)))],
          ['body flushed', (c) => c.name === 'fsync' && c.args.startsWith(fd(join(spool, 'tmp', `${id}.eml`)))],
          ['meta written to tmp/', (c) => isWrite(c) && c.args.startsWith(fd(join(spool, 'tmp', `${id}.json`)))],
          ['meta flushed', (c) => c.name === 'fsync' && c.args.startsWith(fd(join(spool, 'tmp', `${id}.json`)))],
          [
            'body renamed into msg/',
            (c) => isRename(c) && c.args.includes(`"${join(spool, 'tmp', `${id}.eml`)}"`) && c.args.includes(`"${join(spool, 'msg', `${id}.eml`)}"`),
          ],
          ['msg/ flushed', (c) => c.name === 'fsync' && c.args.startsWith(fd(join(spool, 'msg')))],
          [
            'meta renamed into meta/ (the commit)',
            (c) => isRename(c) && c.args.includes(`"${join(spool, 'tmp', `${id}.json`)}"`) && c.args.includes(`"${join(spool, 'meta', `${id}.json`)}"`),
          ],
          ['meta/ flushed', (c) => c.name === 'fsync' && c.args.startsWith(fd(join(spool, 'meta')))],
          ['acceptance record written', (c) => isWrite(c) && c.args.startsWith(fd(join(dir, 'data', 'audit.log'))) && c.args.includes(`\\"id\\":\\"${id}\\"`)],
          ['250 on the socket', (c) => isWrite(c) && c.args.includes(`250 2.0.0 Ok: queued as ${id}`)],
        ];
        let at = -1;
        const seen: string[] = [];
        for (const [what, matches] of steps) {
          // The first such call after the step before: every step must follow the one before it.
          const next = calls.findIndex((c, i) => i > at && matches(c));
          expect(next, `${what} after: ${seen.join(' → ')}\n${calls.map((c) => c.line).join('\n')}`).toBeGreaterThan(at);
          seen.push(`${what} (#${next})`);
          at = next;
        }
        // No 250 of this message anywhere before the record.
        const reply = calls.findIndex((c) => isWrite(c) && c.args.includes(`queued as ${id}`));
        expect(reply).toBe(at);
        console.info(
          `strace of one acceptance:\n${calls
            .filter((c) => c.args.includes(id) || c.args.startsWith(fd(join(spool, 'msg'))) || c.args.startsWith(fd(join(spool, 'meta'))))
            .map((c) => `  ${c.line}`)
            .join('\n')}`,
        );
      },
      60_000,
    );
  });

  it('keeps every message that got its 250 when the process is killed (SIGKILL) in the middle of accepting', async () => {
    const dir = await mkdtemp(join(work, 'kill-'));
    const config = await spoolConfig(dir, upstream.port);
    const first = await startMailtrail(config, 1);
    const children: MailtrailChild[] = [first];
    try {
      const port = smtpPort(first.stdout());
      const acked = new Map<string, string>();
      let killed = false;
      let sent = 0;
      const sender = async (n: number): Promise<void> => {
        // Bounded: at most 100 messages each, and none once the process is gone.
        for (let i = 0; i < 100 && !killed; i++) {
          const raw = simpleMessage({ messageId: `<crash-${n}-${i}@example.com>`, body: `message ${n}/${i} ${'x'.repeat((i % 7) * 1000)}` });
          sent += 1;
          const res = await sendMessage({ port, from: 'app@example.com', to: ['ana@example.org'], raw, startTls: false, timeoutMs: 5_000 });
          const id = QUEUED.exec(res.ok ? res.response : '')?.[1];
          if (id !== undefined) acked.set(id, sha256(raw));
          if (acked.size >= 60 && !killed) {
            killed = true;
            await first.kill();
          }
        }
      };
      await Promise.all(Array.from({ length: 6 }, (_, n) => sender(n)));
      expect(killed).toBe(true);

      // Before anything else touches the folder: every acknowledged message is committed, whole.
      const spool = join(dir, 'data', 'spool');
      for (const [id, hash] of acked) {
        expect(existsSync(join(spool, 'meta', `${id}.json`)), `meta of ${id}`).toBe(true);
        expect(sha256(await readFile(join(spool, 'msg', `${id}.eml`))), `body of ${id}`).toBe(hash);
      }
      // And its acceptance record is in the trail.
      const queued = new Set(
        trail(join(dir, 'data', 'audit.log'))
          .filter((r) => r.type === 'relay' && r.outcome === 'queued')
          .map((r) => r.id),
      );
      for (const id of acked.keys()) expect(queued.has(id), `record of ${id}`).toBe(true);

      // The next start finds them all (and maybe a few more: committed, but the 250 never reached
      // the client, which will send them again: at least once, never lost).
      const second = await startMailtrail(config, 2);
      children.push(second);
      const opened = second
        .stderr()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; entries?: number })
        .find((l) => l.msg === 'spool opened');
      expect(opened?.entries).toBeGreaterThanOrEqual(acked.size);
      expect(second.stderr()).not.toContain('moved to damaged');
      console.info(`SIGKILL after ${acked.size} acknowledged of ${sent} sent: ${opened?.entries} in the spool at the next start`);
      expect(await second.stop()).toMatchObject({ code: 0 });
    } finally {
      await Promise.all(children.map((c) => c.kill()));
    }
  }, 60_000);
});

/** One system call as strace printed it, once it returned. */
interface Call {
  readonly name: string;
  /** Everything between the parentheses (the fd with its path, -y). */
  readonly args: string;
  readonly line: string;
}

function isWrite(c: Call): boolean {
  return c.name === 'write' || c.name === 'writev' || c.name === 'pwrite64' || c.name === 'pwritev';
}

function isRename(c: Call): boolean {
  return c.name === 'rename' || c.name === 'renameat' || c.name === 'renameat2';
}

/** How strace -y shows a descriptor of `path`, its number left out: `</path>`. */
function fd(path: string): string {
  return `<${path}>`;
}

/**
 * The calls in the order they returned. With -f, a call another thread interrupts is printed in two
 * halves (`<unfinished ...>`, then `<... fsync resumed>`): it counts where it returned.
 */
function completedCalls(text: string): Call[] {
  const pending = new Map<string, { name: string; args: string }>();
  const calls: Call[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const unfinished = /^(\d+)\s+(\w+)\((.*) <unfinished \.\.\.>$/.exec(line);
    if (unfinished) {
      pending.set(unfinished[1]!, { name: unfinished[2]!, args: unfinished[3]! });
      continue;
    }
    const resumed = /^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$/.exec(line);
    if (resumed) {
      const start = pending.get(resumed[1]!);
      pending.delete(resumed[1]!);
      // Shown whole, where it returned.
      if (start)
        calls.push({
          name: start.name,
          args: `${start.args}${resumed[3]}`.replace(/^\d+/, ''),
          line: `${resumed[1]}  ${start.name}(${start.args}${resumed[3]}`,
        });
      continue;
    }
    const whole = /^(\d+)\s+(\w+)\((.*)$/.exec(line);
    if (whole) calls.push({ name: whole[2]!, args: whole[3]!.replace(/^\d+/, ''), line });
  }
  return calls;
}

/** Whether strace may trace a child here (ptrace can be forbidden in a container). */
function straceWorks(strace: string): boolean {
  return spawnSync(strace, ['-f', '-o', '/dev/null', 'true'], { timeout: 10_000 }).status === 0;
}

/** mailtrail under strace -f; resolves once it printed its banner. stop() ends it with SIGTERM. */
async function startTraced(strace: string, traceFile: string, config: string): Promise<{ stdout(): string; stop(): Promise<void> }> {
  const child: ChildProcess = spawn(
    strace,
    [
      '-f',
      '-y',
      '-s',
      '512',
      '-e',
      'trace=write,writev,pwrite64,pwritev,fsync,fdatasync,rename,renameat,renameat2',
      '-o',
      traceFile,
      process.execPath,
      CLI,
      'serve',
      '--config',
      config,
    ],
    { cwd: join(config, '..'), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.resume();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  while (!stdout.includes('mailtrail is running')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`mailtrail did not start under strace:\n${stdout}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    stdout: () => stdout,
    async stop() {
      // SIGTERM to mailtrail itself (strace's child): a clean stop, then strace ends and its file is whole.
      const node = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0];
      if (node) process.kill(Number(node), 'SIGTERM');
      const force = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(force);
    },
  };
}
