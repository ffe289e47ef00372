/**
 * The trails of three instances read together (docs/fleet.md, "Reading the trails of a fleet"):
 * written by three real relays in front of one upstream, then verified, tailed, reported and looked up
 * as an operator does with `a/audit.log* b/audit.log* c/audit.log*`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashChain } from '../../src/audit/chain.js';
import type { AuditRecord } from '../../src/audit/records.js';
import { runTrailCommand } from '../../src/tools/trail-commands.js';
import { groupByInstance } from '../../src/tools/trail-instances.js';
import { startFakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay } from '../helpers/relay-harness.js';
import { memoryIo, relay, removeDir, runVerify, session, tempDir } from '../helpers/trail-fixtures.js';

let dir = '';
const trails: Record<'a' | 'b' | 'c', string> = { a: '', b: '', c: '' };
const RETRIED = '<fleet-retried@example.com>';

beforeAll(async () => {
  dir = await tempDir();
  const upstream = await startFakeUpstream();
  const relays = [];
  for (const name of ['a', 'b', 'c'] as const) {
    await mkdir(join(dir, name));
    trails[name] = join(dir, name, 'audit.log');
    relays.push(await startRelay({ upstreams: [{ port: upstream.port, breaker: null }], instance: `mt-${name}`, auditFile: trails[name] }));
  }
  const [a, b, c] = relays as [(typeof relays)[0], (typeof relays)[0], (typeof relays)[0]];
  const raw = simpleMessage({ messageId: RETRIED });
  const send = (r: typeof a, messageId: string, body?: Buffer) =>
    r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: body ?? simpleMessage({ messageId }) });
  await send(a, '<fleet-a1@example.com>');
  // The upstream defers the message on A; the app retries, and the balancer sends it to B.
  await upstream.setFaults({ data: { code: 451, text: '4.3.0 Try again later' } });
  expect((await send(a, RETRIED, raw)).code).toBe(451);
  await upstream.resetFaults();
  await send(c, '<fleet-c1@example.com>');
  expect((await send(b, RETRIED, raw)).code).toBe(250);
  await send(c, '<fleet-c2@example.com>');
  for (const r of relays) await r.stop();
  await upstream.close();
});

afterAll(async () => {
  await removeDir(dir);
});

const records = (file: string): AuditRecord[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);

async function tool(name: 'tail' | 'report' | 'lookup', args: string[]): Promise<{ code: number; out: string }> {
  const io = memoryIo();
  const code = await runTrailCommand(name, args, io);
  return { code, out: io.out() };
}

describe('the trails of several instances', () => {
  it('verify checks each instance chain on its own and says so per instance', async () => {
    const { code, out } = await runVerify([trails.a, trails.b, trails.c]);
    expect(code).toBe(0);
    const lines = out.trim().split('\n');
    expect(lines.map((l) => l.split(':')[0])).toEqual(['mt-a', 'mt-b', 'mt-c', '3 instances']);
    for (const l of lines.slice(0, 3)) expect(l).toMatch(/^mt-.: intact: \d+ record\(s\) in 1 file\(s\), seq 1\.\./);
    expect(lines[3]).toBe('3 instances: every chain intact');
  });

  it('verify names the one instance whose chain was altered, and still checks the others', async () => {
    const altered = join(dir, 'b-altered.log');
    writeFileSync(altered, readFileSync(trails.b, 'utf8').replace('"from":"app@example.com"', '"from":"evil@example.com"'));
    const { code, out } = await runVerify([trails.a, altered, trails.c]);
    expect(code).toBe(1);
    expect(out).toMatch(/^mt-a: intact/m);
    expect(out).toMatch(/^mt-b: DAMAGED altered at .*b-altered\.log:\d+ \(seq \d+\)/m);
    expect(out).toMatch(/^mt-c: intact/m);
    expect(out).toMatch(/^3 instances: 1 chain\(s\) damaged$/m);
  });

  it('tail merges the records of every instance by time, each line naming its instance', async () => {
    const json = await tool('tail', ['-n', 'all', '--json', trails.c, trails.a, trails.b]);
    const shown = json.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditRecord);
    const all = [trails.a, trails.b, trails.c].flatMap(records);
    expect(shown).toHaveLength(all.length);
    expect(shown.map((r) => r.time)).toEqual([...shown.map((r) => r.time)].sort());
    const plain = await tool('tail', ['-n', '3', '--outcome', 'delivered,deferred', trails.a, trails.b, trails.c]);
    const lines = plain.out.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(['mt-c', 'mt-b', 'mt-c']);
  });

  it('report adds up every instance and groups by instance', async () => {
    const { code, out } = await tool('report', ['--json', '--by', 'instance', trails.a, trails.b, trails.c]);
    expect(code).toBe(0);
    const report = JSON.parse(out) as { records: { relay: number }; by: { key: string; groups: { key: string; relay: number }[] } };
    expect(report.records.relay).toBe(5);
    expect(Object.fromEntries(report.by.groups.map((g) => [g.key, g.relay]))).toEqual({ 'mt-a': 2, 'mt-b': 1, 'mt-c': 2 });
  });

  it('lookup tells one story across instances: deferred on one, delivered on the next', async () => {
    const { code, out } = await tool('lookup', [RETRIED, trails.a, trails.b, trails.c]);
    expect(code).toBe(0);
    expect(out).toMatch(/record\(s\) across 2 instances \(mt-a, mt-b\)/);
    const relays = out.split('\n').filter((l) => / relay /.test(l));
    expect(relays.map((l) => /(deferred|delivered)/.exec(l)?.[1])).toEqual(['deferred', 'delivered']);
    expect(relays[0]).toMatch(/mt-a +.*a\/audit\.log:\d+/);
    expect(relays[1]).toMatch(/mt-b +.*b\/audit\.log:\d+/);
    // Found from A's record id too: the Message-ID links the retry on B.
    const firstId = records(trails.a).find((r) => r.type === 'relay' && r.message.messageId === RETRIED)!.id;
    expect((await tool('lookup', [firstId, trails.a, trails.b, trails.c])).out).toMatch(/across 2 instances/);
  });
});

describe('grouping trail files by instance', () => {
  /** A chained trail split over files; `instance` undefined writes records as before the field existed. */
  function chainedFiles(name: string, instance: string | undefined, perFile: number[]): string[] {
    const chain = new HashChain();
    let minute = 0;
    return perFile.map((count, i) => {
      const lines: string[] = [];
      for (let k = 0; k < count; k++) {
        const time = `2026-11-25T10:${String(minute++).padStart(2, '0')}:00.000Z`;
        const { instance: _none, ...base } = k % 2 === 0 ? relay({ time, id: undefined }) : session({ time });
        const sealed = chain.seal(instance === undefined ? base : { ...base, instance });
        chain.commit(sealed);
        lines.push(sealed.line);
      }
      const file = join(dir, `${name}${i === perFile.length - 1 ? '' : `.${perFile.length - 1 - i}`}`);
      writeFileSync(file, lines.join(''));
      return file;
    });
  }

  it('orders each instance files by their first seq, whatever order the shell gave them in', async () => {
    const files = chainedFiles('x-audit.log', 'mt-x', [3, 2, 4]);
    const shuffled = [files[2]!, files[0]!, files[1]!];
    expect(await groupByInstance(shuffled)).toEqual([{ instance: 'mt-x', label: 'mt-x', files }]);
    const other = chainedFiles('y-audit.log', 'mt-y', [2]);
    const { code, out } = await runVerify([...shuffled, ...other]);
    expect(code, out).toBe(0);
    expect(out).toMatch(/^mt-x: intact: 9 record\(s\) in 3 file\(s\), seq 1\.\.9/m);
  });

  it('tells files without instance apart by file set, and joins them to the instance writing on under that name', async () => {
    const old = chainedFiles('z-audit.log', undefined, [2, 2]);
    const groups = await groupByInstance([...old, trails.a]);
    expect(groups.map((g) => g.label)).toEqual([`file set ${join(dir, 'z-audit.log')}`, 'mt-a']);
    expect(groups[0]!.files).toEqual(old);
    const { code, out } = await runVerify([...old, trails.a]);
    expect(code, out).toBe(0);
    expect(out).toMatch(/^file set .*z-audit\.log: intact: 4 record\(s\) in 2 file\(s\)/m);
  });
});
