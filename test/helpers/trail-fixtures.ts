/**
 * Records and surroundings for the trail tools' tests: hand-made records with the relay's shape
 * (override any field), trail files written to a temp folder (plain or gzip), and a ToolIo whose
 * output is collected in memory.
 *
 * @example
 * const dir = await tempDir();
 * const file = await writeTrail(dir, 'audit.log', [relay({ outcome: 'deferred' }), session()]);
 * const io = memoryIo();
 * await tailCommand([file, '-n', 'all'], io);
 * expect(io.out()).toContain('deferred');
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import type { AlertRecord, DeliveryRecord, RejectRecord, RelayRecord, SessionRecord, SpoolRecord } from '../../src/audit/records.js';
import type { ToolIo } from '../../src/tools/tool-io.js';
import { verifyCommand } from '../../src/tools/verify.js';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
let counter = 0;

/** A ULID-shaped id, unique within the test run, sortable by `ms`. */
export function fakeId(ms = Date.parse('2026-11-25T10:00:00.000Z')): string {
  let t = '';
  let x = ms;
  for (let i = 0; i < 10; i++) {
    t = CROCKFORD[x % 32] + t;
    x = Math.floor(x / 32);
  }
  let n = counter++;
  let r = '';
  for (let i = 0; i < 16; i++) {
    r = CROCKFORD[n % 32] + r;
    n = Math.floor(n / 32);
  }
  return t + r;
}

const CLIENT = {
  ip: '10.0.4.17',
  port: 51822,
  helo: 'billing-7f9c',
  user: 'billing',
  tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
  proxy: null,
};

/** A delivered relay record at `time`; override anything (nested objects are replaced, not merged). */
export function relay(over: Partial<RelayRecord> = {}): RelayRecord {
  const time = over.time ?? '2026-11-25T10:15:02.481Z';
  const id = over.id ?? fakeId(Date.parse(time));
  const base: RelayRecord = {
    v: 1,
    type: 'relay',
    time,
    id,
    instance: 'mt-a',
    session: { id: 'k3x9q0abcdefghij', txn: 1 },
    client: CLIENT,
    from: 'invoices@example.com',
    rcpt: [{ to: 'ana@example.org', status: 'accepted', reply: null }],
    message: { size: 18234, sha256: 'a'.repeat(64), messageId: '<inv-5521@example.com>', subject: null, headerFrom: 'Billing <invoices@example.com>' },
    route: 'default',
    upstream: {
      name: 'ses',
      host: 'email-smtp.eu-west-1.amazonaws.com',
      port: 587,
      tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', authorized: true },
      reusedConnection: true,
      queueId: '0102019a7c1d2e3f-000000',
    },
    attempts: [
      {
        upstream: 'ses',
        startedAt: time,
        ms: 79,
        phase: 'done',
        reply: { code: 250, enhanced: null, text: 'Ok 0102019a7c1d2e3f-000000' },
        error: null,
        class: null,
      },
    ],
    upstreamReply: { code: 250, enhanced: null, text: 'Ok 0102019a7c1d2e3f-000000', phase: 'data' },
    clientReply: { code: 250, enhanced: '2.0.0', text: `Ok: relayed as 0102019a7c1d2e3f-000000 (id ${id})` },
    outcome: 'delivered',
    failure: null,
    timing: { totalMs: 96, receiveMs: 17, waitMs: 0, connectMs: 0, envelopeMs: 31, dataMs: 48 },
    duplicateRisk: false,
    duplicateOf: null,
  };
  return { ...base, ...over };
}

/** A relay record the upstream deferred with a throttling reply. */
export function throttled(over: Partial<RelayRecord> = {}): RelayRecord {
  const reply = { code: 454, enhanced: '4.7.0', text: 'Throttling failure: Maximum sending rate exceeded.' };
  return relay({
    outcome: 'deferred',
    upstream: { name: 'ses', host: 'email-smtp.eu-west-1.amazonaws.com', port: 587, tls: null, reusedConnection: true, queueId: null },
    attempts: [{ upstream: 'ses', startedAt: over.time ?? '2026-11-25T10:15:02.400Z', ms: 40, phase: 'envelope', reply, error: null, class: 'throttled' }],
    upstreamReply: { ...reply, phase: 'mail' },
    clientReply: { code: 451, enhanced: '4.7.0', text: 'Upstream is throttling: try again later' },
    failure: {
      class: 'throttled',
      retryable: true,
      actor: 'upstream',
      scope: 'account',
      detail: { rule: 'ses-max-send-rate', code: 'EENVELOPE', cause: null, timeoutType: null, message: null },
    },
    rcpt: [{ to: 'ana@example.org', status: 'deferred', reply: null }],
    ...over,
  });
}

/** A message accepted into the spool (spool mode): 250 queued, nothing tried yet. */
export function queued(over: Partial<RelayRecord> = {}): RelayRecord {
  const time = over.time ?? '2026-11-25T10:15:02.481Z';
  const id = over.id ?? fakeId(Date.parse(time));
  return relay({
    time,
    id,
    rcpt: [{ to: 'ana@example.org', status: 'queued', reply: null }],
    route: null,
    upstream: null,
    attempts: [],
    upstreamReply: null,
    clientReply: { code: 250, enhanced: '2.0.0', text: `Ok: queued as ${id} (id ${id})` },
    outcome: 'queued',
    failure: null,
    timing: { totalMs: 12, receiveMs: 3, waitMs: 0, connectMs: 0, envelopeMs: 0, dataMs: 0 },
    spool: { mode: 'spool', reason: 'spool mode' },
    ...over,
  });
}

/** A delivery attempt from the spool of message `spoolId`: delivered, unless overridden. */
export function delivery(spoolId: string, over: Partial<DeliveryRecord> = {}): DeliveryRecord {
  const time = over.time ?? '2026-11-25T10:15:03.000Z';
  const ok = { code: 250, enhanced: null, text: 'Ok 0102019a7c1d2e3f-000000' };
  return {
    v: 1,
    type: 'delivery',
    time,
    id: fakeId(Date.parse(time)),
    instance: 'mt-a',
    spoolId,
    attempt: 1,
    route: 'default',
    upstream: { name: 'ses', host: 'email-smtp.eu-west-1.amazonaws.com', port: 587, tls: null, reusedConnection: true, queueId: '0102019a7c1d2e3f-000000' },
    attempts: [{ upstream: 'ses', startedAt: time, ms: 80, phase: 'done', reply: ok, error: null, class: null }],
    upstreamReply: { ...ok, phase: 'data' },
    rcpt: [{ to: 'ana@example.org', status: 'accepted', reply: null }],
    outcome: 'delivered',
    failure: null,
    next: { action: 'end', at: null },
    timing: { totalMs: 80, waitMs: 0, connectMs: 0, envelopeMs: 30, dataMs: 50 },
    duplicateRisk: false,
    ...over,
  };
}

/** A spooled message's end, or another spool event. */
export function spoolEvent(spoolId: string | null, over: Partial<SpoolRecord> = {}): SpoolRecord {
  const time = over.time ?? '2026-11-25T10:15:03.100Z';
  return {
    v: 1,
    type: 'spool',
    time,
    id: fakeId(Date.parse(time)),
    instance: 'mt-a',
    spoolId,
    event: 'delivered',
    upstream: null,
    reason: null,
    by: null,
    dsn: null,
    ...over,
  };
}

/** A message over limits.maxMessageSize: mailtrail answered 552 itself, no upstream was tried. */
export function oversize(over: Partial<RelayRecord> = {}): RelayRecord {
  return relay({
    message: { size: 38_000_000, sha256: 'c'.repeat(64), messageId: '<big-1@example.com>', subject: null, headerFrom: null },
    route: null,
    upstream: null,
    attempts: [],
    upstreamReply: null,
    clientReply: { code: 552, enhanced: '5.3.4', text: 'Message size exceeds the limit' },
    outcome: 'rejected',
    rcpt: [{ to: 'ana@example.org', status: 'rejected', reply: null }],
    failure: {
      class: 'too_large',
      retryable: false,
      actor: 'sender',
      scope: 'message',
      detail: { rule: null, code: null, cause: null, timeoutType: null, message: 'message exceeds limits.maxMessageSize (26214400 bytes)' },
    },
    timing: { totalMs: 900, receiveMs: 900, waitMs: 0, connectMs: 0, envelopeMs: 0, dataMs: 0 },
    ...over,
  });
}

export function reject(over: Partial<RejectRecord> = {}): RejectRecord {
  const time = over.time ?? '2026-11-25T10:15:01.900Z';
  return {
    v: 1,
    type: 'reject',
    time,
    id: over.id ?? fakeId(Date.parse(time)),
    instance: 'mt-a',
    session: { id: 'k3x9q0abcdefghij', txn: 0 },
    client: CLIENT,
    command: 'RCPT',
    from: 'invoices@example.com',
    to: 'x@example.net',
    authUser: null,
    class: 'too_many_recipients',
    clientReply: { code: 452, enhanced: '4.5.3', text: 'Too many recipients' },
    source: 'policy',
    count: 1,
    ...over,
  };
}

export function session(over: Partial<SessionRecord> = {}): SessionRecord {
  const time = over.time ?? '2026-11-25T10:15:05.000Z';
  return {
    v: 1,
    type: 'session',
    time,
    id: over.id ?? fakeId(Date.parse(time)),
    instance: 'mt-a',
    session: { id: 'k3x9q0abcdefghij' },
    client: CLIENT,
    transactions: 1,
    accepted: 1,
    rejected: 0,
    bytes: 18234,
    durationMs: 5100,
    refusals: {},
    refusalsSummarised: {},
    ...over,
  };
}

export function alert(over: Partial<AlertRecord> = {}): AlertRecord {
  const time = over.time ?? '2026-11-25T10:16:00.000Z';
  return {
    v: 1,
    type: 'alert',
    time,
    id: over.id ?? fakeId(Date.parse(time)),
    instance: 'mt-a',
    state: 'fired',
    rule: 'throttling',
    upstream: 'ses',
    class: 'throttled',
    message: 'ses is throttling',
    sinks: ['webhook'],
    ...over,
  };
}

export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'mailtrail-tools-'));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export function toLines(records: readonly object[]): string {
  return records.map((r) => JSON.stringify(r) + '\n').join('');
}

/** Writes records as a trail file (gzip-compressed with `gzip`); returns its path. */
export async function writeTrail(dir: string, name: string, records: readonly object[], opts: { gzip?: boolean } = {}): Promise<string> {
  const path = join(dir, name);
  const text = toLines(records);
  await writeFile(path, opts.gzip ? gzipSync(text) : text);
  return path;
}

export interface MemoryIo extends ToolIo {
  out(): string;
  err(): string;
  /** Ends stdin (after writing `text`, when given). */
  endStdin(text?: string | Buffer): void;
  readonly stdinStream: PassThrough;
}

/** A ToolIo writing to memory: not a terminal, no NO_COLOR, no config variables. */
export function memoryIo(opts: { env?: NodeJS.ProcessEnv; cwd?: string; isTty?: boolean; signal?: AbortSignal } = {}): MemoryIo {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  let out = '';
  let err = '';
  stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  return {
    stdout,
    stderr,
    stdin,
    stdinStream: stdin,
    env: opts.env ?? {},
    cwd: opts.cwd ?? process.cwd(),
    isTty: opts.isTty ?? false,
    ...(opts.signal ? { signal: opts.signal } : {}),
    out: () => out,
    err: () => err,
    endStdin(text) {
      if (text !== undefined) stdin.write(text);
      stdin.end();
    },
  };
}

/** Runs `mailtrail verify` as a user would, capturing what it prints. */
export async function runVerify(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk, _enc, cb) {
        append(String(chunk));
        cb();
      },
    });
  const code = await verifyCommand(
    argv,
    sink((s) => (out += s)),
    sink((s) => (err += s)),
  );
  return { code, out, err };
}
