import { describe, expect, it } from 'vitest';
import { AuthLockout, type AuthEvent, type AuthVerdict } from '../../src/admission/auth-lockout.js';
import { MemoryLockoutStore } from '../../src/admission/lockout-store.js';
import { clientBlock } from '../../src/client-address.js';
import type { AuthLockoutConfig } from '../../src/config/types.js';

const MIN = 60_000;
const CONFIG: AuthLockoutConfig = { failures: 3, window: 10 * MIN, lockout: 5 * MIN, maxLockout: 60 * MIN, maxTracked: 1_000 };

/** A lockout over a memory store on a clock the test moves. */
function lockout(config: AuthLockoutConfig = CONFIG) {
  let now = 1_000_000;
  const clock = (): number => now;
  const store = new MemoryLockoutStore(config.maxTracked, clock);
  const events: AuthEvent[] = [];
  const guard = new AuthLockout(config, store, (e) => events.push(e), clock);
  const wrong = (address: string, user = 'billing'): Promise<AuthVerdict> => guard.attempt(address, user, async () => false);
  const right = (address: string, user = 'billing'): Promise<AuthVerdict> => guard.attempt(address, user, async () => true);
  return {
    store,
    events,
    wrong,
    right,
    advance(ms: number) {
      now += ms;
    },
    /** Fails from `address` (distinct usernames, so only the address counts) until the lockout starts. */
    async lockAddress(address: string): Promise<AuthVerdict> {
      let verdict: AuthVerdict = { kind: 'failed' };
      for (let i = 0; i < config.failures; i++) verdict = await wrong(address, `name-${Math.random()}`);
      return verdict;
    },
  };
}

describe('AUTH lockout', () => {
  it('locks an address at `failures` failures within the window, for `lockout`, then lets it try again', async () => {
    const t = lockout();
    expect((await t.wrong('203.0.113.9', 'a')).kind).toBe('failed');
    expect((await t.wrong('203.0.113.9', 'b')).kind).toBe('failed');
    expect(await t.wrong('203.0.113.9', 'c')).toEqual({ kind: 'locked', started: [{ scope: 'address', level: 1, durationMs: 5 * MIN }] });
    expect(await t.right('203.0.113.9')).toEqual({ kind: 'locked', started: [] });
    t.advance(5 * MIN - 1);
    expect((await t.right('203.0.113.9')).kind).toBe('locked');
    t.advance(1);
    expect((await t.right('203.0.113.9')).kind).toBe('accepted');
  });

  it('starts one lockout for a burst of concurrent failures, not one per failure beyond the limit', async () => {
    const t = lockout();
    const verdicts = await Promise.all(Array.from({ length: 40 }, (_, i) => t.wrong('203.0.113.9', `name-${i}`)));
    const started = verdicts.flatMap((v) => (v.kind === 'locked' ? v.started : []));
    expect(started).toEqual([{ scope: 'address', level: 1, durationMs: 5 * MIN }]);
    expect(t.events.filter((e) => e.kind === 'lockout')).toHaveLength(1);
  });

  it('counts failures over a window from the first: older ones no longer count', async () => {
    const t = lockout();
    await t.wrong('203.0.113.9', 'a');
    await t.wrong('203.0.113.9', 'b');
    t.advance(10 * MIN);
    expect((await t.wrong('203.0.113.9', 'c')).kind).toBe('failed');
  });

  it('doubles the lockout on each repeat, up to maxLockout', async () => {
    const t = lockout();
    const durations: number[] = [];
    for (let i = 0; i < 6; i++) {
      const verdict = await t.lockAddress('203.0.113.9');
      if (verdict.kind !== 'locked') throw new Error(`expected a lockout, got ${verdict.kind}`);
      const started = verdict.started[0]!;
      durations.push(started.durationMs / MIN);
      t.advance(started.durationMs);
    }
    expect(durations).toEqual([5, 10, 20, 40, 60, 60]);
  });

  it('starts again at `lockout` once maxLockout has passed after the last lockout ended', async () => {
    const t = lockout();
    await t.lockAddress('203.0.113.9');
    t.advance(5 * MIN);
    expect(await t.lockAddress('203.0.113.9')).toMatchObject({ started: [{ level: 2, durationMs: 10 * MIN }] });
    t.advance(10 * MIN + 60 * MIN);
    expect(await t.lockAddress('203.0.113.9')).toMatchObject({ started: [{ level: 1, durationMs: 5 * MIN }] });
  });

  it('locks a username failed from many addresses, whether or not it exists, for every address that never logged in as it', async () => {
    const t = lockout();
    await t.wrong('198.51.100.1', 'nobody');
    await t.wrong('198.51.100.2', 'nobody');
    expect(await t.wrong('198.51.100.3', 'nobody')).toEqual({ kind: 'locked', started: [{ scope: 'user', level: 1, durationMs: 5 * MIN }] });
    expect((await t.right('198.51.100.4', 'nobody')).kind).toBe('locked');
    expect((await t.right('198.51.100.4', 'somebody')).kind).toBe('accepted');
  });

  it('does not hold an address that logged in as the user by that user’s lock, only by its own', async () => {
    const t = lockout();
    expect((await t.right('192.0.2.7')).kind).toBe('accepted');
    for (const a of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) await t.wrong(a);
    expect((await t.right('198.51.100.4')).kind).toBe('locked');
    expect((await t.right('192.0.2.7')).kind).toBe('accepted');
    // Its own failures still lock its address.
    expect((await t.lockAddress('192.0.2.7')).kind).toBe('locked');
    expect((await t.right('192.0.2.7')).kind).toBe('locked');
  });

  it('treats the addresses of one IPv6 /64 as one client, and ::ffff:a.b.c.d as a.b.c.d', async () => {
    const t = lockout();
    await t.wrong('2001:db8:1:2::1', 'a');
    await t.wrong('2001:db8:1:2:ffff::9', 'b');
    expect((await t.wrong('2001:db8:1:2:abcd:1:2:3', 'c')).kind).toBe('locked');
    expect((await t.right('2001:db8:1:3::1', 'd')).kind).toBe('accepted');
    await t.lockAddress('::ffff:192.0.2.1');
    expect((await t.right('192.0.2.1', 'e')).kind).toBe('locked');
  });

  it('reports each failure, each refusal and each lockout as an event', async () => {
    const t = lockout();
    await t.lockAddress('203.0.113.9');
    await t.right('203.0.113.9');
    expect(t.events.map((e) => e.kind)).toEqual(['failure', 'failure', 'failure', 'lockout', 'refused']);
    expect(t.events[3]).toEqual({ kind: 'lockout', scope: 'address', address: '203.0.113.9', level: 1, durationMs: 5 * MIN, failures: 3, windowMs: 10 * MIN });
  });

  it('keeps memory bounded when an attacker rotates usernames and addresses', async () => {
    const t = lockout({ ...CONFIG, maxTracked: 100 });
    for (let i = 0; i < 5_000; i++) await t.wrong(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, `user-${i}`);
    // Four kinds of state, each at most maxTracked entries.
    expect(t.store.size).toBeLessThanOrEqual(400);
  });

  it('only counts failures when the lockout is off', async () => {
    const events: AuthEvent[] = [];
    const guard = new AuthLockout(null, null, (e) => events.push(e));
    for (let i = 0; i < 20; i++) expect((await guard.attempt('203.0.113.9', 'billing', async () => false)).kind).toBe('failed');
    expect((await guard.attempt('203.0.113.9', 'billing', async () => true)).kind).toBe('accepted');
    expect(new Set(events.map((e) => e.kind))).toEqual(new Set(['failure']));
  });
});

describe('client address blocks', () => {
  it.each([
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['2001:db8:1:2::5', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:0003:0004:0005:0006', '2001:db8:1:2::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
  ])('%s belongs to %s', (ip, block) => {
    expect(clientBlock(ip)).toBe(block);
  });
});
