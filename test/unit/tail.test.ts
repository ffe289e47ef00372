import { appendFile, mkdir, rename, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maskAddress } from '../../src/audit/privacy.js';
import { tailCommand } from '../../src/tools/tail.js';
import { runTrailCommand } from '../../src/tools/trail-commands.js';
import { alert, memoryIo, reject, relay, removeDir, session, tempDir, throttled, toLines, writeTrail, type MemoryIo } from '../helpers/trail-fixtures.js';

const ESC = '\u001b[';

async function tail(args: string[], opts: Parameters<typeof memoryIo>[0] = {}): Promise<{ code: number; lines: string[]; io: MemoryIo }> {
  const io = memoryIo(opts);
  const code = await runTrailCommand('tail', args, io);
  return { code, lines: io.out().split('\n').filter(Boolean), io };
}

/** Polls until `check()` holds (bounded: 5 s). */
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('mailtrail tail', () => {
  let dir: string;
  let file: string;
  const failover = relay({
    time: '2026-11-25T10:15:03.000Z',
    rcpt: [
      { to: 'ana@example.org', status: 'accepted', reply: null },
      { to: 'bo@example.net', status: 'accepted', reply: null },
      { to: 'cy@example.net', status: 'accepted', reply: null },
    ],
    attempts: [
      {
        upstream: 'ses',
        startedAt: '2026-11-25T10:15:02.900Z',
        ms: 4,
        phase: 'connecting',
        reply: null,
        error: { code: 'ESOCKET', cause: 'ECONNREFUSED', message: null },
        class: 'connect',
      },
      {
        upstream: 'backup',
        startedAt: '2026-11-25T10:15:02.910Z',
        ms: 50,
        phase: 'done',
        reply: { code: 250, enhanced: null, text: 'Ok: queued as Q2' },
        error: null,
        class: null,
      },
    ],
    upstream: { name: 'backup', host: 'smtp.backup.example', port: 587, tls: null, reusedConnection: false, queueId: 'Q2' },
  });
  const bounced = relay({
    time: '2026-11-25T10:15:04.000Z',
    from: 'news@shop.example.com',
    rcpt: [{ to: 'gone@example.org', status: 'rejected', reply: { code: 550, enhanced: '5.1.1', text: 'User unknown' } }],
    outcome: 'rejected',
    upstream: { name: 'ses', host: 'h', port: 587, tls: null, reusedConnection: true, queueId: null },
    upstreamReply: { code: 550, enhanced: '5.1.1', text: 'User unknown', phase: 'rcpt' },
    clientReply: { code: 550, enhanced: '5.1.1', text: 'User unknown' },
    failure: {
      class: 'recipient_rejected',
      retryable: false,
      actor: 'recipient',
      scope: 'recipient',
      detail: { rule: 'rcpt-5xx', code: 'EENVELOPE', cause: null, timeoutType: null, message: null },
    },
  });
  const lost = relay({
    time: '2026-11-25T10:15:05.000Z',
    outcome: 'unknown',
    duplicateRisk: true,
    upstreamReply: null,
    upstream: { name: 'ses', host: 'h', port: 587, tls: null, reusedConnection: true, queueId: null },
    failure: {
      class: 'unknown_outcome',
      retryable: null,
      actor: 'upstream',
      scope: 'message',
      detail: { rule: 'lost-after-dot', code: 'ECONNECTION', cause: 'ECONNRESET', timeoutType: null, message: null },
    },
  });
  const records = [
    relay({ time: '2026-11-25T10:15:02.481Z', id: '01JDQ5K8Z3M4V6T9A1B2C3D4E5' }),
    failover,
    reject({ time: '2026-11-25T10:15:03.500Z' }),
    bounced,
    throttled({ time: '2026-11-25T10:15:04.500Z' }),
    lost,
    session({ time: '2026-11-25T10:15:06.000Z' }),
    alert({ time: '2026-11-25T10:15:07.000Z' }),
  ];

  beforeAll(async () => {
    dir = await tempDir();
    file = await writeTrail(dir, 'audit.log', records);
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('prints one line per record: time, outcome, class, from → to, upstream, reply code, queue id, total ms, id', async () => {
    const { code, lines } = await tail([file]);
    expect(code).toBe(0);
    expect(lines).toHaveLength(records.length);
    expect(lines[0]).toBe(
      '2026-11-25 10:15:02.481Z  delivered  -                     invoices@example.com → ana@example.org  ses 250 q=0102019a7c1d2e3f-000000  96ms  01JDQ5K8Z3M4V6T9A1B2C3D4E5',
    );
  });

  it('shows the first recipient and how many more, and the upstreams tried when it failed over', async () => {
    const { lines } = await tail([file]);
    expect(lines[1]).toContain('invoices@example.com → ana@example.org +2');
    expect(lines[1]).toContain('ses›backup 250 q=Q2');
  });

  it('shows the class, the reply code, or the error when no reply came, and the duplicate risk', async () => {
    const { lines } = await tail([file]);
    expect(lines[3]).toMatch(/ rejected +recipient_rejected +news@shop\.example\.com → gone@example\.org {2}ses 550 5\.1\.1 /);
    expect(lines[4]).toMatch(/ deferred +throttled +.* ses 454 4\.7\.0 /);
    expect(lines[5]).toMatch(/ unknown +unknown_outcome +.* ses ECONNRESET .*dup-risk$/);
  });

  it('gives refusals, sessions and alerts their own compact lines', async () => {
    const { lines } = await tail([file]);
    expect(lines[2]).toMatch(
      /^2026-11-25 10:15:03\.500Z {2}refused +too_many_recipients +invoices@example\.com → x@example\.net {2}RCPT 452 4\.5\.3 {2}10\.0\.4\.17 \(billing\) {2}\S+$/,
    );
    expect(lines[6]).toMatch(
      /^2026-11-25 10:15:06\.000Z {2}session +10\.0\.4\.17 \(billing\) {2}1 txn, 1 accepted, 0 refused {2}18 KB {2}5\.1s {2}TLSv1\.3 {2}session k3x9q0abcdefghij$/,
    );
    expect(lines[7]).toMatch(/alert fired +throttling +ses throttled {2}ses is throttling/);
  });

  it('names the username a failed AUTH tried, apart from an authenticated user', async () => {
    const failed = reject({
      command: 'AUTH',
      from: null,
      to: null,
      class: 'auth_failed',
      authUser: 'billing',
      clientReply: { code: 535, enhanced: '5.7.8', text: 'Authentication credentials invalid' },
      client: { ip: '10.0.4.99', port: 1, helo: null, user: null, tls: null, proxy: null },
    });
    const f = await writeTrail(dir, 'auth-failed.log', [failed]);
    const { lines } = await tail([f]);
    expect(lines[0]).toMatch(/refused +auth_failed .* AUTH 535 5\.7\.8 {2}10\.0\.4\.99 \(tried billing\) /);
  });

  it('without a FILE, reaches back into the rotated files when the current one holds fewer than N matches', async () => {
    const sub = join(dir, 'rotated-trail');
    await mkdir(sub, { recursive: true });
    const at = (n: number): string => `2026-11-25T12:00:${String(n).padStart(2, '0')}.000Z`;
    await writeFile(join(sub, 'audit.log.2026-11-25T115900.000Z.gz'), gzipSync(toLines([0, 1, 2, 3].map((n) => relay({ time: at(n) })))));
    await writeTrail(
      sub,
      'audit.log.2026-11-25T120030.000Z',
      [4, 5].map((n) => relay({ time: at(n) })),
    );
    await writeTrail(sub, 'audit.log', [relay({ time: at(6) })]);
    await writeFile(join(sub, 'c.yaml'), 'audit: { file: audit.log }\n');
    const { lines } = await tail(['-n', '5', '--config', join(sub, 'c.yaml')]);
    expect(lines.map((l) => l.slice(17, 19))).toEqual(['02', '03', '04', '05', '06']);
    // A file named on the command line is that file alone, like tail(1).
    expect((await tail(['-n', '5', join(sub, 'audit.log')])).lines).toHaveLength(1);
  });

  it('shows the last 10 records by default and -n N of them', async () => {
    const many = Array.from({ length: 25 }, (_, i) => relay({ time: `2026-11-25T11:00:${String(i).padStart(2, '0')}.000Z` }));
    const f = await writeTrail(dir, 'many.log', many);
    expect((await tail([f])).lines.map((l) => l.slice(0, 24))).toEqual(many.slice(15).map((r) => r.time.replace('T', ' ')));
    expect((await tail([f, '-n', '3'])).lines).toHaveLength(3);
    expect((await tail([f, '-n', 'all'])).lines).toHaveLength(25);
    expect((await tail([f, '-n', '0'])).lines).toHaveLength(0);
  });

  it('with --failures shows failed relay records and refusals only', async () => {
    const { lines } = await tail([file, '--failures', '-n', 'all']);
    expect(lines.map((l) => l.split(/ {2}/)[1]!.trim())).toEqual(['refused', 'rejected', 'deferred', 'unknown']);
  });

  it('filters by outcome (a list; "refused" for refusals), class, sender, recipient and upstream', async () => {
    const outcome = (args: string[]) => tail([file, '-n', 'all', ...args]).then((r) => r.lines.map((l) => l.split(/ {2}/)[1]!.trim()));
    expect(await outcome(['--outcome', 'deferred,unknown'])).toEqual(['deferred', 'unknown']);
    expect(await outcome(['--outcome', 'refused'])).toEqual(['refused']);
    expect(await outcome(['--class', 'throttled'])).toEqual(['deferred', 'alert fired']);
    expect(await outcome(['--from', 'SHOP.example'])).toEqual(['rejected']);
    expect(await outcome(['--to', '@example.net'])).toEqual(['delivered', 'refused']);
    expect(await outcome(['--upstream', 'backup'])).toEqual(['delivered']);
    expect(await outcome(['--upstream', 'ses', '--outcome', 'delivered'])).toEqual(['delivered', 'delivered']);
  });

  it('with --json prints the matching records exactly as they are in the trail', async () => {
    const { lines } = await tail([file, '--json', '--failures', '-n', 'all']);
    expect(lines).toEqual([records[2], bounced, records[4], lost].map((r) => JSON.stringify(r)));
  });

  it('colours outcomes on a terminal: green delivered, yellow deferred/partial/unknown, red rejected and refused', async () => {
    const { lines } = await tail([file, '-n', 'all'], { isTty: true });
    expect(lines[0]).toContain(`${ESC}32mdelivered`);
    expect(lines[2]).toContain(`${ESC}31mrefused`);
    expect(lines[3]).toContain(`${ESC}31mrejected`);
    expect(lines[4]).toContain(`${ESC}33mdeferred`);
    expect(lines[5]).toContain(`${ESC}33munknown`);
  });

  it('prints plain text when NO_COLOR is set or stdout is not a terminal, and colours with FORCE_COLOR', async () => {
    expect((await tail([file], { isTty: true, env: { NO_COLOR: '1' } })).io.out()).not.toContain(ESC);
    expect((await tail([file], { isTty: false })).io.out()).not.toContain(ESC);
    expect((await tail([file], { isTty: false, env: { FORCE_COLOR: '1' } })).io.out()).toContain(ESC);
    expect((await tail([file, '--json'], { isTty: true })).io.out()).not.toContain(ESC);
  });

  it('reads a gzip-compressed rotated file, and refuses to follow one', async () => {
    const gz = await writeTrail(dir, 'audit.log.1.gz', records, { gzip: true });
    const { lines } = await tail([gz, '-n', '2']);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain('alert fired');
    const follow = await tail([gz, '-f']);
    expect(follow.code).toBe(2);
    expect(follow.io.err()).toMatch(/compressed: a rotated file does not grow/);
  });

  it('reads standard input as "-"', async () => {
    const io = memoryIo();
    io.endStdin(toLines(records));
    expect(await tailCommand(['-', '-n', '1'], io)).toBe(0);
    expect(io.out()).toContain('alert fired');
  });

  it('reads the audit file named by the configuration when no file is given', async () => {
    const cfgDir = join(dir, 'configured');
    await mkdir(join(cfgDir, 'trail'), { recursive: true });
    await writeTrail(cfgDir, 'trail/audit.log', [bounced]);
    await writeFile(
      join(cfgDir, 'mailtrail.yaml'),
      'listen:\n  - { port: 2525 }\nupstreams:\n  - name: ses\n    url: smtp://127.0.0.1:2525\naudit:\n  file: trail/audit.log\n',
    );
    expect((await tail(['--config', join(cfgDir, 'mailtrail.yaml')])).lines).toHaveLength(1);
    expect((await tail([], { env: { MAILTRAIL_CONFIG: join(cfgDir, 'mailtrail.yaml') } })).lines[0]).toContain('recipient_rejected');
    // No configuration at all: the embedded default's ./data/audit.log.
    await mkdir(join(cfgDir, 'data'));
    await writeTrail(cfgDir, 'data/audit.log', [lost, session()]);
    expect((await tail([], { cwd: cfgDir })).lines).toHaveLength(2);
  });

  it('finds a clear address in a pseudonymized trail with the configured key', async () => {
    const key = 'k'.repeat(32);
    const cfgDir = join(dir, 'private');
    await mkdir(cfgDir);
    const masked = relay({
      from: maskAddress('invoices@example.com', 'pseudonymize', key),
      rcpt: [{ to: maskAddress('Ana@Example.org', 'pseudonymize', key), status: 'accepted', reply: null }],
    });
    const trail = await writeTrail(cfgDir, 'audit.log', [masked, relay({ rcpt: [{ to: 'bo@example.org', status: 'accepted', reply: null }] })]);
    await writeFile(
      join(cfgDir, 'c.yaml'),
      `listen:\n  - { port: 2525 }\nupstreams:\n  - name: ses\n    url: smtp://127.0.0.1:2525\naudit:\n  file: audit.log\n  privacy: pseudonymize\n  hmacKey: ${key}\n`,
    );
    const { lines } = await tail([trail, '--to', 'ana@example.org', '--config', join(cfgDir, 'c.yaml')]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`→ ${maskAddress('ana@example.org', 'pseudonymize', key)}`);
  });

  it('explains a bad option with the usage (exit 2)', async () => {
    const { code, io } = await tail([file, '--bogus']);
    expect(code).toBe(2);
    expect(io.err()).toContain('Usage: mailtrail tail');
  });
});

describe('mailtrail tail -f', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  function follow(file: string, args: string[] = []): { io: MemoryIo; stop: () => Promise<number> } {
    const ac = new AbortController();
    const io = memoryIo({ signal: ac.signal });
    const running = tailCommand([file, '-f', ...args], io);
    return {
      io,
      stop: async () => {
        ac.abort();
        return running;
      },
    };
  }
  const ids = (io: MemoryIo): string[] =>
    io
      .out()
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(/ {2}/).at(-1)!.trim());

  it('prints the last records, then each new one as it is written', async () => {
    const file = await writeTrail(dir, 'grow.log', [relay({ id: '01M8A00000000000000000000A' }), relay({ id: '01M8A00000000000000000000B' })]);
    const f = follow(file, ['-n', '1']);
    await until(() => ids(f.io).length === 1, 'the last record');
    await appendFile(file, toLines([relay({ id: '01M8A00000000000000000000C' })]));
    // A record written in two pieces is printed once it is whole.
    const line = JSON.stringify(relay({ id: '01M8A00000000000000000000D' }));
    await appendFile(file, line.slice(0, 100));
    await new Promise((r) => setTimeout(r, 400));
    await appendFile(file, line.slice(100) + '\n');
    await until(() => ids(f.io).length === 3, 'the appended records');
    expect(await f.stop()).toBe(0);
    expect(ids(f.io)).toEqual(['01M8A00000000000000000000B', '01M8A00000000000000000000C', '01M8A00000000000000000000D']);
  });

  it('follows the file across rotation: the rest of the old file, then the new one from its start', async () => {
    const file = await writeTrail(dir, 'rotating.log', [relay({ id: '01M8B00000000000000000000A' })]);
    const f = follow(file);
    await until(() => ids(f.io).length === 1, 'the first record');
    // Written to the old file after the rename (the writer has not reopened yet), then a new file.
    await rename(file, `${file}.1`);
    await appendFile(`${file}.1`, toLines([relay({ id: '01M8B00000000000000000000B' })]));
    await new Promise((r) => setTimeout(r, 300));
    await writeFile(file, toLines([relay({ id: '01M8B00000000000000000000C' })]));
    await until(() => ids(f.io).length === 3, 'the records after rotation');
    await appendFile(file, toLines([relay({ id: '01M8B00000000000000000000D' })]));
    await until(() => ids(f.io).length === 4, 'a record in the new file');
    await f.stop();
    expect(ids(f.io)).toEqual(['01M8B00000000000000000000A', '01M8B00000000000000000000B', '01M8B00000000000000000000C', '01M8B00000000000000000000D']);
  });

  it('reads back from the rotated files the records of a rotation it missed between two polls', async () => {
    const id = (n: number): string => `01M8E0000000000000000000${String(n).padStart(2, '0')}`;
    const chained = (n: number): ReturnType<typeof relay> => ({ ...relay({ id: id(n) }), seq: n });
    const file = await writeTrail(dir, 'fast.log', [chained(1)]);
    const f = follow(file);
    await until(() => ids(f.io).length === 1, 'the first record');
    // Two rotations within one poll interval (250 ms): the middle file is never seen by name, and it
    // is already compressed.
    await rename(file, `${file}.2026-11-25T101500.000Z`);
    await appendFile(`${file}.2026-11-25T101500.000Z`, toLines([chained(2)]));
    await writeFile(`${file}.2026-11-25T101501.000Z.gz`, gzipSync(toLines([chained(3), chained(4)])));
    await writeFile(file, toLines([chained(5)]));
    await until(() => ids(f.io).length === 5, 'every record, the missed ones included');
    await f.stop();
    expect(ids(f.io)).toEqual([1, 2, 3, 4, 5].map(id));
  });

  it('says how many records it could not read back when retention already deleted them', async () => {
    const id = (n: number): string => `01M8F0000000000000000000${String(n).padStart(2, '0')}`;
    const chained = (n: number): ReturnType<typeof relay> => ({ ...relay({ id: id(n) }), seq: n });
    await mkdir(join(dir, 'pruned'), { recursive: true });
    const file = await writeTrail(dir, 'pruned/audit.log', [chained(1)]);
    const f = follow(file);
    await until(() => ids(f.io).length === 1, 'the first record');
    await rename(file, `${file}.2026-11-25T101500.000Z`);
    await writeFile(file, toLines([chained(4)]));
    await until(() => ids(f.io).length === 2, 'the record after the gap');
    await f.stop();
    expect(ids(f.io)).toEqual([id(1), id(4)]);
    expect(f.io.err()).toContain('2 record(s) before seq 4 are no longer in the rotated files');
  });

  it('starts again at the beginning when the file is truncated in place', async () => {
    const file = await writeTrail(dir, 'truncated.log', [relay({ id: '01M8C00000000000000000000A' }), relay({ id: '01M8C00000000000000000000B' })]);
    const f = follow(file, ['-n', 'all']);
    await until(() => ids(f.io).length === 2, 'the existing records');
    await truncate(file, 0);
    await new Promise((r) => setTimeout(r, 400));
    await appendFile(file, toLines([relay({ id: '01M8C00000000000000000000C' })]));
    await until(() => ids(f.io).length === 3, 'the record after truncation');
    await f.stop();
    expect(ids(f.io)).toEqual(['01M8C00000000000000000000A', '01M8C00000000000000000000B', '01M8C00000000000000000000C']);
  });

  it('applies the filters to new records too, and waits for a file that does not exist yet', async () => {
    const file = join(dir, 'later.log');
    const f = follow(file, ['--failures']);
    await new Promise((r) => setTimeout(r, 300));
    await writeFile(file, toLines([relay({ id: '01M8D00000000000000000000A' }), throttled({ id: '01M8D00000000000000000000B' })]));
    await until(() => ids(f.io).length === 1, 'the failed record');
    await f.stop();
    expect(ids(f.io)).toEqual(['01M8D00000000000000000000B']);
  });
});
