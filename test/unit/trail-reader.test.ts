import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastLines, ReadProblems, readTrail, type TrailEntry } from '../../src/tools/trail-reader.js';
import { withRotated } from '../../src/tools/trail-files.js';
import { relay, removeDir, reject, session, tempDir, toLines, writeTrail } from '../helpers/trail-fixtures.js';

async function readAll(files: string[], opts: { stdin?: NodeJS.ReadableStream; prefilter?: (buf: Buffer, start: number, end: number) => boolean } = {}) {
  const problems = new ReadProblems();
  const entries: TrailEntry[] = [];
  for await (const e of readTrail(files, { problems, ...opts })) entries.push(e);
  return { entries, problems };
}

describe('the trail reader', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('yields every record of a file with its file name and 1-based line number', async () => {
    const file = await writeTrail(dir, 'plain.log', [relay(), reject(), session()]);
    const { entries, problems } = await readAll([file]);
    expect(entries.map((e) => [e.record.type, e.file, e.line])).toEqual([
      ['relay', file, 1],
      ['reject', file, 2],
      ['session', file, 3],
    ]);
    expect(problems.total).toBe(0);
  });

  it('keeps the raw line exactly as it is in the file', async () => {
    const line = '{"v":1,"type":"session","time":"2026-11-25T10:00:00.000Z",  "id":"X"}';
    const file = join(dir, 'raw.log');
    await writeFile(file, line + '\n');
    const { entries } = await readAll([file]);
    expect(entries[0]!.raw).toBe(line);
  });

  it('reads a gzip-compressed file, recognised by its magic bytes whatever its name', async () => {
    const file = await writeTrail(dir, 'rotated-without-gz-suffix', [relay(), session()], { gzip: true });
    const { entries } = await readAll([file]);
    expect(entries.map((e) => e.record.type)).toEqual(['relay', 'session']);
  });

  it('reads a gzip file made of several members (concatenated archives)', async () => {
    const file = join(dir, 'multi.gz');
    await writeFile(file, Buffer.concat([gzipSync(toLines([relay()])), gzipSync(toLines([session()]))]));
    const { entries } = await readAll([file]);
    expect(entries.map((e) => e.record.type)).toEqual(['relay', 'session']);
  });

  it('reads files one after the other, numbering lines per file', async () => {
    const a = await writeTrail(dir, 'a.log', [relay(), relay()]);
    const b = await writeTrail(dir, 'b.log.gz', [session()], { gzip: true });
    const { entries } = await readAll([a, b]);
    expect(entries.map((e) => `${e.file === a ? 'a' : 'b'}:${e.line}`)).toEqual(['a:1', 'a:2', 'b:1']);
  });

  it('reads standard input as "-", gunzipping it when it is compressed', async () => {
    const stdin = new PassThrough();
    stdin.end(gzipSync(toLines([relay(), reject()])));
    const { entries } = await readAll(['-'], { stdin });
    expect(entries.map((e) => [e.record.type, e.file])).toEqual([
      ['relay', '-'],
      ['reject', '-'],
    ]);
  });

  it('decides on gzip even when standard input delivers the magic bytes one at a time', async () => {
    const stdin = new PassThrough();
    const data = gzipSync(toLines([session()]));
    stdin.write(data.subarray(0, 1));
    setTimeout(() => stdin.end(data.subarray(1)), 10);
    const { entries } = await readAll(['-'], { stdin });
    expect(entries.map((e) => e.record.type)).toEqual(['session']);
  });

  it('skips a torn last line (a crash mid-write) and counts it with its place', async () => {
    const file = join(dir, 'torn.log');
    await writeFile(file, toLines([relay(), session()]) + '{"v":1,"type":"relay","time":"2026-11-25T10:');
    const { entries, problems } = await readAll([file]);
    expect(entries).toHaveLength(2);
    expect(problems.torn).toBe(1);
    expect(problems.malformed).toBe(0);
    expect(problems.examples).toEqual([{ kind: 'torn', file, line: 3 }]);
    expect(problems.summary()).toMatch(/1 torn last line.*torn\.log:3/);
  });

  it('keeps a complete last record that only lacks its newline', async () => {
    const file = join(dir, 'no-newline.log');
    await writeFile(file, toLines([relay()]) + JSON.stringify(session()));
    const { entries, problems } = await readAll([file]);
    expect(entries.map((e) => e.record.type)).toEqual(['relay', 'session']);
    expect(problems.total).toBe(0);
  });

  it('skips and counts malformed lines in the middle, and ignores blank lines', async () => {
    const file = join(dir, 'malformed.log');
    await writeFile(file, [JSON.stringify(relay()), 'not json', '', '[1,2]', '{"no":"type"}', JSON.stringify(session())].join('\n') + '\n');
    const { entries, problems } = await readAll([file]);
    expect(entries.map((e) => e.line)).toEqual([1, 6]);
    expect(problems.malformed).toBe(3);
    expect(problems.examples.map((e) => e.line)).toEqual([2, 4, 5]);
  });

  it('treats a line ending in CRLF as the same record', async () => {
    const file = join(dir, 'crlf.log');
    await writeFile(file, toLines([relay(), session()]).replace(/\n/g, '\r\n'));
    const { entries, problems } = await readAll([file]);
    expect(entries.map((e) => e.record.type)).toEqual(['relay', 'session']);
    expect(problems.total).toBe(0);
  });

  it('keeps what it could read of a truncated gzip file and counts the rest as torn', async () => {
    const records = Array.from({ length: 2000 }, (_, i) => relay({ id: `01M89VY4NJS1FRFYGK283M${String(i).padStart(4, '0')}` }));
    const whole = gzipSync(toLines(records));
    const file = join(dir, 'cut.gz');
    await writeFile(file, whole.subarray(0, Math.floor(whole.length * 0.6)));
    const { entries, problems } = await readAll([file]);
    expect(entries.length).toBeGreaterThan(0);
    expect(entries.length).toBeLessThan(2000);
    expect(problems.torn).toBe(1);
  });

  it('rejects with ENOENT for a missing file', async () => {
    await expect(readAll([join(dir, 'missing.log')])).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('does not parse the lines a prefilter refuses', async () => {
    const file = join(dir, 'prefilter.log');
    await writeFile(
      file,
      [JSON.stringify(relay({ from: 'wanted@example.com' })), 'garbage that would count as malformed', JSON.stringify(relay())].join('\n') + '\n',
    );
    const { entries, problems } = await readAll([file], { prefilter: (buf, start, end) => buf.toString('utf8', start, end).includes('wanted@') });
    expect(entries.map((e) => e.line)).toEqual([1]);
    expect(problems.total).toBe(0);
  });

  it('reads lines longer than a read chunk (1 MiB) whole', async () => {
    const big = relay({ message: { ...relay().message, headerFrom: 'x'.repeat(3 * 1024 * 1024) } });
    const file = await writeTrail(dir, 'long-line.log', [relay(), big, session()]);
    const { entries } = await readAll([file]);
    expect(entries.map((e) => e.record.type)).toEqual(['relay', 'relay', 'session']);
    expect((entries[1]!.record as typeof big).message.headerFrom).toHaveLength(3 * 1024 * 1024);
  });
});

describe('reading a trail backwards (tail)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('gives the same lines as reading forwards, in reverse, across read-chunk boundaries', async () => {
    // Line lengths from 1 byte to 300 KB, about 5 MB in all: many lines straddle the 1 MiB chunks.
    let seed = 7;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const lines = Array.from({ length: 400 }, (_, i) => `${i}:${'y'.repeat(Math.floor(rand() ** 3 * 300_000))}`);
    lines[17] = '';
    const file = join(dir, 'backwards.log');
    await writeFile(file, lines.join('\n') + '\n');
    const reader = lastLines(file);
    expect([...reader.lines()]).toEqual([...lines].reverse());
    expect(reader.completeEnd).toBe(Buffer.byteLength(lines.join('\n') + '\n'));
  });

  it('leaves out an unfinished last line and says where complete lines end', async () => {
    const file = join(dir, 'unfinished.log');
    await writeFile(file, 'one\ntwo\n');
    await appendFile(file, '{"half');
    const reader = lastLines(file);
    expect([...reader.lines()]).toEqual(['two', 'one']);
    expect(reader.completeEnd).toBe(8);
  });

  it('reads nothing from an empty file', async () => {
    const file = join(dir, 'empty.log');
    await writeFile(file, '');
    expect([...lastLines(file).lines()]).toEqual([]);
  });
});

describe('finding the rotated files of a trail', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('lists logrotate and built-in rotation names oldest first, the trail last, and nothing else', async () => {
    const names = [
      'audit.log',
      'audit.log.1',
      'audit.log.2.gz',
      'audit.log.10.gz',
      'audit.log.2026-11-24T101502.123Z.gz',
      'audit.log.2026-11-25T101502.123Z',
      'audit.log.2026-11-25T101502.123Z.gz.partial',
      'audit.log.bak',
      'audit.log.checkpoints',
      'other.log.1',
    ];
    for (const n of names) await writeFile(join(dir, n), '');
    expect(withRotated(join(dir, 'audit.log')).map((p) => p.slice(dir.length + 1))).toEqual([
      'audit.log.10.gz',
      'audit.log.2.gz',
      'audit.log.1',
      'audit.log.2026-11-24T101502.123Z.gz',
      'audit.log.2026-11-25T101502.123Z',
      'audit.log',
    ]);
  });

  it('reads a generation once when its compressed copy exists beside the plain file', async () => {
    const sub = join(dir, 'both');
    await import('node:fs/promises').then((fs) => fs.mkdir(sub));
    for (const n of ['audit.log', 'audit.log.2026-11-25T101502.123Z', 'audit.log.2026-11-25T101502.123Z.gz']) await writeFile(join(sub, n), '');
    expect(withRotated(join(sub, 'audit.log')).map((p) => p.slice(sub.length + 1))).toEqual(['audit.log.2026-11-25T101502.123Z.gz', 'audit.log']);
  });
});
