import { describe, expect, it } from 'vitest';
import { DuplicateTracker } from '../../src/transaction/duplicate-tracker.js';
import type { RelayRecord } from '../../src/audit/records.js';

const HOUR = 3_600_000;

function rec(
  id: string,
  outcome: RelayRecord['outcome'],
  to: string[] = ['ana@example.org', 'bo@example.net'],
  sha256 = 'h1',
): Parameters<DuplicateTracker['written']>[0] {
  return {
    id,
    outcome,
    from: 'app@example.com',
    rcpt: to.map((t) => ({ to: t, status: 'unknown', reply: null })),
    message: { size: 1, sha256, messageId: null, subject: null, headerFrom: null },
  };
}

function tracker(): { t: DuplicateTracker; advance: (ms: number) => void } {
  let now = 1_000_000;
  return { t: new DuplicateTracker({ window: 24 * HOUR, now: () => now }), advance: (ms) => void (now += ms) };
}

describe('duplicate links', () => {
  it('links the same message and envelope after an unknown outcome', () => {
    const { t } = tracker();
    t.written(rec('A', 'unknown'));
    expect(t.earlier('h1', 'app@example.com', ['ana@example.org', 'bo@example.net'])).toBe('A');
  });

  it('links after a deferred outcome too', () => {
    const { t } = tracker();
    t.written(rec('A', 'deferred'));
    expect(t.earlier('h1', 'app@example.com', ['ana@example.org', 'bo@example.net'])).toBe('A');
  });

  it('does not link after a delivered or rejected message', () => {
    const { t } = tracker();
    t.written(rec('A', 'delivered'));
    t.written(rec('B', 'rejected'));
    expect(t.earlier('h1', 'app@example.com', ['ana@example.org', 'bo@example.net'])).toBeNull();
  });

  it('ignores recipient order and capitalisation, but not a different recipient set or body', () => {
    const { t } = tracker();
    t.written(rec('A', 'unknown'));
    expect(t.earlier('h1', 'App@Example.com', ['BO@example.net', 'ana@example.org'])).toBe('A');
    expect(t.earlier('h1', 'app@example.com', ['ana@example.org'])).toBeNull();
    expect(t.earlier('h2', 'app@example.com', ['ana@example.org', 'bo@example.net'])).toBeNull();
  });

  it('keeps naming the first record when the retry fails again', () => {
    const { t } = tracker();
    t.written(rec('A', 'unknown'));
    t.written(rec('B', 'deferred'));
    expect(t.earlier('h1', 'app@example.com', ['ana@example.org', 'bo@example.net'])).toBe('A');
  });

  it('forgets after the window, and a lookup does not extend it', () => {
    const { t, advance } = tracker();
    t.written(rec('A', 'unknown'));
    advance(23 * HOUR);
    expect(t.earlier('h1', 'app@example.com', ['ana@example.org', 'bo@example.net'])).toBe('A');
    advance(2 * HOUR);
    expect(t.earlier('h1', 'app@example.com', ['ana@example.org', 'bo@example.net'])).toBeNull();
  });

  it('stays bounded', () => {
    const t = new DuplicateTracker({ window: HOUR, max: 10 });
    for (let i = 0; i < 100; i++) t.written(rec(`R${i}`, 'unknown', ['x@example.org'], `h${i}`));
    expect(t.size).toBe(10);
  });
});
