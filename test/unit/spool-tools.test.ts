/**
 * The trail tools on the story of a spooled message: its `queued` relay record, its `delivery`
 * records and its `spool` end, linked by the spool id. tail shows and filters them, lookup tells
 * them as one story from any of its keys, report counts them apart.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/records.js';
import type { Report } from '../../src/tools/report-builder.js';
import { runTrailCommand } from '../../src/tools/trail-commands.js';
import { delivery, memoryIo, queued, relay, removeDir, spoolEvent, tempDir, throttled, writeTrail } from '../helpers/trail-fixtures.js';

const SPOOL_ID = '01M8C00000000000000000000Q';
const accepted = queued({
  time: '2026-11-25T10:00:00.000Z',
  id: SPOOL_ID,
  message: { size: 900, sha256: 'd'.repeat(64), messageId: '<spooled@example.com>', subject: null, headerFrom: null },
});
const deferral = throttled({ time: '2026-11-25T10:00:01.000Z' });
const firstTry = delivery(SPOOL_ID, {
  time: '2026-11-25T10:00:01.000Z',
  attempt: 1,
  upstream: deferral.upstream,
  attempts: deferral.attempts,
  upstreamReply: deferral.upstreamReply,
  rcpt: [{ to: 'ana@example.org', status: 'deferred', reply: null }],
  outcome: 'deferred',
  failure: deferral.failure,
  next: { action: 'retry', at: '2026-11-25T10:05:01.000Z' },
});
const secondTry = delivery(SPOOL_ID, { time: '2026-11-25T10:05:01.000Z', attempt: 2 });
const end = spoolEvent(SPOOL_ID, { time: '2026-11-25T10:05:01.100Z', event: 'delivered' });
const other = relay({
  time: '2026-11-25T10:01:00.000Z',
  message: { size: 10, sha256: 'e'.repeat(64), messageId: '<other@example.com>', subject: null, headerFrom: null },
});
const records: AuditRecord[] = [accepted, firstTry, other, secondTry, end];

async function run(command: 'tail' | 'lookup' | 'report', args: string[]) {
  const io = memoryIo();
  const code = await runTrailCommand(command, args, io);
  return { code, out: io.out(), lines: io.out().split('\n').filter(Boolean) };
}

describe('the trail tools on a spooled message', () => {
  let dir: string;
  let file: string;

  beforeAll(async () => {
    dir = await tempDir();
    file = await writeTrail(dir, 'audit.log', records);
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('tail shows the acceptance, each delivery attempt with what comes next, and the end', async () => {
    const { code, lines } = await run('tail', [file, '-n', 'all']);
    expect(code).toBe(0);
    expect(lines[0]).toMatch(new RegExp(`queued .* ${SPOOL_ID}$`));
    expect(lines[1]).toMatch(
      new RegExp(`↳ deferred +throttled +attempt 1 of ${SPOOL_ID} → ana@example\\.org +ses 454 4\\.7\\.0 +next retry at 2026-11-25 10:05:01\\.000Z`),
    );
    expect(lines[3]).toMatch(new RegExp(`↳ delivered +- +attempt 2 of ${SPOOL_ID} .* q=0102019a7c1d2e3f-000000 +next end`));
    expect(lines[4]).toMatch(new RegExp(`◆ delivered +${SPOOL_ID}`));
  });

  it('tail filters them: --outcome queued, deferred delivery attempts with --failures, none of them but the acceptance by sender', async () => {
    expect((await run('tail', [file, '-n', 'all', '--outcome', 'queued'])).lines).toHaveLength(1);
    const failures = (await run('tail', [file, '-n', 'all', '--failures', '--json'])).lines.map((l) => (JSON.parse(l) as AuditRecord).id);
    expect(failures).toEqual([firstTry.id]);
    const bySender = (await run('tail', [file, '-n', 'all', '--from', 'invoices@', '--json'])).lines.map((l) => (JSON.parse(l) as AuditRecord).id);
    expect(bySender).toEqual([accepted.id, other.id]);
  });

  it.each([
    ['the spool id', SPOOL_ID],
    ['the Message-ID', '<spooled@example.com>'],
    ['a delivery record id', firstTry.id],
  ])('lookup tells the whole story from %s', async (_what, key) => {
    const { code, out } = await run('lookup', [key, file, '--json']);
    expect(code).toBe(0);
    const found = out
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as AuditRecord).id);
    expect(found).toEqual([accepted.id, firstTry.id, secondTry.id, end.id]);
  });

  it('lookup says where the spooled message stands', async () => {
    const { out } = await run('lookup', [SPOOL_ID, file]);
    expect(out).toContain('latest outcome: queued');
    expect(out).toMatch(/spool: 2 delivery attempt\(s\), the last delivered; ended delivered at 2026-11-25 10:05:01\.100Z/);
  });

  it('report counts the queued acceptance apart, leaves it out of the success rate, and counts attempts and ends', async () => {
    const { code, out } = await run('report', [file, '--json']);
    expect(code).toBe(0);
    const report = JSON.parse(out) as Report;
    expect(report.records).toMatchObject({ relay: 2, delivery: 2, spool: 1, other: 0 });
    expect(report.outcomes).toMatchObject({ queued: 1, delivered: 1 });
    expect(report.successRate).toBe(1);
    expect(report.recipients.queued).toBe(1);
    expect(report.spool).toEqual({ deliveries: { delivered: 1, partial: 0, deferred: 1, rejected: 0, unknown: 0 }, events: { delivered: 1 } });
    const text = (await run('report', [file])).out;
    expect(text).toMatch(/^ {2}queued +1 {2}relay records of messages taken into the spool/m);
    expect(text).toMatch(/^ {2}delivery attempts +2 {2}1 delivered, 1 deferred$/m);
  });
});
