import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maskAddress } from '../../src/audit/privacy.js';
import type { AuditRecord } from '../../src/audit/records.js';
import { containsAny, memberValueIn } from '../../src/tools/line-prefilter.js';
import { runTrailCommand } from '../../src/tools/trail-commands.js';
import { memoryIo, reject, relay, removeDir, session, tempDir, throttled, toLines, writeTrail } from '../helpers/trail-fixtures.js';

const MID = '<inv-5521@example.com>';
const SHA = 'b'.repeat(64);
const message = { size: 18234, sha256: SHA, messageId: MID, subject: null, headerFrom: 'Billing <invoices@example.com>' };

// The story of one message: refused once for too many recipients, deferred (throttled), retried and
// lost after the final dot (duplicate risk), retried again and delivered (linked as a duplicate).
const refusedRcpt = reject({ time: '2026-11-25T10:00:00.500Z', session: { id: 'sessaaaaaaaaaaaa', txn: 0 }, to: 'extra@example.net' });
const otherTxnRefusal = reject({
  time: '2026-11-25T10:00:05.000Z',
  session: { id: 'sessaaaaaaaaaaaa', txn: 1 },
  from: 'someone-else@example.com',
  class: 'sender_denied',
  command: 'MAIL',
});
const deferred = throttled({ time: '2026-11-25T10:00:01.000Z', id: '01M8900000000000000000000A', session: { id: 'sessaaaaaaaaaaaa', txn: 1 }, message });
const unrelatedSameSession = relay({
  time: '2026-11-25T10:00:06.000Z',
  id: '01M8900000000000000000000X',
  session: { id: 'sessaaaaaaaaaaaa', txn: 2 },
  from: 'someone-else@example.com',
  rcpt: [{ to: 'z@example.net', status: 'accepted', reply: null }],
  message: { ...message, messageId: '<other@example.com>', sha256: 'c'.repeat(64) },
  upstream: { name: 'ses', host: 'h', port: 587, tls: null, reusedConnection: true, queueId: 'OTHERQ' },
});
const sessionA = session({ time: '2026-11-25T10:00:07.000Z', session: { id: 'sessaaaaaaaaaaaa' }, transactions: 2, accepted: 1, rejected: 2 });
const lost = relay({
  time: '2026-11-25T10:05:00.000Z',
  id: '01M8900000000000000000000B',
  session: { id: 'sessbbbbbbbbbbbb', txn: 1 },
  message,
  outcome: 'unknown',
  duplicateRisk: true,
  duplicateOf: '01M8900000000000000000000A',
  upstream: { name: 'ses', host: 'h', port: 587, tls: null, reusedConnection: true, queueId: null },
  attempts: [
    {
      upstream: 'ses',
      startedAt: '2026-11-25T10:04:59.900Z',
      ms: 90,
      phase: 'sent',
      reply: null,
      error: { code: 'ECONNECTION', cause: 'ECONNRESET', message: 'Connection closed unexpectedly' },
      class: 'unknown_outcome',
    },
  ],
  upstreamReply: null,
  clientReply: { code: 451, enhanced: '4.4.2', text: 'Connection lost after the message was sent (id 01M8900000000000000000000B)' },
  failure: {
    class: 'unknown_outcome',
    retryable: null,
    actor: 'upstream',
    scope: 'message',
    detail: { rule: 'lost-after-dot', code: 'ECONNECTION', cause: 'ECONNRESET', timeoutType: null, message: null },
  },
});
const sessionB = session({ time: '2026-11-25T10:05:01.000Z', session: { id: 'sessbbbbbbbbbbbb' } });
const delivered = relay({
  time: '2026-11-25T10:20:00.000Z',
  id: '01M8900000000000000000000C',
  session: { id: 'sesscccccccccccc', txn: 1 },
  message,
  duplicateOf: '01M8900000000000000000000B',
  attempts: [
    {
      upstream: 'ses',
      startedAt: '2026-11-25T10:19:59.800Z',
      ms: 3,
      phase: 'connecting',
      reply: null,
      error: { code: 'ESOCKET', cause: 'ECONNREFUSED', message: null },
      class: 'connect',
    },
    {
      upstream: 'backup',
      startedAt: '2026-11-25T10:19:59.810Z',
      ms: 80,
      phase: 'done',
      reply: { code: 250, enhanced: null, text: 'Ok: queued as 4XyZ12AbC' },
      error: null,
      class: null,
    },
  ],
  upstream: {
    name: 'backup',
    host: 'smtp.backup.example',
    port: 587,
    tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', authorized: true },
    reusedConnection: false,
    queueId: '4XyZ12AbC',
  },
});
const sessionC = session({ time: '2026-11-25T10:20:01.000Z', session: { id: 'sesscccccccccccc' } });
const noise = Array.from({ length: 50 }, (_, i) =>
  relay({
    time: `2026-11-25T10:10:${String(i).padStart(2, '0')}.000Z`,
    session: { id: `noise${i}`.padEnd(16, 'x'), txn: 1 },
    from: `n${i}@example.com`,
    rcpt: [{ to: `r${i}@example.org`, status: 'accepted', reply: null }],
    message: { ...message, messageId: `<n${i}@example.com>`, sha256: String(i % 10).repeat(64) },
    upstream: { name: 'ses', host: 'h', port: 587, tls: null, reusedConnection: true, queueId: `NQ${i}` },
  }),
);

const story: AuditRecord[] = [refusedRcpt, deferred, lost, sessionB, delivered, sessionC, sessionA];

async function lookup(args: string[], opts: Parameters<typeof memoryIo>[0] = {}) {
  const io = memoryIo(opts);
  const code = await runTrailCommand('lookup', args, io);
  return { code, out: io.out(), err: io.err(), io };
}

const ids = (out: string): string[] =>
  out
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as AuditRecord).id);
const inTimeOrder = (records: AuditRecord[]): string[] => [...records].sort((a, b) => (a.time < b.time ? -1 : 1)).map((r) => r.id);

describe('mailtrail lookup', () => {
  let dir: string;
  let files: string[];

  beforeAll(async () => {
    dir = await tempDir();
    // Spread over a compressed rotated file and the current one, noise in between.
    files = [
      await writeTrail(dir, 'audit.log.1.gz', [refusedRcpt, deferred, otherTxnRefusal, unrelatedSameSession, sessionA, ...noise.slice(0, 25), lost, sessionB], {
        gzip: true,
      }),
      await writeTrail(dir, 'audit.log', [...noise.slice(25), delivered, sessionC]),
    ];
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('finds by Message-ID every record of the message, in time order, across rotated and compressed files', async () => {
    const { code, out } = await lookup([MID, ...files, '--json']);
    expect(code).toBe(0);
    expect(ids(out)).toEqual(inTimeOrder(story));
  });

  it('leaves out other transactions of the same connections', async () => {
    const { out } = await lookup([MID, ...files, '--json']);
    expect(ids(out)).not.toContain(unrelatedSameSession.id);
    expect(ids(out)).not.toContain(otherTxnRefusal.id);
  });

  it('tells the same story from the Message-ID without brackets, a mailtrail id, the upstream queue id or an earlier id', async () => {
    const expected = inTimeOrder(story);
    for (const key of ['inv-5521@example.com', delivered.id, delivered.id.toLowerCase(), '4XyZ12AbC', deferred.id]) {
      const { out } = await lookup([key, ...files, '--json']);
      expect(ids(out), key).toEqual(expected);
    }
  });

  it('prints the records exactly as they are in the trail with --json', async () => {
    const { out } = await lookup([delivered.id, ...files, '--json']);
    expect(out).toContain(JSON.stringify(delivered) + '\n');
  });

  it('renders the story: verdict, envelope, each attempt and the failover, the reply, timings and duplicate links', async () => {
    const { out } = await lookup([MID, ...files]);
    expect(out).toMatch(/^lookup <inv-5521@example\.com> \(message-id\): 7 record\(s\), 2026-11-25 10:00:00\.500Z → 2026-11-25 10:20:01\.000Z/);
    expect(out).toContain(
      'latest outcome: delivered at 2026-11-25 10:20:00.000Z via backup (queue 4XyZ12AbC), after 2 earlier transaction(s): deferred, unknown',
    );
    expect(out).toMatch(/refused +too_many_recipients +invoices@example\.com → extra@example\.net/);
    expect(out).toMatch(/relay {2}deferred {2}throttled {2}01M8900000000000000000000A/);
    expect(out).toMatch(/attempt 1 ses .* reached envelope {2}454 4\.7\.0 Throttling failure: Maximum sending rate exceeded\. {2}→ throttled/);
    expect(out).toContain('duplicate risk: connection lost after the final dot');
    expect(out).toMatch(/attempt 1 ses .*reached connecting {2}ESOCKET ECONNREFUSED {2}→ connect/);
    expect(out).toMatch(/attempt 2 backup .*reached done {2}250 Ok: queued as 4XyZ12AbC/);
    expect(out).toContain('failover  ses → backup');
    expect(out).toContain('decided   backup smtp.backup.example:587 TLSv1.3  queue 4XyZ12AbC');
    expect(out).toContain('duplicate of 01M8900000000000000000000B');
    expect(out).toMatch(/replied {3}451 4\.4\.2 Connection lost after the message was sent/);
    expect(out).toMatch(/timing {4}total 96ms: receive 17, wait 0, connect 0, envelope 31, data 48 \(ms\)/);
    expect(out).toMatch(/session +10\.0\.4\.17 \(billing\) {2}2 txn, 1 accepted, 2 refused/);
    expect(out).toContain(`${files[0]}:2`);
  });

  it('finds by address the messages sent to or from it, case-insensitively', async () => {
    const { code, out } = await lookup(['R30@Example.ORG', ...files, '--json']);
    expect(code).toBe(0);
    expect(ids(out)).toContain(noise[30]!.id);
    expect(ids(out)).not.toContain(noise[31]!.id);
  });

  it('finds a clear address in a pseudonymized trail by masking it with the configured key', async () => {
    const key = 'secret-key-0123456789abcdef';
    const sub = join(dir, 'private');
    await mkdir(sub);
    const masked = relay({
      id: '01M8900000000000000000000P',
      from: maskAddress('invoices@example.com', 'pseudonymize', key),
      rcpt: [{ to: maskAddress('ana@example.org', 'pseudonymize', key), status: 'accepted', reply: null }],
    });
    const trail = await writeTrail(sub, 'audit.log', [masked, ...noise.slice(0, 3)]);
    await writeFile(
      join(sub, 'c.yaml'),
      `listen:\n  - { port: 2525 }\nupstreams:\n  - name: ses\n    url: smtp://127.0.0.1:2525\naudit:\n  file: audit.log\n  privacy: pseudonymize\n  hmacKey: ${key}\n`,
    );
    const found = await lookup(['Ana@example.org', '--config', join(sub, 'c.yaml')]);
    expect(found.code).toBe(0);
    expect(found.out).toContain(masked.id);
    expect(found.out).toContain('the trail is pseudonymized: the address was masked with the configured key');
    // Without the key, the pseudonym cannot be made: nothing matches, and lookup says what to give.
    const without = await lookup(['ana@example.org', trail]);
    expect(without.code).toBe(1);
    expect(without.err).toContain('if the trail is pseudonymized (audit.privacy), give --config with its audit.hmacKey');
  });

  it('exits 1 and says so when no record mentions the key', async () => {
    const { code, out, err } = await lookup(['<nothing@example.com>', ...files]);
    expect(code).toBe(1);
    expect(out).toBe('');
    expect(err).toMatch(/no record mentions <nothing@example\.com>/);
  });

  it('keeps the most recent records with --limit and says how many were left out', async () => {
    const { out } = await lookup([MID, ...files, '--limit', '3']);
    expect(out).toContain('4 earlier record(s) not shown (--limit)');
    // The count of earlier transactions is of those shown, not of all there are.
    const wider = await lookup([MID, ...files, '--limit', '6']);
    expect(wider.out).toMatch(/after \d+ earlier transaction\(s\) shown here:/);
    const json = await lookup([MID, ...files, '--limit', '3', '--json']);
    expect(ids(json.out)).toEqual(inTimeOrder(story).slice(-3));
  });

  it('reads standard input once, showing the records that name the key', async () => {
    const io = memoryIo();
    io.endStdin(toLines([refusedRcpt, deferred, lost, delivered, sessionC]));
    expect(await runTrailCommand('lookup', ['4XyZ12AbC', '-', '--json'], io)).toBe(0);
    expect(ids(io.out())).toEqual([delivered.id]);
  });

  it('reads the configured trail and its rotated files when no file is given', async () => {
    const sub = join(dir, 'configured');
    await mkdir(join(sub, 'data'), { recursive: true });
    await writeTrail(sub, 'data/audit.log.2026-11-25T101502.123Z.gz', [deferred, lost], { gzip: true });
    await writeTrail(sub, 'data/audit.log', [delivered]);
    const { out } = await lookup([MID, '--json'], { cwd: sub });
    expect(ids(out)).toEqual([deferred.id, lost.id, delivered.id]);
  });

  it('wants a key (exit 2)', async () => {
    const { code, err } = await lookup([]);
    expect(code).toBe(2);
    expect(err).toContain('Usage: mailtrail lookup');
  });
});

describe('the byte-level line filters of lookup', () => {
  /** The lines of `text` a filter lets through, as the reader calls it (in order, per buffer). */
  function passing(filter: ReturnType<typeof containsAny>, text: string): string[] {
    const buf = Buffer.from(text);
    const out: string[] = [];
    let start = 0;
    for (let nl = buf.indexOf(10); nl !== -1; nl = buf.indexOf(10, start)) {
      if (filter(buf, start, nl)) out.push(buf.toString('utf8', start, nl));
      start = nl + 1;
    }
    return out;
  }

  it('finds a needle in any ASCII case, only in the lines that hold it', () => {
    const text = '{"to":"Ana@Example.ORG"}\n{"to":"bo@example.org"}\n{"x":"ANA@EXAMPLE.ORG","y":"ana@example.org"}\n{"to":"ana@example.orgx"}\n';
    expect(passing(containsAny(['ana@example.org']), text)).toEqual([
      '{"to":"Ana@Example.ORG"}',
      '{"x":"ANA@EXAMPLE.ORG","y":"ana@example.org"}',
      '{"to":"ana@example.orgx"}',
    ]);
  });

  it('matches non-ASCII needles byte for byte', () => {
    expect(passing(containsAny(['jürgen@exämple.de']), '{"to":"jürgen@exämple.de"}\n{"to":"jurgen@example.de"}\n')).toEqual(['{"to":"jürgen@exämple.de"}']);
  });

  it('lets a line through when a named member has a known value, and when a value has an escape', () => {
    const filter = memberValueIn(['messageId', 'id'], new Set(['m-1@x', 'abc']), (s) => s.replace(/^<|>$/g, '').toLowerCase());
    const text = [
      '{"id":"ABC","messageId":"<zzz@x>"}',
      '{"id":"q","messageId":"<M-1@x>"}',
      '{"id":"q","messageId":"<a\\"b@x>"}',
      '{"id":"q","other":"abc"}',
      '',
    ].join('\n');
    expect(passing(filter, text)).toEqual(['{"id":"ABC","messageId":"<zzz@x>"}', '{"id":"q","messageId":"<M-1@x>"}', '{"id":"q","messageId":"<a\\"b@x>"}']);
  });
});
