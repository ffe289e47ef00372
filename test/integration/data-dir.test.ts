/**
 * The data folder across a crash: the spill file of a message that was arriving when mailtrail was
 * killed (SIGKILL, a real child process) is removed by the next start, which says so in its log; and
 * a second process on the same folder is refused instead of removing a live process's files.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { App, StartError } from '../../src/app.js';
import { createLogger } from '../../src/logger.js';
import { ensureBuilt, startMailtrail, type MailtrailChild } from '../../soak/mailtrail-child.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { relayConfig, simpleMessage, startRelay } from '../helpers/relay-harness.js';
import { openData, type SmtpTalk } from '../helpers/smtp-client.js';

const MiB = 1024 * 1024;
const SPILL_NAME = /^mailtrail-[0-9a-f]{24}\.eml$/;

/** The SMTP port a child printed in its start-up banner. */
function smtpPort(child: MailtrailChild): number {
  const port = /SMTP\s+127\.0\.0\.1:(\d+)/.exec(child.stdout())?.[1];
  if (port === undefined) throw new Error(`no SMTP listener in the banner:\n${child.stdout()}`);
  return Number(port);
}

/** The child's log lines with this message. */
function logLines(child: MailtrailChild, msg: string): Record<string, unknown>[] {
  return child
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
}

/** A body of about `bytes` (no line starts with "." so nothing is dot-stuffed). */
function payroll(bytes: number): Buffer {
  const line = Buffer.from(`Confidential payroll line ${'x'.repeat(60)}\r\n`);
  return Buffer.concat([Buffer.from('Subject: payroll\r\n\r\n'), ...Array.from({ length: Math.ceil(bytes / line.length) }, () => line)]);
}

/** A message still arriving: envelope, DATA, then `body` and no final dot yet. */
async function sendingMessage(port: number, body: Buffer): Promise<SmtpTalk> {
  const c = await openData(port, { from: 'app@example.com', to: 'ana@example.org', timeoutMs: 20_000 });
  await new Promise<void>((resolve, reject) => c.socket.write(body, (err) => (err ? reject(err) : resolve())));
  return c;
}

/** Regular files in `dir` named like spill files, with their sizes. */
async function spillFiles(dir: string): Promise<{ name: string; size: number }[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const files = entries.filter((e) => e.isFile() && SPILL_NAME.test(e.name));
  return Promise.all(files.map(async (e) => ({ name: e.name, size: (await stat(join(dir, e.name))).size })));
}

async function until(condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('spill files left by a crash', () => {
  let upstream: FakeUpstream;
  let work: string;
  let configFile: string;
  const children: MailtrailChild[] = [];

  beforeAll(async () => {
    await ensureBuilt();
    upstream = await startFakeUpstream();
    work = await mkdtemp(join(tmpdir(), 'mailtrail-crash-'));
    configFile = join(work, 'mailtrail.yaml');
    await writeFile(
      configFile,
      YAML.stringify({
        listen: [{ host: '127.0.0.1', port: 0 }],
        clients: { networks: ['127.0.0.0/8'] },
        limits: { memoryBufferSize: '64KB' },
        upstreams: [{ name: 'provider', url: `smtp://127.0.0.1:${upstream.port}`, tls: { mode: 'none' }, probe: { enabled: false } }],
        dataDir: './data',
      }),
    );
  }, 120_000);
  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill()));
    await upstream.close();
    await rm(work, { recursive: true, force: true });
  });

  it('are removed by the next start, which logs how many and how many bytes; nothing else is touched', async () => {
    const dataDir = join(work, 'data');
    const spill = join(dataDir, 'spill');
    const first = await startMailtrail(configFile, 1);
    children.push(first);
    const client = await sendingMessage(smtpPort(first), payroll(2 * MiB));
    // Past the 64 KiB memory buffer the body is written to a spill file; wait until most of it is there.
    await until(async () => (await spillFiles(spill)).some((f) => f.size > MiB), 10_000);
    expect((await stat(spill)).mode & 0o777).toBe(0o700);
    const [leftover] = await spillFiles(spill);
    expect((await stat(join(spill, leftover!.name))).mode & 0o777).toBe(0o600);

    expect(await first.kill()).toMatchObject({ signal: 'SIGKILL' });
    client.close();
    // Mid-DATA, killed: the whole message so far is still on disk.
    const left = await spillFiles(spill);
    expect(left).toHaveLength(1);
    // A spill file where earlier versions wrote them, and files that only look alike.
    const legacy = { name: `mailtrail-${'ab'.repeat(12)}.eml`, size: 1234 };
    await writeFile(join(dataDir, legacy.name), Buffer.alloc(legacy.size));
    const bystanders = [
      join(spill, 'notes.txt'),
      join(spill, 'mailtrail-1234.eml'),
      join(spill, `mailtrail-${'cd'.repeat(12)}.eml.bak`),
      join(dataDir, 'keep.eml'),
    ];
    for (const f of bystanders) await writeFile(f, 'not a spill file');
    await mkdir(join(spill, `mailtrail-${'ef'.repeat(12)}.eml`));

    const second = await startMailtrail(configFile, 2);
    children.push(second);
    expect(await spillFiles(spill)).toEqual([]);
    expect(await spillFiles(dataDir)).toEqual([]);
    for (const f of bystanders) expect((await stat(f)).isFile()).toBe(true);
    expect((await stat(join(spill, `mailtrail-${'ef'.repeat(12)}.eml`))).isDirectory()).toBe(true);
    const removed = logLines(second, 'removed spill files left by an earlier run');
    expect(removed).toEqual([expect.objectContaining({ level: 'info', dataDir, count: 2, bytes: left[0]!.size + legacy.size })]);
    console.info(`a restart after SIGKILL mid-DATA removed ${String(removed[0]!.count)} spill files, ${String(removed[0]!.bytes)} bytes`);

    // And the restarted relay relays through the same folder, and removes its file afterwards.
    const body = payroll(300 * 1024);
    const c = await sendingMessage(smtpPort(second), body);
    c.sendRaw('.\r\n');
    await c.expect(250);
    c.close();
    expect(upstream.messages.at(-1)?.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    expect(await spillFiles(spill)).toEqual([]);
    expect(await second.stop()).toMatchObject({ code: 0 });
  }, 60_000);
});

describe('one process per data folder', () => {
  let upstream: FakeUpstream;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(() => upstream.close());
  afterEach(() => upstream.resetFaults());

  it('refuses to start a second relay on a data folder in use, and leaves the first one its spill files', async () => {
    const first = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port }], limits: { memoryBufferSize: 64 * 1024 } });
    try {
      // The first relay holds a spilled body while the upstream sits on its answer.
      await upstream.setFaults({ delayMs: { data: 1_500 } });
      const sending = first.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ body: 'y'.repeat(200 * 1024) }) });
      await until(async () => (await first.tempFiles()).length === 1, 5_000);

      const second = new App(relayConfig({ upstreams: [{ name: 'provider', port: upstream.port }], tls: null }, first.dataDir), createLogger('silent'));
      const refused = await second.start().then(
        () => null,
        (err: unknown) => err,
      );
      await second.stop();
      expect(refused).toBeInstanceOf(StartError);
      expect(refused).toMatchObject({ part: 'dataDir', message: expect.stringContaining('another mailtrail process is using this data folder') });

      expect(await first.tempFiles()).toHaveLength(1);
      expect(await sending).toMatchObject({ ok: true, code: 250 });
    } finally {
      await first.stop();
    }
  });

  it('lets the next relay start once the first has stopped', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'mailtrail-test-'));
    try {
      const first = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port }], dataDir });
      await first.stop();
      const again = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port }], dataDir });
      expect(await again.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() })).toMatchObject({ ok: true, code: 250 });
      await again.stop();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
