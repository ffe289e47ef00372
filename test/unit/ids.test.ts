import { describe, expect, it } from 'vitest';
import { decodeTime } from 'ulid';
import { IdGenerator } from '../../src/ids.js';

describe('IdGenerator', () => {
  it('makes 26-character Crockford base32 ULIDs whose time part is the given millisecond', () => {
    const id = new IdGenerator().next(1_733_450_000_123);
    expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(decodeTime(id)).toBe(1_733_450_000_123);
  });

  it('sorts ids made within one millisecond in the order they were made', () => {
    const ids = new IdGenerator();
    const made = Array.from({ length: 1_000 }, () => ids.next(1_733_450_000_000));
    expect([...made].sort()).toEqual(made);
    expect(new Set(made).size).toBe(made.length);
  });

  it('keeps creation order when the clock steps back', () => {
    const ids = new IdGenerator();
    const made = [ids.next(2_000), ids.next(1_999), ids.next(1_500), ids.next(2_001)];
    expect([...made].sort()).toEqual(made);
  });

  it('sorts ids of later milliseconds after earlier ones', () => {
    const ids = new IdGenerator();
    const a = ids.next(1_000);
    const b = ids.next(1_001);
    expect(a < b).toBe(true);
  });
});
