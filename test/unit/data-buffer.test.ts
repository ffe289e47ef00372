import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { receiveMessage, type BufferedMessage, type ReceiveOptions } from '../../src/buffer/data-buffer.js';

const KiB = 1024;
const MiB = 1024 * KiB;

let tempDir: string;
beforeEach(async () => {
  tempDir = await mkdtemp(join(tmpdir(), 'data-buffer-test-'));
});
afterEach(async () => {
  await rm(tempDir, { recursive: true, force: true });
});

function options(overrides: Partial<ReceiveOptions> = {}): ReceiveOptions {
  return { memoryLimit: 64 * KiB, maxSize: 10 * MiB, tempDir, ...overrides };
}

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

function messageOf(bodyBytes: number): Buffer {
  const head = 'Message-ID: <t1@example.com>\r\nFrom: App <app@example.com>\r\nSubject: test\r\n\r\n';
  return Buffer.concat([Buffer.from(head), randomBytes(bodyBytes)]);
}

/** Write `bytes` the way smtp-server feeds its DATA stream: in chunks, waiting for 'drain'. */
async function feed(stream: PassThrough, bytes: Buffer, chunkSize = 16 * KiB): Promise<void> {
  for (let at = 0; at < bytes.length; at += chunkSize) {
    if (!stream.write(bytes.subarray(at, at + chunkSize))) await waitFor(stream, 'drain');
  }
  stream.end();
}

function waitFor(stream: PassThrough, event: string): Promise<void> {
  return new Promise((resolve) => stream.once(event, () => resolve()));
}

async function receive(bytes: Buffer, opts: ReceiveOptions = options()): Promise<BufferedMessage> {
  const stream = new PassThrough();
  const received = receiveMessage(stream, opts);
  await feed(stream, bytes);
  return received;
}

async function tempFiles(): Promise<string[]> {
  return readdir(tempDir);
}

async function until(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200 && !(await condition()); i++) await new Promise((r) => setTimeout(r, 5));
}

describe('receiveMessage', () => {
  it('keeps a small message in memory and hashes exactly the bytes received', async () => {
    const input = messageOf(2 * KiB);
    const message = await receive(input);
    expect(message.spilled).toBe(false);
    expect(message.oversize).toBe(false);
    expect(message.size).toBe(input.length);
    expect(message.sha256).toBe(sha256(input));
    expect(Buffer.compare(message.body() as Buffer, input)).toBe(0);
  });

  it('parses the headers of the received message', async () => {
    const message = await receive(messageOf(KiB));
    expect(message.headers).toEqual({
      messageId: '<t1@example.com>',
      subject: 'test',
      from: 'App <app@example.com>',
      truncated: false,
    });
  });

  it('flags a header block longer than headerCap as truncated', async () => {
    const input = Buffer.from(`Subject: big\r\nX-Filler: ${'a'.repeat(2 * KiB)}\r\n\r\nbody\r\n`);
    const message = await receive(input, options({ headerCap: KiB }));
    expect(message.headers).toMatchObject({ subject: 'big', truncated: true });
  });

  it('spills a message over memoryLimit to a temp file equal to the input', async () => {
    const input = messageOf(300 * KiB);
    const message = await receive(input);
    const body = message.body();
    expect(message.spilled).toBe(true);
    expect(body).toEqual({ path: expect.stringContaining(tempDir) });
    expect(Buffer.compare(await readFile((body as { path: string }).path), input)).toBe(0);
    expect(message.sha256).toBe(sha256(input));
    await message.dispose();
  });

  it('creates the temp file readable by its owner only', async () => {
    const message = await receive(messageOf(300 * KiB));
    const { mode } = await stat((message.body() as { path: string }).path);
    expect(mode & 0o777).toBe(0o600);
    await message.dispose();
  });

  it('returns the same replayable body on every call', async () => {
    const message = await receive(messageOf(300 * KiB));
    expect(message.body()).toEqual(message.body());
    await message.dispose();
  });

  it('removes the temp file on dispose, and a second dispose is harmless', async () => {
    const message = await receive(messageOf(300 * KiB));
    expect(await tempFiles()).toHaveLength(1);
    await message.dispose();
    await message.dispose();
    expect(await tempFiles()).toEqual([]);
  });

  it('rejects with ECLIENTABORT and removes the temp file when the stream is destroyed mid-DATA', async () => {
    const stream = new PassThrough();
    const received = receiveMessage(stream, options());
    stream.write(randomBytes(200 * KiB));
    await until(async () => (await tempFiles()).length > 0);
    expect(await tempFiles()).toHaveLength(1);
    stream.destroy(); // smtp-server's silent destroy: 'close' without 'end'
    await expect(received).rejects.toMatchObject({ code: 'ECLIENTABORT' });
    expect(await tempFiles()).toEqual([]);
  });

  it('rejects with ECLIENTABORT carrying the cause when the stream is destroyed with an error', async () => {
    const stream = new PassThrough();
    const received = receiveMessage(stream, options());
    stream.write(randomBytes(KiB));
    const lost = Object.assign(new Error('Connection closed unexpectedly'), { code: 'ECONNECTION' });
    stream.destroy(lost);
    await expect(received).rejects.toMatchObject({ code: 'ECLIENTABORT', cause: lost });
  });

  it('flags an oversize message, drains it to the end and keeps no body', async () => {
    const stream = new PassThrough();
    let ended = false;
    stream.on('end', () => (ended = true));
    const received = receiveMessage(stream, options({ maxSize: 100 * KiB }));
    await feed(stream, messageOf(MiB));
    const message = await received;
    expect([message.oversize, message.size, ended]).toEqual([true, messageOf(MiB).length, true]);
    expect(() => message.body()).toThrow();
  });

  it('removes the temp file of an oversize message as soon as it crosses maxSize', async () => {
    const stream = new PassThrough();
    const received = receiveMessage(stream, options({ maxSize: 200 * KiB }));
    stream.write(randomBytes(150 * KiB));
    await until(async () => (await tempFiles()).length > 0);
    expect(await tempFiles()).toHaveLength(1);
    stream.write(randomBytes(100 * KiB));
    await until(async () => (await tempFiles()).length === 0);
    expect(await tempFiles()).toEqual([]);
    stream.end(randomBytes(KiB));
    expect((await received).oversize).toBe(true);
  });

  it('rejects with ESPILL when the temp folder is unwritable, and still drains the stream', async () => {
    const notADir = join(tempDir, 'file');
    await writeFile(notADir, '');
    const stream = new PassThrough();
    let ended = false;
    stream.on('end', () => (ended = true));
    const received = receiveMessage(stream, options({ tempDir: join(notADir, 'spill') }));
    const fed = feed(stream, messageOf(MiB));
    await expect(received).rejects.toMatchObject({ code: 'ESPILL', cause: { code: 'ENOTDIR' } });
    await fed;
    await until(async () => ended);
    expect(ended).toBe(true);
  });

  it('reads an empty DATA body', async () => {
    const message = await receive(Buffer.alloc(0));
    const empty = Buffer.alloc(0);
    expect([message.size, message.sha256, message.body()]).toEqual([0, sha256(empty), empty]);
  });

  it('grows memory by less than 32 MB while receiving 50 MB', async () => {
    const total = 50 * MiB;
    const hash = createHash('sha256');
    let produced = 0;
    // Fresh chunks made on demand (not one 50 MB Buffer, not one chunk reused), so a receiver that
    // kept them would show it.
    const source = new Readable({
      read() {
        if (produced >= total) return void this.push(null);
        const bytes = randomBytes(64 * KiB);
        hash.update(bytes);
        produced += bytes.length;
        this.push(bytes);
      },
    });
    const memory = new MemorySampler();
    memory.sample();
    const received = receiveMessage(source, options({ memoryLimit: MiB, maxSize: 100 * MiB }));
    // Sampled right after the receiver handled a chunk (its listener comes first).
    let seen = 0;
    source.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen % (512 * KiB) === 0) memory.sample();
    });
    const message = await received;
    expect([message.size, message.spilled, message.sha256]).toEqual([total, true, hash.digest('hex')]);
    // The first MiB is held in memory before the spill: seeing it proves the measurement works.
    expect(memory.growth('buffers')).toBeGreaterThan(MiB / 2);
    expect(memory.growth('live')).toBeLessThan(32 * MiB);
    await message.dispose();
  });
});

/**
 * Live memory (heap + Buffers) after a full GC, so that garbage does not count: what is measured is
 * what the code holds on to. Growth is highest minus lowest sample, because V8 frees Buffer memory
 * in the background after a GC and a single baseline can still include a previous test's garbage.
 */
class MemorySampler {
  readonly #gc = exposeGc();
  readonly #buffers: number[] = [];
  readonly #live: number[] = [];

  sample(): void {
    this.#gc();
    const { arrayBuffers, heapUsed } = process.memoryUsage();
    this.#buffers.push(arrayBuffers);
    this.#live.push(arrayBuffers + heapUsed);
  }

  growth(kind: 'buffers' | 'live'): number {
    const samples = kind === 'buffers' ? this.#buffers : this.#live;
    return Math.max(...samples) - Math.min(...samples);
  }
}

/** `global.gc` when the runner exposes it, otherwise switched on at run time (a V8 test idiom). */
function exposeGc(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
