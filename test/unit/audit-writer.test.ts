import { ftruncateSync, fsyncSync, writeSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditWriter, type AuditWriterOptions, type TrailFileOps } from '../../src/audit/audit-writer.js';
import { GENESIS, HashChain } from '../../src/audit/chain.js';
import { Checkpointer } from '../../src/audit/checkpoint.js';
import { IdGenerator } from '../../src/ids.js';
import { createLogger } from '../../src/logger.js';
import { verifyTrail } from '../../src/tools/verify.js';

const silent = createLogger('silent');

interface Line {
  seq?: number;
  prev?: string;
  hash?: string;
  type: string;
  n?: number;
}

async function records(file: string): Promise<Line[]> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
}

const eio = (): Error => Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });

/**
 * The writer's system calls on the real file, with faults: `fsync` / `truncate` fail on the calls
 * listed (1-based; 'all' = every call), and `shortWrite` makes the write of record N stop after
 * `keep` bytes and fail on the rest, as a disk that fills up mid-record does.
 */
function faultyOps(faults: { fsync?: number[]; truncate?: 'all'; shortWrite?: { record: number; keep: number } }): TrailFileOps {
  let fsyncs = 0;
  let records = 0;
  return {
    write(fd, data, offset, length) {
      if (offset === 0 && length > 1) records += 1;
      const short = faults.shortWrite;
      if (short && records === short.record) {
        if (offset >= short.keep) throw eio();
        return writeSync(fd, data, offset, Math.min(length, short.keep - offset));
      }
      return writeSync(fd, data, offset, length);
    },
    fsync(fd) {
      fsyncs += 1;
      if (faults.fsync?.includes(fsyncs)) throw eio();
      fsyncSync(fd);
    },
    truncate(fd, length) {
      if (faults.truncate === 'all') throw eio();
      ftruncateSync(fd, length);
    },
  };
}

/** Writes records n = 1..count; returns what each write did (its seq, or the error's code). */
function writeAll(w: AuditWriter, count: number): (number | string)[] {
  const results: (number | string)[] = [];
  for (let n = 1; n <= count; n++) {
    try {
      results.push(w.write({ type: 'relay', n })!.seq);
    } catch (err) {
      const e = err as { code?: string; recordKept?: boolean };
      results.push(`${e.code}${e.recordKept ? ' kept' : ''}`);
    }
  }
  return results;
}

/** The trail's files in chain order: rotated ones (sorted by name), then the current file. */
async function trailFiles(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter((n) => n.startsWith('audit.log.')).sort();
  return [...names.map((n) => join(dir, n)), join(dir, 'audit.log')];
}

describe('the audit writer', () => {
  let dir: string;
  let file: string;
  const open = (over: Partial<AuditWriterOptions> = {}) => AuditWriter.open({ file, fsync: false, chain: true, rotate: null, log: silent, ...over });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-writer-'));
    file = join(dir, 'audit.log');
  });
  afterEach(async () => {
    vi.useRealTimers();
    await rm(dir, { recursive: true, force: true });
  });

  it('continues seq and prev after a restart', async () => {
    const first = await open();
    first.write({ type: 'relay', n: 1 });
    first.write({ type: 'relay', n: 2 });
    first.close();
    const second = await open();
    second.write({ type: 'relay', n: 3 });
    second.close();
    const rs = await records(file);
    expect(rs.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(rs[0]!.prev).toBe(GENESIS);
    expect(rs[2]!.prev).toBe(rs[1]!.hash);
    expect((await verifyTrail({ files: [file] })).damage).toBeNull();
  });

  it('continues from the newest rotated file when the current file is new (logrotate moved it away)', async () => {
    const first = await open();
    for (let n = 1; n <= 3; n++) first.write({ type: 'relay', n });
    first.close();
    await rename(file, `${file}.1`);
    const second = await open();
    second.write({ type: 'relay', n: 4 });
    second.close();
    expect((await records(file))[0]!.seq).toBe(4);
    expect((await verifyTrail({ files: [`${file}.1`, file] })).damage).toBeNull();
  });

  it('starts the next record on a line of its own after a torn last line, and reuses its seq', async () => {
    const first = await open();
    first.write({ type: 'relay', n: 1 });
    first.close();
    await appendFile(file, '{"type":"relay","n":2,"se');
    const second = await open();
    second.write({ type: 'relay', n: 2 });
    second.close();
    const lines = (await readFile(file, 'utf8')).split('\n');
    expect(lines[1]).toBe('{"type":"relay","n":2,"se');
    expect((JSON.parse(lines[2]!) as Line).seq).toBe(2);
    const result = await verifyTrail({ files: [file] });
    expect(result.damage).toBeNull();
    expect(result.warnings).toHaveLength(1);
  });

  it('reports what it found on opening (a torn last line, an unchained last record) instead of logging it', async () => {
    const clean = await open();
    expect(clean.atOpen).toEqual({ tornTail: false, unchainedFile: null });
    clean.close();
    await appendFile(file, '{"type":"relay","n":2,"se');
    const torn = await open();
    expect(torn.atOpen).toEqual({ tornTail: true, unchainedFile: null });
    torn.close();

    const unchainedFile = join(dir, 'unchained.log');
    await writeFile(unchainedFile, '{"type":"relay","n":1}\n');
    const lines: string[] = [];
    const log = createLogger('info', { write: (line: string) => void lines.push(line) });
    const unchained = await open({ file: unchainedFile, log });
    expect(unchained.atOpen).toEqual({ tornTail: false, unchainedFile });
    unchained.close();
    expect(lines).toEqual([]);
  });

  it('writes no chain fields with the chain off', async () => {
    const w = await open({ chain: false });
    expect(w.write({ type: 'relay', n: 1 })).toBeNull();
    w.close();
    expect(Object.keys((await records(file))[0]!)).toEqual(['type', 'n']);
  });

  it('rotates by size, names rotated files in chain order, compresses them, and the chain spans them', async () => {
    const w = await open({ rotate: { size: 400, daily: false, keep: 100, compress: true } });
    for (let n = 1; n <= 40; n++) w.write({ type: 'relay', n, pad: 'x'.repeat(60) });
    w.close();
    await w.idle();
    const files = await trailFiles(dir);
    expect(files.length).toBeGreaterThan(5);
    for (const f of files.slice(0, -1)) expect(f).toMatch(/audit\.log\.\d{4}-\d\d-\d\dT\d{6}\.\d{3}Z\.gz$/);
    expect((await stat(file)).size).toBeLessThanOrEqual(400);
    const result = await verifyTrail({ files });
    expect(result.damage).toBeNull();
    expect([result.records, result.firstSeq, result.lastSeq]).toEqual([40, 1, 40]);
  });

  it('keeps only the newest `keep` rotated files', async () => {
    const w = await open({ rotate: { size: 200, daily: false, keep: 3, compress: false } });
    for (let n = 1; n <= 30; n++) w.write({ type: 'relay', n, pad: 'x'.repeat(60) });
    w.close();
    await w.idle();
    const rotated = (await trailFiles(dir)).slice(0, -1);
    expect(rotated).toHaveLength(3);
    const result = await verifyTrail({ files: [...rotated, file] });
    expect(result.damage).toBeNull();
    expect(result.lastSeq).toBe(30);
  });

  it('rotates at the first record after midnight UTC with daily rotation', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-11-25T23:59:59.000Z'));
    const w = await open({ rotate: { size: null, daily: true, keep: 14, compress: false } });
    w.write({ type: 'relay', n: 1 });
    w.write({ type: 'relay', n: 2 });
    vi.setSystemTime(new Date('2026-11-26T00:00:01.000Z'));
    w.write({ type: 'relay', n: 3 });
    w.close();
    const files = await trailFiles(dir);
    expect(files.map((f) => f.slice(dir.length + 1))).toEqual(['audit.log.2026-11-26T000001.000Z', 'audit.log']);
    expect((await records(files[0]!)).map((r) => r.n)).toEqual([1, 2]);
    expect((await records(file)).map((r) => r.n)).toEqual([3]);
  });

  it('writes a checkpoint every N records, after an interval when records were written, and at stop', async () => {
    const w = await open();
    const cp = new Checkpointer(w, new IdGenerator(), silent, { every: 3, interval: 40, signer: null, copyFile: null, instance: 'test' });
    cp.start();
    for (let n = 1; n <= 4; n++) {
      w.write({ type: 'relay', n });
      cp.recorded();
    }
    await vi.waitFor(async () => expect((await records(file)).filter((r) => r.type === 'checkpoint')).toHaveLength(2), { timeout: 2000 });
    await new Promise((r) => setTimeout(r, 150)); // nothing written since: no more checkpoints
    w.write({ type: 'relay', n: 5 });
    cp.recorded();
    cp.stop();
    w.close();
    const rs = await records(file);
    expect(rs.map((r) => r.type)).toEqual(['relay', 'relay', 'relay', 'checkpoint', 'relay', 'checkpoint', 'relay', 'checkpoint']);
    const last = rs.at(-1) as Line & { head: { seq: number; hash: string }; count: number; signature: null };
    expect(last.head).toEqual({ seq: 7, hash: rs[6]!.hash });
    expect(last.count).toBe(1);
    expect(last.signature).toBeNull();
  });

  it('refuses a write after close', async () => {
    const w = await open();
    w.close();
    expect(() => w.write({ type: 'relay' })).toThrow(/closed/);
  });

  describe('when a write fails', () => {
    it('takes the record back out when fsync fails after a complete write, and the next record takes its seq', async () => {
      const w = await open({ fsync: true, fileOps: faultyOps({ fsync: [2] }) });
      expect(writeAll(w, 3)).toEqual([1, 'EIO', 2]);
      w.close();
      expect((await records(file)).map((r) => [r.n, r.seq])).toEqual([
        [1, 1],
        [3, 2],
      ]);
      const result = await verifyTrail({ files: [file] });
      expect([result.damage, result.ioFaultCount, result.warnings]).toEqual([null, 0, []]);
    });

    it('keeps the record when fsync fails and it cannot be cut off either, and the chain goes on after it', async () => {
      const w = await open({ fsync: true, fileOps: faultyOps({ fsync: [2], truncate: 'all' }) });
      expect(writeAll(w, 3)).toEqual([1, 'EIO kept', 3]);
      w.close();
      expect((await records(file)).map((r) => [r.n, r.seq])).toEqual([
        [1, 1],
        [2, 2],
        [3, 3],
      ]);
      const result = await verifyTrail({ files: [file] });
      expect([result.damage, result.ioFaultCount, result.warnings]).toEqual([null, 0, []]);
    });

    it('takes back a record written only in part, and the next record takes its seq', async () => {
      const w = await open({ fileOps: faultyOps({ shortWrite: { record: 2, keep: 10 } }) });
      expect(writeAll(w, 3)).toEqual([1, 'EIO', 2]);
      w.close();
      expect((await records(file)).map((r) => [r.n, r.seq])).toEqual([
        [1, 1],
        [3, 2],
      ]);
      expect((await verifyTrail({ files: [file] })).warnings).toEqual([]);
    });

    it('leaves a part that cannot be cut off as a torn line of its own, and the next record takes its seq', async () => {
      const w = await open({ fileOps: faultyOps({ shortWrite: { record: 2, keep: 10 }, truncate: 'all' }) });
      expect(writeAll(w, 3)).toEqual([1, 'EIO', 2]);
      w.close();
      const lines = (await readFile(file, 'utf8')).split('\n');
      expect(lines[1]).toBe('{"type":"r');
      const result = await verifyTrail({ files: [file] });
      expect([result.damage, result.records, result.ioFaultCount]).toEqual([null, 2, 0]);
      expect(result.warnings).toEqual([expect.stringMatching(/^torn line at .*:2: /)]);
    });

    it('keeps a record written all but its newline that cannot be cut off: it parses, so the chain goes on from it', async () => {
      const length = new HashChain().seal({ type: 'relay', n: 2 }).line.length;
      const w = await open({ fileOps: faultyOps({ shortWrite: { record: 2, keep: length - 1 }, truncate: 'all' }) });
      expect(writeAll(w, 2)).toEqual([1, 'EIO kept']);
      w.close();
      // Until the next record the file ends without a newline; a restart continues after the record.
      const again = await open();
      again.write({ type: 'relay', n: 3 });
      again.close();
      expect((await records(file)).map((r) => [r.n, r.seq])).toEqual([
        [1, 1],
        [2, 2],
        [3, 3],
      ]);
      const result = await verifyTrail({ files: [file] });
      expect([result.damage, result.ioFaultCount, result.warnings]).toEqual([null, 0, []]);
    });

    it('does not fsync what is not a regular file (fsync(2) fails on a pipe or a device): every record is written', async () => {
      const w = await open({ file: '/dev/null', fsync: true });
      expect(writeAll(w, 2)).toEqual([1, 2]);
      w.close();
    });
  });

  it('continues after a last record that lacks only its newline (a crash right before it), not at its seq', async () => {
    const first = await open();
    first.write({ type: 'relay', n: 1 });
    first.write({ type: 'relay', n: 2 });
    first.close();
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.slice(0, -1));
    const second = await open();
    expect(second.write({ type: 'relay', n: 3 })!.seq).toBe(3);
    second.close();
    const result = await verifyTrail({ files: [file] });
    expect([result.damage, result.records, result.ioFaultCount, result.warnings]).toEqual([null, 3, 0, []]);
  });

  it('writes the trail to a file that does not end in a newline only after closing that line', async () => {
    await writeFile(file, 'garbage without newline');
    const w = await open();
    w.write({ type: 'relay', n: 1 });
    w.close();
    expect((await readFile(file, 'utf8')).split('\n')[0]).toBe('garbage without newline');
  });
});
