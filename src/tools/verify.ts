/**
 * `mailtrail verify FILE... [--checkpoints FILE] [--public-key FILE]`: recomputes the hash chain of
 * a trail (docs/audit-record.md, "Integrity") and names the first bad record.
 *
 * Streaming, constant memory: one line at a time, files in the order given (chain order, oldest
 * first), gzip-compressed rotated files read as they are (detected by their magic bytes). Only the
 * checkpoints of the `--checkpoints` copy are held in memory (one per thousand records or minute).
 *
 * Exit 0: intact (a torn line left by a crash is a warning, not tampering); 1: damaged, with the
 * first bad record as FILE:LINE, its seq and the kind; 2: usage error; 3: the chain is intact but a
 * failed write left a record outside it (an I/O fault, not tampering: see `IoFault`).
 *
 * Everything it prints goes through terminal-text.ts: file names, and what a record says (a
 * checkpoint's keyId), reach the terminal escaped.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { createGunzip } from 'node:zlib';
import { GENESIS, expectedHash, isChained, sha256Hex } from '../audit/chain.js';
import { keyIdOf, loadPublicKey, signatureValid } from '../audit/checkpoint-signer.js';
import { explainUsage, readCommandLine } from './command-args.js';
import { terminalText } from './terminal-text.js';
import { groupByInstance, instanceOf } from './trail-instances.js';
import { parseRecord, STDIN } from './trail-reader.js';

export type DamageKind = 'altered' | 'gap' | 'inserted' | 'reordered' | 'truncated' | 'bad-signature';

export interface Location {
  readonly file: string;
  /** 1-based. */
  readonly line: number;
}

export interface Damage extends Location {
  readonly kind: DamageKind;
  /** The seq of the bad record, when it has one. */
  readonly seq: number | null;
  readonly detail: string;
}

/**
 * A record outside the chain, in the pattern a failed write leaves (docs/audit-record.md#integrity):
 * the record right after it has the same seq and the same prev, and the chain goes on from that
 * one. A writer that kept a record whose write reported failure, and gave the next record the same
 * position, leaves it: an I/O fault, not a removal or a reordering. The chain vouches for nothing in
 * the record (no later hash covers it), so read it as unconfirmed.
 */
export interface IoFault extends Location {
  readonly seq: number;
  readonly detail: string;
}

export interface VerifyResult {
  readonly damage: Damage | null;
  /** The first I/O faults met (at most MAX_IO_FAULTS)... */
  readonly ioFaults: readonly IoFault[];
  /** ...and how many there were. */
  readonly ioFaultCount: number;
  readonly records: number;
  readonly files: number;
  readonly firstSeq: number | null;
  readonly lastSeq: number | null;
  readonly lastHash: string | null;
  /** Checkpoint records met in the trail. */
  readonly checkpoints: number;
  /** Checkpoints of the --checkpoints copy found in the trail and matching. */
  readonly copiesMatched: number;
  /** Checkpoints of the copy older than the first record given (their files were not given). */
  readonly copiesNotCovered: number;
  /** Signatures verified with the public key (null without one). */
  /** Checkpoint signatures verified in the trail (null without a public key)... */
  readonly signaturesOk: number | null;
  /** ...and in the checkpoint copies file. */
  readonly copySignaturesOk: number | null;
  /** Torn lines tolerated (a crash mid-write), as readable sentences. */
  readonly warnings: readonly string[];
}

export interface VerifyOptions {
  readonly files: readonly string[];
  readonly checkpointsFile?: string | null;
  readonly publicKey?: KeyObject | null;
}

type Json = Record<string, unknown>;

interface Seen extends Location {
  readonly seq: number;
  readonly hash: string;
}

interface Copy extends Location {
  readonly hash: string;
}

/** A chained record read, not yet judged: the next record tells whether the chain goes through it. */
interface Held {
  readonly at: Location;
  readonly record: Json & { seq: number; prev: string; hash: string };
  /** Lines that did not parse between the record before it and this one. */
  readonly unparsed: readonly Location[];
}

/** I/O faults kept for the output; more are only counted. */
export const MAX_IO_FAULTS = 20;

class Damaged extends Error {
  constructor(readonly damage: Damage) {
    super(damage.detail);
  }
}

/**
 * Walks one trail, line by line, and throws `Damaged` at the first bad record. Each record is judged
 * when the next one has been read (or the trail ended): only then is it known whether the chain goes
 * through it or it is an I/O fault's leftover.
 */
class ChainWalk {
  records = 0;
  checkpoints = 0;
  copiesMatched = 0;
  signaturesOk = 0;
  first: Seen | null = null;
  last: Seen | null = null;
  readonly warnings: string[] = [];
  readonly ioFaults: IoFault[] = [];
  ioFaultCount = 0;
  /** Lines that did not parse since the last record read. */
  #unparsed: Location[] = [];
  /** The last record read, not yet judged. */
  #held: Held | null = null;
  /** Lines that did not parse before the record being judged: torn, if the chain goes on unbroken. */
  #between: readonly Location[] = [];
  /** A forward jump in seq, judged at the next record: the missing seq right after = reordered. */
  #jump: { at: Seen; expected: number } | null = null;
  #key: { key: KeyObject; id: string } | null;
  #copies: Map<number, Copy>;

  constructor(key: KeyObject | null, copies: Map<number, Copy>) {
    this.#key = key ? { key, id: keyIdOf(key) } : null;
    this.#copies = copies;
  }

  line(at: Location, text: string): void {
    const record = parseObject(text);
    if (!record) {
      this.#unparsed.push(at);
      return;
    }
    if (!isChained(record) || !hashHolds(text, record)) {
      // The record before may be damaged too: the first bad record is the one named.
      if (this.#held) this.#judge(this.#held);
      if (!isChained(record)) this.#fail('altered', at, seqOf(record), 'not a chained record (no valid seq / prev / hash)');
      this.#fail('altered', at, record.seq, 'the content does not match its hash');
    }
    const next: Held = { at, record, unparsed: this.#unparsed };
    this.#unparsed = [];
    const held = this.#held;
    if (held && sameSlot(held, next)) {
      // The held record is left outside the chain: the chain is judged through `next` instead.
      this.#ioFault(held, next);
      this.#held = { ...next, unparsed: [...held.unparsed, ...next.unparsed] };
      return;
    }
    if (held) this.#judge(held);
    this.#held = next;
  }

  /** After the last file. */
  end(): void {
    if (this.#held) this.#judge(this.#held);
    this.#held = null;
    this.#between = this.#unparsed;
    if (this.#jump) this.#gap(this.#jump);
    for (const u of this.#unparsed) {
      this.warnings.push(`torn last line at ${u.file}:${u.line}: a record cut short by a crash or a failed write (never acknowledged to a client)`);
    }
    let latest: (Copy & { seq: number }) | null = null;
    for (const [seq, copy] of this.#copies) if (!latest || seq > latest.seq) latest = { ...copy, seq };
    if (latest && (!this.last || latest.seq > this.last.seq)) {
      const where = this.last ?? { file: latest.file, line: latest.line };
      const ends = this.last ? `the trail ends at seq ${this.last.seq}` : 'the trail has no records';
      this.#fail('truncated', where, this.last?.seq ?? null, `${ends}, but the checkpoint at ${latest.file}:${latest.line} attests seq ${latest.seq}`);
    }
  }

  /** A record the chain goes through: its links, its checkpoint, its copy. */
  #judge({ at, record, unparsed }: Held): void {
    this.#between = unparsed;
    const here: Seen = { ...at, seq: record.seq, hash: record.hash };
    this.#judgeJump(here);
    this.#link(here, record.prev);
    for (const u of unparsed)
      this.warnings.push(`torn line at ${u.file}:${u.line}: a record cut short by a crash or a failed write; the chain continues after it without a gap`);
    this.#between = [];
    if (record.type === 'checkpoint') this.#checkpoint(here, record);
    const copy = this.#copies.get(record.seq);
    if (copy) {
      if (copy.hash !== record.hash) {
        this.#fail('truncated', at, record.seq, `the trail was rewritten: seq ${record.seq} differs from the checkpoint copy at ${copy.file}:${copy.line}`);
      }
      this.copiesMatched += 1;
    }
    this.records += 1;
    this.first ??= here;
    this.last = here;
  }

  #ioFault(left: Held, next: Held): void {
    this.ioFaultCount += 1;
    if (this.ioFaults.length >= MAX_IO_FAULTS) return;
    const { seq } = left.record;
    const what =
      left.record.hash === next.record.hash
        ? `the same record written again at ${next.at.file}:${next.at.line}`
        : `the record at ${next.at.file}:${next.at.line} has the same seq and prev, and the chain continues from that one; this one is outside the chain (nothing vouches for its content)`;
    this.ioFaults.push({ ...left.at, seq, detail: `${what}: a write that failed after reaching the file, not tampering` });
  }

  copiesNotCovered(): number {
    const first = this.first?.seq ?? Infinity;
    let n = 0;
    for (const seq of this.#copies.keys()) if (seq < first) n += 1;
    return n;
  }

  #link(here: Seen, prev: string): void {
    const last = this.last;
    if (!last) {
      if (here.seq === 1 && prev !== GENESIS) this.#fail('altered', here, here.seq, 'seq 1 does not start from the genesis value');
      return;
    }
    const expected = last.seq + 1;
    if (here.seq === expected) {
      if (prev !== last.hash) {
        this.#unparsedOr('altered', here, `prev does not link to seq ${last.seq} at ${last.file}:${last.line}: one of the two was rewritten`);
      }
      return;
    }
    if (here.seq > expected) {
      if (this.#between.length > 0) this.#gap({ at: here, expected });
      this.#jump = { at: here, expected };
      return;
    }
    if (here.seq === last.seq) {
      this.#unparsedOr('inserted', here, `seq ${here.seq} repeats (also at ${last.file}:${last.line})`);
    }
    this.#unparsedOr('reordered', here, `seq ${here.seq} comes after seq ${last.seq} (${last.file}:${last.line})`);
  }

  /** Keeps the record of a forward jump pending until the next record tells a gap from a swap. */
  #judgeJump(next: Seen): void {
    const jump = this.#jump;
    if (!jump) return;
    if (next.seq === jump.expected) this.#fail('reordered', jump.at, jump.at.seq, `seq ${jump.at.seq} comes before seq ${jump.expected}`);
    this.#gap(jump);
  }

  #gap(jump: { at: Seen; expected: number }): never {
    const missing = jump.at.seq - jump.expected;
    this.#unparsedOr('gap', jump.at, `seq jumps from ${jump.expected - 1} to ${jump.at.seq}: ${missing} record(s) missing`);
  }

  /**
   * A broken link right after lines that did not parse: the damage is the first of those lines (a
   * record there was altered into something unreadable), not a crash.
   */
  #unparsedOr(kind: DamageKind, at: Seen, detail: string): never {
    const u = this.#between[0];
    if (u) this.#fail('altered', u, null, `the line does not parse, and the chain does not continue after it (${detail})`);
    this.#fail(kind, at, at.seq, detail);
  }

  #checkpoint(here: Seen, record: Json): void {
    this.checkpoints += 1;
    const head = record.head as { seq?: unknown; hash?: unknown } | null;
    if (!head || head.seq !== here.seq - 1 || head.hash !== record.prev) {
      this.#fail('altered', here, here.seq, 'the checkpoint head is not the record before it');
    }
    this.#signature(here, record);
  }

  #signature(at: Location & { seq: number }, record: Json): void {
    if (!this.#key) return;
    const problem = signatureProblem(record, this.#key.key, this.#key.id);
    if (problem) this.#fail('bad-signature', at, at.seq, problem);
    this.signaturesOk += 1;
  }

  #fail(kind: DamageKind, at: Location, seq: number | null, detail: string): never {
    throw new Damaged({ kind, file: at.file, line: at.line, seq, detail });
  }
}

/**
 * The record's hash is the SHA-256 of its canonical serialisation. A line mailtrail wrote *is* that
 * serialisation followed by the hash member, so hashing its bytes without the member settles it
 * without serialising the record again (a quarter of verify's time); a line reformatted by another
 * tool (spaces, CRLF) falls back to the canonical form. Either way every byte that carries meaning
 * is covered by the hash.
 */
function hashHolds(text: string, record: Json & { hash: string }): boolean {
  const member = `,"hash":"${record.hash}"}`;
  if (text.endsWith(member) && sha256Hex(`${text.slice(0, -member.length)}}`) === record.hash) return true;
  return expectedHash(record) === record.hash;
}

/** Why a checkpoint's signature does not hold for `key`, or null when it does. */
export function signatureProblem(record: Json, key: KeyObject, keyId: string): string | null {
  if (typeof record.signature !== 'string') return 'the checkpoint is not signed (a public key was given)';
  if (record.keyId !== keyId) return `signed with key ${String(record.keyId)}, not with the given key ${keyId}`;
  const { signature, hash: _hash, ...signed } = record;
  return signatureValid(key, JSON.stringify(signed), signature) ? null : 'the signature does not verify with the given key';
}

/** Verifies a trail. Throws only for unreadable input (missing file, bad gzip header). */
export async function verifyTrail(opts: VerifyOptions): Promise<VerifyResult> {
  const key = opts.publicKey ?? null;
  let walk = new ChainWalk(key, new Map());
  let copySignatures = 0;
  try {
    if (opts.checkpointsFile) {
      const loaded = await loadCopies(opts.checkpointsFile, key);
      walk = new ChainWalk(key, loaded.copies);
      copySignatures = loaded.signaturesOk;
    }
    for (const file of opts.files) {
      for await (const { line, text } of readLines(file)) walk.line({ file, line }, text);
    }
    walk.end();
    return result(walk, opts.files.length, null, copySignatures, key !== null);
  } catch (err) {
    if (!(err instanceof Damaged)) throw err;
    return result(walk, opts.files.length, err.damage, copySignatures, key !== null);
  }
}

function result(walk: ChainWalk, files: number, damage: Damage | null, extraSignatures: number, keyGiven: boolean): VerifyResult {
  return {
    damage,
    ioFaults: walk.ioFaults,
    ioFaultCount: walk.ioFaultCount,
    records: walk.records,
    files,
    firstSeq: walk.first?.seq ?? null,
    lastSeq: walk.last?.seq ?? null,
    lastHash: walk.last?.hash ?? null,
    checkpoints: walk.checkpoints,
    copiesMatched: walk.copiesMatched,
    copiesNotCovered: walk.copiesNotCovered(),
    signaturesOk: keyGiven ? walk.signaturesOk : null,
    copySignaturesOk: keyGiven ? extraSignatures : null,
    warnings: walk.warnings,
  };
}

/** The shipped checkpoint copies: each must be intact itself (and signed, with a key). */
async function loadCopies(file: string, key: KeyObject | null): Promise<{ copies: Map<number, Copy>; signaturesOk: number }> {
  const copies = new Map<number, Copy>();
  const keyId = key ? keyIdOf(key) : null;
  let signaturesOk = 0;
  for await (const { line, text, complete } of readLines(file)) {
    const record = parseObject(text);
    const at = { file, line };
    if (!record) {
      if (!complete) continue; // torn last line of the copy: a crash, nothing to check
      throw new Damaged({ kind: 'altered', ...at, seq: null, detail: 'a checkpoint copy that does not parse' });
    }
    if (!isChained(record) || record.type !== 'checkpoint' || expectedHash(record) !== record.hash) {
      throw new Damaged({ kind: 'altered', ...at, seq: seqOf(record), detail: 'the checkpoint copy does not match its hash' });
    }
    if (key && keyId) {
      const problem = signatureProblem(record, key, keyId);
      if (problem) throw new Damaged({ kind: 'bad-signature', ...at, seq: record.seq, detail: problem });
      signaturesOk += 1;
    }
    copies.set(record.seq, { ...at, hash: record.hash });
  }
  return { copies, signaturesOk };
}

function parseObject(text: string): Json | null {
  if (text.charCodeAt(0) !== 0x7b /* { */) return null;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : null;
  } catch {
    return null;
  }
}

/**
 * `next` takes the very position of `held` (same seq, same prev): what a record that reached the
 * file although its write reported failure, followed by the next record at the same position, leaves.
 */
function sameSlot(held: Held, next: Held): boolean {
  return next.record.seq === held.record.seq && next.record.prev === held.record.prev;
}

function seqOf(record: Json): number | null {
  return Number.isSafeInteger(record.seq) ? (record.seq as number) : null;
}

interface Line {
  readonly line: number;
  readonly text: string;
  /** False for a last line without its newline. */
  readonly complete: boolean;
}

/**
 * Every line of a file, gunzipped when it starts with the gzip magic bytes (RFC 1952 §2.3.1). A
 * gzip stream that ends early (compression cut short) ends the lines there, the rest as torn.
 */
async function* readLines(file: string): AsyncGenerator<Line> {
  const gz = await startsWithGzipMagic(file);
  const raw = createReadStream(file, { highWaterMark: 1024 * 1024 });
  const source: AsyncIterable<Buffer> = gz ? raw.pipe(createGunzip({ chunkSize: 256 * 1024 })).on('close', () => raw.destroy()) : raw;
  let rest: Buffer | null = null;
  let n = 0;
  try {
    for await (const chunk of source) {
      const buf: Buffer = rest ? Buffer.concat([rest, chunk]) : chunk;
      let start = 0;
      for (let nl = buf.indexOf(0x0a, start); nl !== -1; nl = buf.indexOf(0x0a, start)) {
        n += 1;
        yield { line: n, text: buf.toString('utf8', start, nl), complete: true };
        start = nl + 1;
      }
      rest = start < buf.length ? Buffer.from(buf.subarray(start)) : null;
    }
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (!gz || (code !== 'Z_BUF_ERROR' && code !== 'Z_DATA_ERROR')) throw err;
  } finally {
    raw.destroy();
  }
  if (rest && rest.length > 0) yield { line: n + 1, text: rest.toString('utf8'), complete: false };
}

async function startsWithGzipMagic(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await handle.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await handle.close();
  }
}

/** The one-line summary of an intact chain (with the I/O faults it has, if any). */
export function summary(r: VerifyResult): string {
  const range = r.firstSeq === null ? 'no records' : `seq ${r.firstSeq}..${r.lastSeq}`;
  const state = r.ioFaultCount > 0 ? `intact, but ${r.ioFaultCount} record(s) left outside the chain by failed writes (I/O faults)` : 'intact';
  const parts = [
    `${state}: ${r.records} record(s) in ${r.files} file(s), ${range}`,
    `last hash ${r.lastHash ?? '-'}`,
    `${r.checkpoints} checkpoint(s)` + (r.copiesMatched + r.copiesNotCovered > 0 ? `, ${r.copiesMatched} matched in the checkpoints file` : ''),
    r.signaturesOk === null
      ? 'signatures not checked (no --public-key)'
      : `${r.signaturesOk} signature(s) ok` + (r.copySignaturesOk ? ` (and ${r.copySignaturesOk} in the checkpoints file)` : ''),
  ];
  if (r.firstSeq !== null && r.firstSeq > 1) parts.push(`starts at seq ${r.firstSeq}: earlier files not given`);
  if (r.copiesNotCovered > 0) parts.push(`${r.copiesNotCovered} checkpoint(s) older than the files given`);
  return terminalText(parts.join(', '));
}

export function damageLine(d: Damage): string {
  return terminalText(`DAMAGED ${d.kind} at ${d.file}:${d.line}${d.seq === null ? '' : ` (seq ${d.seq})`}: ${d.detail}`);
}

export function ioFaultLine(f: IoFault): string {
  return terminalText(`IO-FAULT at ${f.file}:${f.line} (seq ${f.seq}): ${f.detail}`);
}

/** Exit 3: the chain is intact, but records outside it were left by failed writes. */
export const EXIT_IO_FAULT = 3;

/** What verify prints for a result (stdout, stderr) and its exit code; every line escaped. */
export function verifyOutput(r: VerifyResult): { out: string[]; err: string[]; code: number } {
  const err = r.warnings.map((w) => terminalText(`warning: ${w}`));
  const out = r.ioFaults.map(ioFaultLine);
  if (r.ioFaultCount > r.ioFaults.length) out.push(`IO-FAULT ... and ${r.ioFaultCount - r.ioFaults.length} more`);
  if (r.damage) return { out: [...out, damageLine(r.damage)], err, code: 1 };
  return { out: [...out, summary(r)], err, code: r.ioFaultCount > 0 ? EXIT_IO_FAULT : 0 };
}

const USAGE =
  'usage: mailtrail verify FILE... [--checkpoints FILE] [--public-key FILE]\n' +
  '  files in chain order, oldest first (e.g. audit.log.* audit.log); .gz files are read as they are;\n' +
  "  the files of several instances (a/audit.log* b/audit.log*): each instance's chain checked on its own";

const COMMAND = {
  name: 'verify',
  usage: USAGE,
  options: { checkpoints: { type: 'string' }, 'public-key': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
} as const;

/** The `verify` command. Returns the exit code. */
export async function verifyCommand(argv: readonly string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const args = readCommandLine(COMMAND, argv, out, err);
  if (typeof args === 'number') return args;
  const { values, positionals: files } = args;
  if (files.length === 0) return explainUsage(err, COMMAND.name, 'give the trail file(s) to check', USAGE);
  let results: { label: string | null; result: VerifyResult }[];
  try {
    const publicKey = values['public-key'] ? loadPublicKey(values['public-key']) : null;
    results = await verifyInstances(files, values.checkpoints ?? null, publicKey);
  } catch (e) {
    err.write(`${terminalText(`mailtrail verify: ${(e as Error).message}`)}\n`);
    return 2;
  }
  let code = 0;
  for (const { label, result } of results) {
    const shown = verifyOutput(result);
    const prefix = label === null ? '' : `${terminalText(label)}: `;
    for (const line of shown.err) err.write(`${prefix}${line}\n`);
    for (const line of shown.out) out.write(`${prefix}${line}\n`);
    // Damage (1) outranks an I/O fault (3), which outranks intact (0).
    code = code === 1 || shown.code === 1 ? 1 : Math.max(code, shown.code);
  }
  if (results.length > 1) {
    const damaged = results.filter((r) => r.result.damage !== null).length;
    out.write(`${results.length} instances: ${damaged === 0 ? 'every chain intact' : `${damaged} chain(s) damaged`}\n`);
  }
  return code;
}

/**
 * The files of one instance are one chain; those of several are several chains, each checked on its
 * own (trail-instances.ts), in chain order whatever order the shell gave them in. `--checkpoints`
 * belongs to the instance its checkpoints name. One instance: `label` null, the output as ever.
 */
async function verifyInstances(
  files: readonly string[],
  checkpointsFile: string | null,
  publicKey: KeyObject | null,
): Promise<{ label: string | null; result: VerifyResult }[]> {
  const groups = files.includes(STDIN) ? [] : await groupByInstance(files);
  if (groups.length <= 1) return [{ label: null, result: await verifyTrail({ files, checkpointsFile, publicKey }) }];
  const copiesOf = checkpointsFile === null ? null : await checkpointsInstance(checkpointsFile);
  if (checkpointsFile !== null && !groups.some((g) => g.instance === copiesOf)) {
    throw new Error(`the checkpoints in ${checkpointsFile} are not of any instance given (${groups.map((g) => g.label).join(', ')})`);
  }
  const results = [];
  for (const group of groups) {
    const copies = group.instance !== null && group.instance === copiesOf ? checkpointsFile : null;
    results.push({ label: group.label, result: await verifyTrail({ files: group.files, checkpointsFile: copies, publicKey }) });
  }
  return results;
}

async function checkpointsInstance(file: string): Promise<string | null> {
  for await (const { text } of readLines(file)) {
    const record = parseRecord(text);
    if (record) return instanceOf(record);
  }
  return null;
}
