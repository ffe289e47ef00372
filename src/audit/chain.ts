import { createHash } from 'node:crypto';
import { ERR } from '../error-codes.js';

/**
 * The hash chain that makes the trail tamper-evident (docs/audit-record.md, "Integrity").
 *
 * Every record carries `seq` (1, 2, 3... with no gaps, per trail, across files and restarts), `prev`
 * (the previous record's `hash`; GENESIS for seq 1) and `hash`: SHA-256, in lowercase hex, of the
 * record's canonical serialisation without `hash`:
 *
 * - JSON (RFC 8259) with no whitespace between tokens, UTF-8;
 * - members in the order they have in the line (the schema's order; `seq`, `prev` come last, `hash`
 *   follows them in the line); member names are never array indices, so every JSON parser that keeps
 *   insertion order gives them back in that order;
 * - strings and numbers written as ECMAScript's JSON.stringify writes them (the same rules as
 *   RFC 8785 §3.2.2.2 and §3.2.2.3: only `"`, `\`, and control characters escaped; integers plainly).
 *
 * So the canonical form of a line is `JSON.stringify` of the parsed line without its `hash` member,
 * and for a line mailtrail wrote it is exactly the line's bytes up to `,"hash":` followed by `}`.
 * The writer serialises each record once: it hashes that string and appends the hash to it.
 *
 * Why not keys sorted: the line keeps the schema's field order, which operators read (and tests
 * check); sorting would mean serialising twice per record on the relay path, or lines in an
 * unreadable order. Any tool that keeps member order (jq -c, Python's json) can recompute the hash.
 */

/** `prev` of the first record of a trail. */
export const GENESIS = '0'.repeat(64);

/** The chain fields added to every record when the chain is on. */
export interface ChainFields {
  readonly seq: number;
  readonly prev: string;
  readonly hash: string;
}

/** A record serialised and hashed at a position of the chain, not yet written. */
export interface SealedRecord {
  /** The full line, newline included. */
  readonly line: string;
  readonly seq: number;
  readonly prev: string;
  readonly hash: string;
}

/** Where the chain stands: the last record written. `seq` 0 and GENESIS before the first. */
export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * The chain's position. `seal` serialises a record for the next position without moving the chain;
 * `commit` moves it once the line is safely written. A record whose write failed is never committed,
 * so its seq is reused and the chain has no gap.
 */
export class HashChain {
  #seq: number;
  #hash: string;

  constructor(head: ChainHead = { seq: 0, hash: GENESIS }) {
    this.#seq = head.seq;
    this.#hash = head.hash;
  }

  get head(): ChainHead {
    return { seq: this.#seq, hash: this.#hash };
  }

  /** `record` must be a JSON object without `seq`, `prev` or `hash` members. */
  seal(record: object): SealedRecord {
    const seq = this.#seq + 1;
    const prev = this.#hash;
    const json = JSON.stringify(record);
    // `{...}` → `{...,"seq":N,"prev":"…"}`: the same string JSON.stringify gives for the record with
    // the two members appended, without building that object.
    const canonical = `${json.length > 2 ? json.slice(0, -1) + ',' : '{'}"seq":${seq},"prev":"${prev}"}`;
    const hash = sha256Hex(canonical);
    return { line: `${canonical.slice(0, -1)},"hash":"${hash}"}\n`, seq, prev, hash };
  }

  commit(sealed: SealedRecord): void {
    if (sealed.seq !== this.#seq + 1 || sealed.prev !== this.#hash) {
      throw Object.assign(new Error('sealed record does not follow the chain head'), { code: ERR.CHAIN_ORDER });
    }
    this.#seq = sealed.seq;
    this.#hash = sealed.hash;
  }
}

/** The canonical serialisation of a parsed record (everything but `hash`, in the line's order). */
export function canonicalOf(record: Record<string, unknown>): string {
  const { hash: _hash, ...rest } = record;
  return JSON.stringify(rest);
}

/** The hash a parsed record should carry. */
export function expectedHash(record: Record<string, unknown>): string {
  return sha256Hex(canonicalOf(record));
}

/** True when `value` has the chain's three fields with the right types. */
export function isChained(value: Record<string, unknown>): value is Record<string, unknown> & ChainFields {
  return (
    Number.isSafeInteger(value.seq) &&
    (value.seq as number) >= 1 &&
    typeof value.prev === 'string' &&
    typeof value.hash === 'string' &&
    /^[0-9a-f]{64}$/.test(value.hash) &&
    /^[0-9a-f]{64}$/.test(value.prev)
  );
}
