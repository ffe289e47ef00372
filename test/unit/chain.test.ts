import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GENESIS, HashChain, canonicalOf, expectedHash, isChained } from '../../src/audit/chain.js';

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

describe('the hash chain', () => {
  it('writes a line that is the record with seq, prev and hash appended, in that order', () => {
    const chain = new HashChain();
    const record = { v: 1, type: 'relay', id: 'A', from: 'app@example.com' };
    const sealed = chain.seal(record);
    const parsed = JSON.parse(sealed.line) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['v', 'type', 'id', 'from', 'seq', 'prev', 'hash']);
    expect(sealed.line).toBe(JSON.stringify({ ...record, seq: 1, prev: GENESIS, hash: sealed.hash }) + '\n');
  });

  it('hashes the canonical serialisation: the line without its hash member, no whitespace', () => {
    const sealed = new HashChain().seal({ v: 1, type: 'session', id: 'B' });
    expect(sealed.hash).toBe(sha256(`{"v":1,"type":"session","id":"B","seq":1,"prev":"${GENESIS}"}`));
  });

  it('starts at seq 1 from the genesis value and links each record to the one before', () => {
    const chain = new HashChain();
    const first = chain.seal({ n: 1 });
    chain.commit(first);
    const second = chain.seal({ n: 2 });
    chain.commit(second);
    expect([first.seq, first.prev]).toEqual([1, GENESIS]);
    expect([second.seq, second.prev]).toEqual([2, first.hash]);
    expect(chain.head).toEqual({ seq: 2, hash: second.hash });
  });

  it('does not move until a sealed record is committed, so a failed write reuses its seq', () => {
    const chain = new HashChain({ seq: 41, hash: 'a'.repeat(64) });
    const lost = chain.seal({ n: 'lost' });
    const kept = chain.seal({ n: 'kept' });
    chain.commit(kept);
    expect(lost.seq).toBe(42);
    expect(kept.seq).toBe(42);
    expect(() => chain.commit(lost)).toThrow(/does not follow/);
  });

  it('recomputes the same hash from the parsed line, whatever the strings hold', () => {
    const chain = new HashChain();
    const record = {
      text: 'tab\t quote" backslash\\ newline\n control\u0001 é 日本 emoji 🎉 lone \ud800 del \u007f',
      n: 12345678901,
      nothing: null,
      nested: { list: [1, 'two', { three: true }] },
    };
    const sealed = chain.seal(record);
    const parsed = JSON.parse(sealed.line) as Record<string, unknown>;
    expect(expectedHash(parsed)).toBe(sealed.hash);
    expect(canonicalOf(parsed)).toBe(sealed.line.slice(0, sealed.line.indexOf(',"hash":')) + '}');
  });

  it('notices a change of a single character', () => {
    const sealed = new HashChain().seal({ from: 'app@example.com' });
    const parsed = JSON.parse(sealed.line.replace('app@', 'apq@')) as Record<string, unknown>;
    expect(expectedHash(parsed)).not.toBe(sealed.hash);
  });

  it('tells a chained record from one without chain fields', () => {
    const sealed = new HashChain().seal({ v: 1 });
    expect(isChained(JSON.parse(sealed.line) as Record<string, unknown>)).toBe(true);
    expect(isChained({ v: 1, seq: 1, prev: GENESIS })).toBe(false);
    expect(isChained({ v: 1, seq: 0, prev: GENESIS, hash: GENESIS })).toBe(false);
  });
});
