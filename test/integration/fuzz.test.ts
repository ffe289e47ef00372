/**
 * Protocol abuse: a few thousand client sessions that send random and truncated commands, overlong
 * lines, binary garbage, broken TLS handshakes, bare LFs in the body, and hang up (or reset) at every
 * stage of a transaction. Afterwards the relay must still relay, have left no temp file behind, hold
 * no more memory than before (after GC), and have written one session record per connection and one
 * relay record per DATA that got its 354.
 *
 * The sessions are drawn from a seeded generator: a failure prints the seed, and FUZZ_SEED=<seed>
 * replays the same sessions.
 */
import net from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;
const SESSIONS = Number(process.env.FUZZ_SESSIONS ?? 3000);
const TIME_BUDGET_MS = Number(process.env.FUZZ_MS ?? 20_000);
const CONCURRENCY = 24;
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);

/** mulberry32: small, fast, seedable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Tally {
  connected: number;
  refusedConnect: number;
  /** Sessions that saw a 354 (the relay took a DATA). */
  dataAccepted: number;
  /** Sessions that wrote something that may be a DATA command. */
  dataSent: number;
  completed: number;
  byKind: Record<string, number>;
}

/** One client connection driven by a script; never throws. */
class FuzzSession {
  readonly #socket: net.Socket;
  #buffer = '';
  #closed = false;
  #wake: (() => void) | null = null;
  dataAccepted = false;
  dataSent = false;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.#buffer += d;
      if (/^354 /m.test(this.#buffer)) this.dataAccepted = true;
      this.#notify();
    });
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.#closed = true;
      this.#notify();
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(data: string | Buffer): void {
    if (this.#closed || !this.#socket.writable) return;
    if (/(^|[\r\n])DATA/i.test(typeof data === 'string' ? data : data.toString('latin1'))) this.dataSent = true;
    this.#socket.write(data);
  }

  /** Waits for the next reply line ending (or close, or timeout); returns its code or 0. */
  async reply(timeoutMs = 2_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = /^(\d{3}) [^\n]*\n/m.exec(this.#buffer);
      if (m) {
        this.#buffer = this.#buffer.slice(m.index + m[0].length);
        return Number(m[1]);
      }
      if (this.#closed || Date.now() > deadline) return 0;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  hangUp(how: 'end' | 'destroy' | 'reset'): void {
    if (this.#closed) return;
    if (how === 'end') this.#socket.end();
    else if (how === 'reset') this.#socket.resetAndDestroy();
    else this.#socket.destroy();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }
}

const VERBS = [
  'HELO',
  'EHLO',
  'MAIL FROM:',
  'RCPT TO:',
  'DATA',
  'RSET',
  'NOOP',
  'QUIT',
  'VRFY',
  'EXPN',
  'HELP',
  'AUTH',
  'AUTH PLAIN',
  'AUTH LOGIN',
  'STARTTLS',
  'BDAT 10',
  'XCLIENT ADDR=1.2.3.4',
  'XFORWARD NAME=x',
  'TURN',
  'ETRN x',
  '',
];

function garbage(random: () => number, max: number): Buffer {
  const b = Buffer.alloc(1 + Math.floor(random() * max));
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(random() * 256);
  return b;
}

function randomCommand(random: () => number): string {
  const verb = VERBS[Math.floor(random() * VERBS.length)]!;
  const args = [
    '',
    ' <a@b.test>',
    ' <>',
    ' <a@b.test> SIZE=99999999999',
    ' <a@b.test> BODY=8BITMIME SMTPUTF8',
    ' <"quoted local"@b.test>',
    ' <@route:a@b.test>',
    ' a@b.test',
    ' <a@[127.0.0.1]>',
    ' <ü@ß.test>',
    ' <a@b.test> FOO=BAR',
    ' =',
    ' %%%',
    ' \t ',
  ];
  const line = verb + args[Math.floor(random() * args.length)];
  // Truncate now and then, and vary the line end: CRLF, bare LF, bare CR, nothing.
  const cut = random() < 0.2 ? line.slice(0, Math.floor(random() * line.length)) : line;
  const ends = ['\r\n', '\r\n', '\r\n', '\n', '\r', ''];
  return cut + ends[Math.floor(random() * ends.length)];
}

type Script = (s: FuzzSession, random: () => number) => Promise<string>;

/** Stages of a well-formed transaction; the session hangs up after a random one of them. */
async function transactionUntil(s: FuzzSession, random: () => number): Promise<string> {
  const stages = ['greeting', 'ehlo', 'mail', 'rcpt', 'data', 'mid-body', 'before-dot', 'after-dot', 'complete'] as const;
  const stop = stages[Math.floor(random() * stages.length)]!;
  if ((await s.reply()) !== 220 || stop === 'greeting') return `hang up after ${stop}`;
  s.write('EHLO fuzz.test\r\n');
  await s.reply();
  if (stop === 'ehlo') return `hang up after ${stop}`;
  s.write('MAIL FROM:<fuzz@app.example>\r\n');
  await s.reply();
  if (stop === 'mail') return `hang up after ${stop}`;
  s.write('RCPT TO:<rcpt@dest.example>\r\n');
  await s.reply();
  if (stop === 'rcpt') return `hang up after ${stop}`;
  s.write('DATA\r\n');
  if ((await s.reply()) !== 354 || stop === 'data') return `hang up after ${stop}`;
  const body = simpleMessage({ body: 'x'.repeat(Math.floor(random() * 200_000)) });
  if (stop === 'mid-body') {
    s.write(body.subarray(0, Math.floor(body.length / 2)));
    return `hang up after ${stop}`;
  }
  s.write(body);
  if (stop === 'before-dot') return `hang up after ${stop}`;
  s.write('.\r\n');
  if (stop === 'after-dot') return `hang up after ${stop}`;
  await s.reply(10_000);
  s.write('QUIT\r\n');
  await s.reply();
  return 'complete transaction';
}

const SCRIPTS: readonly [number, string, Script][] = [
  [3, 'transaction cut short', transactionUntil],
  [
    2,
    'random commands',
    async (s, random) => {
      await s.reply();
      const n = 1 + Math.floor(random() * 20);
      for (let i = 0; i < n && !s.closed; i++) {
        s.write(randomCommand(random));
        if (random() < 0.5) await s.reply(300);
      }
      return 'random commands';
    },
  ],
  [
    1,
    'binary garbage',
    async (s, random) => {
      if (random() < 0.5) await s.reply();
      s.write(garbage(random, 4096));
      await s.reply(300);
      return 'binary garbage';
    },
  ],
  [
    1,
    'overlong line',
    async (s, random) => {
      await s.reply();
      const len = 1000 + Math.floor(random() * 70_000);
      s.write(`${random() < 0.5 ? 'MAIL FROM:<' : 'EHLO '}${'a'.repeat(len)}${random() < 0.5 ? '>\r\n' : ''}`);
      await s.reply(1_000);
      return 'overlong line';
    },
  ],
  [
    1,
    'broken STARTTLS',
    async (s, random) => {
      await s.reply();
      s.write('EHLO fuzz.test\r\nSTARTTLS\r\n');
      await s.reply();
      await s.reply();
      // A TLS ClientHello header followed by garbage, or plain text where TLS is expected.
      s.write(random() < 0.5 ? Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), garbage(random, 600)]) : 'MAIL FROM:<a@b.test>\r\n');
      await s.reply(300);
      return 'broken STARTTLS';
    },
  ],
  [
    1,
    'bare LF and NUL in the body',
    async (s, random) => {
      await s.reply();
      s.write('EHLO fuzz.test\r\nMAIL FROM:<fuzz@app.example>\r\nRCPT TO:<r@dest.example>\r\nDATA\r\n');
      for (let i = 0; i < 4; i++) await s.reply();
      s.write(`Subject: lf\n\nline one\nline\0two\r\n\n.\n${random() < 0.5 ? 'MAIL FROM:<smuggled@x.test>\n' : ''}\r\n.\r\n`);
      await s.reply(10_000);
      return 'bare LF and NUL in the body';
    },
  ],
  [
    1,
    'pipelined burst',
    async (s, random) => {
      await s.reply();
      const lines = Array.from({ length: 5 + Math.floor(random() * 60) }, () => randomCommand(random)).join('');
      s.write(lines);
      await s.reply(500);
      return 'pipelined burst';
    },
  ],
];

const TOTAL_WEIGHT = SCRIPTS.reduce((n, [w]) => n + w, 0);

function pickScript(random: () => number): [string, Script] {
  let r = random() * TOTAL_WEIGHT;
  for (const [w, name, script] of SCRIPTS) {
    r -= w;
    if (r < 0) return [name, script];
  }
  return [SCRIPTS[0]![1], SCRIPTS[0]![2]];
}

async function fuzzOne(port: number, random: () => number, tally: Tally): Promise<void> {
  const socket = await new Promise<net.Socket | null>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(null));
  });
  if (!socket) {
    tally.refusedConnect += 1;
    return;
  }
  tally.connected += 1;
  const session = new FuzzSession(socket);
  const [name, script] = pickScript(random);
  tally.byKind[name] = (tally.byKind[name] ?? 0) + 1;
  const guard = setTimeout(() => session.hangUp('destroy'), 15_000);
  try {
    await script(session, random);
  } finally {
    clearTimeout(guard);
    if (session.dataAccepted) tally.dataAccepted += 1;
    if (session.dataSent) tally.dataSent += 1;
    const how = (['end', 'destroy', 'reset'] as const)[Math.floor(random() * 3)]!;
    session.hangUp(how);
    tally.completed += 1;
  }
}

async function fuzz(port: number, count: number, budgetMs: number, seed: number): Promise<Tally> {
  const random = prng(seed);
  const tally: Tally = { connected: 0, refusedConnect: 0, dataAccepted: 0, dataSent: 0, completed: 0, byKind: {} };
  const deadline = Date.now() + budgetMs;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count && Date.now() < deadline) {
      next += 1;
      await fuzzOne(port, random, tally);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return tally;
}

function heapMiB(): number {
  for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage().heapUsed / MiB;
}

describe(`protocol abuse: ${SESSIONS} fuzzed sessions (seed ${SEED})`, () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let warmup: Tally;
  let tally: Tally;
  let baselineHeap: number;
  let finalHeap: number;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({ upstreams: [{ port: upstream.port }], clientIdle: 5_000 });
    // Warm up (JIT, pooled upstream connections, lazily built tables) before taking the baseline.
    warmup = await fuzz(relay.port, 200, 10_000, SEED + 1);
    await sleep(500);
    baselineHeap = heapMiB();
    tally = await fuzz(relay.port, SESSIONS, TIME_BUDGET_MS, SEED);
    await sleep(500);
    finalHeap = heapMiB();
    process.stdout.write(
      `[fuzz] seed ${SEED}: ${tally.completed} sessions in the measured run (${JSON.stringify(tally.byKind)}), ` +
        `${tally.dataAccepted} reached DATA; heap ${baselineHeap.toFixed(1)} → ${finalHeap.toFixed(1)} MiB\n`,
    );
  }, TIME_BUDGET_MS + 60_000);

  afterAll(async () => {
    await relay?.stop();
    await upstream?.close();
  });

  it('ran a few thousand sessions of every kind (or used its time budget)', () => {
    expect(tally.completed).toBeGreaterThan(Math.min(SESSIONS, 500));
    expect(Object.keys(tally.byKind).sort()).toEqual(SCRIPTS.map(([, name]) => name).sort());
    expect(tally.refusedConnect).toBe(0);
  });

  it('writes one session record per connection', async () => {
    const connections = warmup.connected + tally.connected;
    await expectEventually(async () => (await relay.sessionRecords()).length, connections);
  });

  it('writes one relay record per transaction that reached DATA', async () => {
    // The sessions' own count of transactions (each DATA the relay took) must match the relay records.
    await expectEventually(async () => {
      const sessions = await relay.sessionRecords();
      const transactions = sessions.reduce((n, r) => n + r.transactions, 0);
      return (await relay.relayRecords()).length - transactions;
    }, 0);
    // From the clients' side: at least every DATA they saw answered 354, at most every DATA they sent
    // (a client may hang up before reading the 354 its DATA got).
    const records = (await relay.relayRecords()).length;
    expect(records).toBeGreaterThanOrEqual(warmup.dataAccepted + tally.dataAccepted);
    expect(records).toBeLessThanOrEqual(warmup.dataSent + tally.dataSent);
  });

  it('leaves no temp file behind', async () => {
    await expectEventually(async () => (await relay.tempFiles()).length, 0);
  });

  it('holds no more memory than before, after GC', () => {
    // Bounded caches (recent transactions, error groups) may keep a little; a leak per session
    // (a few KiB each, thousands of sessions) would show as tens of MiB.
    expect(finalHeap - baselineHeap).toBeLessThan(12);
  });

  it('still relays a well-formed message', async () => {
    upstream.clearRecords();
    const r = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    expect(r).toMatchObject({ ok: true, code: 250 });
    expect(upstream.messages).toHaveLength(1);
  });
});

/** Polls `read` until it returns `want` (records are written when the server notices a close). */
async function expectEventually(read: () => Promise<number>, want: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let got = await read();
  while (got !== want && Date.now() < deadline) {
    await sleep(100);
    got = await read();
  }
  expect(got).toBe(want);
}
