import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditWriter } from '../../src/audit/audit-writer.js';
import { Checkpointer } from '../../src/audit/checkpoint.js';
import { generateCheckpointKeys, loadSigner } from '../../src/audit/checkpoint-signer.js';
import { IdGenerator } from '../../src/ids.js';
import { createLogger } from '../../src/logger.js';
import { verifyTrail } from '../../src/tools/verify.js';
import { runVerify } from '../helpers/trail-fixtures.js';

const silent = createLogger('silent');

interface Trail {
  dir: string;
  file: string;
  copies: string;
  publicKey: ReturnType<typeof createPublicKey>;
  publicKeyFile: string;
}

/** A trail of `n` relay-like records with a signed checkpoint every 10, copied to a second file. */
async function makeTrail(dir: string, n: number): Promise<Trail> {
  const keys = generateCheckpointKeys();
  const keyFile = join(dir, 'cp.key');
  const publicKeyFile = join(dir, 'cp.pub');
  await writeFile(keyFile, keys.privatePem);
  await writeFile(publicKeyFile, keys.publicPem);
  const file = join(dir, 'audit.log');
  const copies = join(dir, 'shipped', 'checkpoints.log');
  const writer = await AuditWriter.open({ file, fsync: false, chain: true, rotate: null, log: silent });
  const checkpoints = new Checkpointer(writer, new IdGenerator(), silent, {
    every: 10,
    interval: 60_000,
    signer: loadSigner(keyFile),
    copyFile: copies,
    instance: 'test',
  });
  for (let i = 1; i <= n; i++) {
    writer.write({ v: 1, type: 'relay', id: `R${i}`, from: `app-${i}@example.com`, outcome: 'delivered' });
    checkpoints.recorded();
  }
  checkpoints.stop();
  writer.close();
  return { dir, file, copies, publicKey: createPublicKey(keys.publicPem), publicKeyFile };
}

/** The record as a line with its hash recomputed: a change the chain's links, not its hashes, must reveal. */
function rehashed(record: Record<string, unknown>): string {
  const { hash: _old, ...rest } = record;
  return JSON.stringify({ ...rest, hash: createHash('sha256').update(JSON.stringify(rest)).digest('hex') });
}

async function lines(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8')).split('\n').slice(0, -1);
}

async function writeLines(file: string, ls: readonly string[]): Promise<void> {
  await writeFile(file, ls.map((l) => `${l}\n`).join(''));
}

describe('mailtrail verify', () => {
  let dir: string;
  let trail: Trail;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-verify-'));
    trail = await makeTrail(dir, 25);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('exits 0 on an intact trail with one line: records, last seq and hash, checkpoints and signatures', async () => {
    const r = await runVerify([trail.file, '--checkpoints', trail.copies, '--public-key', trail.publicKeyFile]);
    const last = JSON.parse((await lines(trail.file)).at(-1)!) as { seq: number; hash: string };
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(1);
    expect(r.out).toContain(`intact: ${last.seq} record(s) in 1 file(s), seq 1..${last.seq}`);
    expect(r.out).toContain(`last hash ${last.hash}`);
    // 25 records: checkpoints after records 10 and 20 and at shutdown, each also in the copy.
    expect(r.out).toContain('3 checkpoint(s), 3 matched in the checkpoints file, 3 signature(s) ok (and 3 in the checkpoints file)');
    expect(r.err).toBe('');
  });

  it('names a record with a single flipped byte as altered, with its file, line and seq', async () => {
    const ls = await lines(trail.file);
    ls[6] = ls[6]!.replace('"outcome":"delivered"', '"outcome":"delivereD"'); // one byte
    await writeLines(trail.file, ls);
    const r = await runVerify([trail.file]);
    expect(r.code).toBe(1);
    expect(r.out).toBe(`DAMAGED altered at ${trail.file}:7 (seq 7): the content does not match its hash\n`);
  });

  it('names a byte flipped so that the line no longer parses as altered, not as a crash', async () => {
    const ls = await lines(trail.file);
    ls[4] = ls[4]!.replace('"type":', '"type";');
    await writeLines(trail.file, ls);
    const r = await runVerify([trail.file]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^DAMAGED altered at ${trail.file}:5: the line does not parse`));
  });

  it('reports a deleted line as a gap at the record after it', async () => {
    const ls = await lines(trail.file);
    ls.splice(11, 1);
    await writeLines(trail.file, ls);
    const r = await runVerify([trail.file]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^DAMAGED gap at ${trail.file}:12 \\(seq 13\\): seq jumps from 11 to 13: 1 record\\(s\\) missing`));
  });

  it('reports a swapped pair of lines as reordered', async () => {
    const ls = await lines(trail.file);
    [ls[3], ls[4]] = [ls[4]!, ls[3]!];
    await writeLines(trail.file, ls);
    const r = await runVerify([trail.file]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^DAMAGED reordered at ${trail.file}:4 \\(seq 5\\)`));
  });

  it('reports a record added at a seq already taken, linked to another record, as inserted', async () => {
    const ls = await lines(trail.file);
    // seq 9 again, linked to seq 9 itself (not to seq 8 as the real one is), hash recomputed.
    const nine = JSON.parse(ls[8]!) as Record<string, unknown>;
    ls.splice(9, 0, rehashed({ ...nine, id: 'FORGED', prev: nine.hash }));
    await writeLines(trail.file, ls);
    const r = await runVerify([trail.file]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^DAMAGED inserted at ${trail.file}:10 \\(seq 9\\): seq 9 repeats \\(also at ${trail.file}:9\\)`));
  });

  it('reports a copy of a record moved elsewhere as reordered', async () => {
    const ls = await lines(trail.file);
    ls.splice(15, 0, ls[3]!);
    await writeLines(trail.file, ls);
    const r = await runVerify([trail.file]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^DAMAGED reordered at ${trail.file}:16 \\(seq 4\\)`));
  });

  it('reports a rewritten record whose hash was recomputed as a broken link', async () => {
    const ls = await lines(trail.file);
    const forged = JSON.parse(ls[2]!) as Record<string, unknown>;
    forged.outcome = 'rejected';
    ls[2] = rehashed(forged);
    await writeLines(trail.file, ls);
    const r = await runVerify([trail.file]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^DAMAGED altered at ${trail.file}:4 \\(seq 4\\): prev does not link to seq 3`));
  });

  it('reports a trail cut short as truncated, against the shipped checkpoint file', async () => {
    const ls = await lines(trail.file);
    await writeLines(trail.file, ls.slice(0, 15));
    expect((await runVerify([trail.file])).code).toBe(0); // the chain alone cannot tell
    const r = await runVerify([trail.file, '--checkpoints', trail.copies]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(
      /^DAMAGED truncated at .*audit\.log:15 \(seq 15\): the trail ends at seq 15, but the checkpoint at .*checkpoints\.log:3 attests seq 28/,
    );
  });

  it('reports a wrong public key as bad-signature', async () => {
    const other = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const otherFile = join(dir, 'other.pub');
    await writeFile(otherFile, other);
    const r = await runVerify([trail.file, '--public-key', otherFile]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(
      new RegExp(`^DAMAGED bad-signature at ${trail.file}:11 \\(seq 11\\): signed with key [0-9a-f]{16}, not with the given key [0-9a-f]{16}`),
    );
  });

  it('reports a checkpoint whose signature was replaced as bad-signature', async () => {
    const ls = await lines(trail.file);
    const cp = JSON.parse(ls[10]!) as Record<string, unknown>;
    expect(cp.type).toBe('checkpoint');
    const other = JSON.parse(ls[21]!) as Record<string, unknown>;
    // A valid signature of another checkpoint, and the hash recomputed: only the key can tell.
    ls[10] = rehashed({ ...cp, signature: other.signature });
    await writeLines(trail.file, ls);
    const r = await runVerify([trail.file, '--public-key', trail.publicKeyFile]);
    expect(r.code).toBe(1);
    expect(r.out).toBe(`DAMAGED bad-signature at ${trail.file}:11 (seq 11): the signature does not verify with the given key\n`);
  });

  it('tells a torn last line (a crash mid-write) apart from tampering: exit 0 with a warning', async () => {
    const text = await readFile(trail.file, 'utf8');
    await writeFile(trail.file, text + '{"v":1,"type":"relay","time":"2026-11-2');
    const r = await runVerify([trail.file]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^intact: 28 record\(s\)/);
    expect(r.err).toBe(`warning: torn last line at ${trail.file}:29: a record cut short by a crash or a failed write (never acknowledged to a client)\n`);
  });

  it('accepts a torn line inside the trail when the chain continues right after it (restart after a crash)', async () => {
    const ls = await lines(trail.file);
    ls.splice(5, 0, '{"v":1,"type":"rel');
    await writeLines(trail.file, ls);
    const r = await runVerify([trail.file]);
    expect(r.code).toBe(0);
    expect(r.err).toContain(`torn line at ${trail.file}:6`);
  });

  it('verifies a trail split over plain and gzip-compressed files given in chain order', async () => {
    const ls = await lines(trail.file);
    const older = join(dir, 'audit.log.2026-11-25T101502.123Z.gz');
    await writeFile(
      older,
      gzipSync(
        ls
          .slice(0, 12)
          .map((l) => `${l}\n`)
          .join(''),
      ),
    );
    await writeLines(trail.file, ls.slice(12));
    const r = await runVerify([older, trail.file, '--checkpoints', trail.copies, '--public-key', trail.publicKeyFile]);
    expect(r.out).toMatch(/^intact: 28 record\(s\) in 2 file\(s\), seq 1\.\.28/);
    expect(r.code).toBe(0);
  });

  it('still verifies lines another tool re-wrote with CRLF endings (the hash covers the record, not the line ending)', async () => {
    const ls = await lines(trail.file);
    await writeFile(trail.file, ls.map((l) => `${l}\r\n`).join(''));
    expect((await runVerify([trail.file])).code).toBe(0);
  });

  it('says where a chain starts when earlier files were not given', async () => {
    const ls = await lines(trail.file);
    await writeLines(trail.file, ls.slice(12));
    const result = await verifyTrail({ files: [trail.file] });
    expect(result.damage).toBeNull();
    expect(result.firstSeq).toBe(13);
    const r = await runVerify([trail.file]);
    expect(r.out).toContain('starts at seq 13: earlier files not given');
  });

  describe('I/O faults', () => {
    it('tells a record written twice (a line repeated right after itself) apart from tampering: exit 3, the chain intact', async () => {
      const ls = await lines(trail.file);
      ls.splice(8, 0, ls[8]!);
      await writeLines(trail.file, ls);
      const r = await runVerify([trail.file, '--checkpoints', trail.copies, '--public-key', trail.publicKeyFile]);
      expect(r.code).toBe(3);
      const [fault, summary, ...rest] = r.out.trim().split('\n');
      expect(rest).toEqual([]);
      expect(fault).toBe(
        `IO-FAULT at ${trail.file}:9 (seq 9): the same record written again at ${trail.file}:10: a write that failed after reaching the file, not tampering`,
      );
      expect(summary).toMatch(/^intact, but 1 record\(s\) left outside the chain by failed writes \(I\/O faults\): 28 record\(s\) in 1 file\(s\), seq 1\.\.28/);
      expect(summary).toContain('3 matched in the checkpoints file');
    });

    it('tells a record left by a failed write, then a different record at the same seq and prev, apart from tampering', async () => {
      const ls = await lines(trail.file);
      // What a writer that did not take back a record after a failed fsync left: the line stayed,
      // and the next record was written at the same position, the chain continuing from it.
      const nine = JSON.parse(ls[8]!) as Record<string, unknown>;
      ls.splice(8, 0, rehashed({ ...nine, id: 'LEFT-BY-FAILED-FSYNC' }));
      await writeLines(trail.file, ls);
      const r = await runVerify([trail.file, '--checkpoints', trail.copies]);
      expect(r.code).toBe(3);
      expect(r.out).toMatch(
        new RegExp(
          `^IO-FAULT at ${trail.file}:9 \\(seq 9\\): the record at ${trail.file}:10 has the same seq and prev, and the chain continues from that one; this one is outside the chain`,
        ),
      );
      const result = await verifyTrail({ files: [trail.file] });
      expect([result.damage, result.records, result.lastSeq, result.ioFaultCount]).toEqual([null, 28, 28, 1]);
    });

    it('still names tampering when the chain goes on from the first of two records at the same seq', async () => {
      const ls = await lines(trail.file);
      const nine = JSON.parse(ls[8]!) as Record<string, unknown>;
      ls.splice(9, 0, rehashed({ ...nine, id: 'FORGED' }));
      await writeLines(trail.file, ls);
      const r = await runVerify([trail.file]);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(new RegExp(`DAMAGED altered at ${trail.file}:11 \\(seq 10\\): prev does not link to seq 9 at ${trail.file}:10`));
    });

    it('names the first bad record, not a later one, when a record with a bad hash follows a broken link', async () => {
      const ls = await lines(trail.file);
      ls[4] = rehashed({ ...(JSON.parse(ls[4]!) as Record<string, unknown>), prev: 'f'.repeat(64) });
      ls[5] = ls[5]!.replace('"outcome":"delivered"', '"outcome":"delivereD"');
      await writeLines(trail.file, ls);
      const r = await runVerify([trail.file]);
      expect(r.out).toMatch(new RegExp(`^DAMAGED altered at ${trail.file}:5 \\(seq 5\\): prev does not link to seq 4`));
    });
  });

  it('escapes control characters of file names and record fields in everything it prints', async () => {
    const ls = await lines(trail.file);
    // A checkpoint naming a hostile key id, re-signed nowhere: the key id is quoted in the finding.
    const cp = JSON.parse(ls[10]!) as Record<string, unknown>;
    ls[10] = rehashed({ ...cp, keyId: 'k\u001b]2;pwned\u0007\u202e' });
    const hostile = join(dir, 'audit\u001b[2J.log');
    await writeLines(hostile, ls);
    const r = await runVerify([hostile, '--public-key', trail.publicKeyFile]);
    expect(r.code).toBe(1);
    expect(r.out).toContain('audit\\x1b[2J.log:11 (seq 11): signed with key k\\x1b]2;pwned\\x07\\u202e, not with the given key');
    expect(r.out + r.err).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    const missing = await runVerify([join(dir, 'gone\u0007.log')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('gone\\x07.log');
  });

  it('exits 2 for a missing file or no file at all', async () => {
    expect((await runVerify([join(dir, 'nope.log')])).code).toBe(2);
    expect((await runVerify([])).code).toBe(2);
  });
});
