import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AdaptiveThrottle } from '../../src/routing/adaptive-throttle.js';
import { Deadline, stopReason } from '../../src/upstream/deadline.js';
import { EgressRateLimiter } from '../../src/routing/rate-limiter.js';
import { ClientRateLimits, describeLimit } from '../../src/admission/client-rate-limits.js';
import { MemoryTokenBuckets } from '../../src/admission/token-buckets.js';
import type { ClientRateLimit } from '../../src/config/types.js';

function fakeClock() {
  const clock = { t: 1_000_000, now: () => clock.t };
  return clock;
}

const BACKOFF = { initial: 500, max: 4_000, decay: 10_000 };

describe('egress pacing (token bucket per upstream)', () => {
  function limiter(messagesPerSecond: number | null, burst = 1, opts: { maxWait?: number | null; maxWaiters?: number; throttle?: AdaptiveThrottle } = {}) {
    const clock = fakeClock();
    const l = new EgressRateLimiter('ses', { messagesPerSecond, burst, maxWait: opts.maxWait ?? null }, opts.maxWaiters ?? 1000, opts.throttle ?? null, clock);
    return { l, clock };
  }
  const waits = (l: EgressRateLimiter, n: number, limitMs = 60_000) =>
    Array.from({ length: n }, () => {
      const r = l.reserve(limitMs);
      return r.ok ? Math.round(r.waitMs) : r.refusal;
    });

  it('lets every message start at once without a configured rate', () => {
    const { l } = limiter(null);
    expect(waits(l, 5)).toEqual([0, 0, 0, 0, 0]);
  });

  it('spaces messages 1/rate apart: 10 per second starts one every 100 ms', () => {
    const { l } = limiter(10);
    expect(waits(l, 5)).toEqual([0, 100, 200, 300, 400]);
  });

  it('lets a burst start back to back, then applies the rate', () => {
    const { l } = limiter(10, 3);
    expect(waits(l, 6)).toEqual([0, 0, 0, 100, 200, 300]);
  });

  it('refills while idle, but never beyond the burst', () => {
    const { l, clock } = limiter(10, 2);
    waits(l, 4);
    clock.t += 10_000;
    expect(waits(l, 4)).toEqual([0, 0, 100, 200]);
  });

  it('refuses at once, without reserving, a message whose slot lies past its deadline', () => {
    const { l } = limiter(10);
    expect(waits(l, 3, 150)).toEqual([0, 100, 'over-deadline']);
    // The refused message took no slot: the next one with more time gets the 200 ms slot.
    expect(waits(l, 1, 1_000)).toEqual([200]);
  });

  it('waits no longer than maxWait even when the deadline is far', () => {
    const { l } = limiter(10, 1, { maxWait: 250 });
    expect(waits(l, 5, 60_000)).toEqual([0, 100, 200, 'over-deadline', 'over-deadline']);
  });

  it('bounds the number of waiting messages', async () => {
    const { l } = limiter(1, 1, { maxWaiters: 2 });
    const stop = Deadline.after(600_000, () => stopReason('never', 'EDEADLINE'));
    l.reserve(60_000);
    const first = l.take(60_000, stop);
    const second = l.take(60_000, stop);
    expect(l.waiting).toBe(2);
    expect(await l.take(60_000, stop)).toMatchObject({ ok: false, refusal: 'too-many-waiting' });
    stop.stop(stopReason('stop', 'ESHUTDOWN'));
    expect(await first).toMatchObject({ ok: false, refusal: 'aborted' });
    expect(await second).toMatchObject({ ok: false, refusal: 'aborted' });
    expect(l.waiting).toBe(0);
  });

  it('gives back the last slot of a message that stopped waiting', () => {
    const { l } = limiter(10);
    waits(l, 1);
    const r = l.reserve(60_000);
    expect(r.ok && r.waitMs).toBe(100);
    if (r.ok) r.cancel();
    expect(waits(l, 1)).toEqual([100]);
  });

  it('spaces every message by the adaptive delay when it is slower than the rate', () => {
    const clock = fakeClock();
    const throttle = new AdaptiveThrottle('ses', BACKOFF, () => undefined, clock);
    const l = new EgressRateLimiter('ses', { messagesPerSecond: 10, burst: 5, maxWait: null }, 1000, throttle, clock);
    throttle.throttled();
    expect(waits(l, 3)).toEqual([0, 500, 1_000]);
    throttle.close();
  });
});

describe('the adaptive throttle', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function setup(backoff = BACKOFF) {
    const clock = fakeClock();
    const changes: number[] = [];
    const throttle = new AdaptiveThrottle('ses', backoff, (d) => changes.push(d), clock);
    const advance = (ms: number) => {
      clock.t += ms;
      vi.advanceTimersByTime(ms);
    };
    return { throttle, changes, advance };
  }

  it('starts with no delay', () => {
    expect(setup().throttle.delayMs).toBe(0);
  });

  it('slows down by the initial delay at the first throttling reply and reports it', () => {
    const { throttle, changes } = setup();
    throttle.throttled();
    expect(throttle.delayMs).toBe(500);
    expect(changes).toEqual([500]);
  });

  it('counts a burst of throttling replies within the current delay once', () => {
    const { throttle } = setup();
    for (let i = 0; i < 10; i++) throttle.throttled();
    expect(throttle.delayMs).toBe(500);
  });

  it('doubles the delay for throttling that persists, up to the maximum', () => {
    const { throttle, advance, changes } = setup();
    for (let i = 0; i < 6; i++) {
      throttle.throttled();
      advance(5_000);
    }
    expect(throttle.delayMs).toBe(4_000);
    expect(changes).toEqual([500, 1_000, 2_000, 4_000]);
  });

  it('halves the delay every decay period without throttling, down to none', () => {
    const { throttle, advance, changes } = setup({ initial: 500, max: 4_000, decay: 2_000 });
    throttle.throttled();
    advance(600);
    throttle.throttled();
    advance(1_100);
    throttle.throttled();
    expect(throttle.delayMs).toBe(2_000);
    advance(2_000);
    expect(throttle.delayMs).toBe(1_000);
    advance(2_000);
    expect(throttle.delayMs).toBe(500);
    advance(2_000);
    expect(throttle.delayMs).toBe(0);
    expect(changes).toEqual([500, 1_000, 2_000, 1_000, 500, 0]);
  });

  it('eases off one step per delay period as the upstream takes messages again', () => {
    const { throttle, advance, changes } = setup({ initial: 500, max: 4_000, decay: 60_000 });
    throttle.throttled();
    advance(600);
    throttle.throttled();
    expect(throttle.delayMs).toBe(1_000);
    // A message that went through right after the slow-down does not undo it.
    throttle.succeeded();
    expect(throttle.delayMs).toBe(1_000);
    advance(1_000);
    throttle.succeeded();
    throttle.succeeded();
    expect(throttle.delayMs).toBe(500);
    advance(500);
    throttle.succeeded();
    expect(throttle.delayMs).toBe(0);
    expect(changes).toEqual([500, 1_000, 500, 0]);
  });

  it('settles near the initial delay when only some messages are throttled', () => {
    const { throttle, advance } = setup({ initial: 500, max: 4_000, decay: 60_000 });
    const seen: number[] = [];
    for (let i = 0; i < 40; i++) {
      if (i % 4 === 0) throttle.throttled();
      else throttle.succeeded();
      seen.push(throttle.delayMs);
      advance(Math.max(throttle.delayMs, 100));
    }
    expect(Math.max(...seen)).toBeLessThanOrEqual(1_000);
  });

  it('does nothing when the initial delay is 0 (adaptive slow-down off)', () => {
    const { throttle, changes } = setup({ initial: 0, max: 4_000, decay: 1_000 });
    throttle.throttled();
    expect(throttle.delayMs).toBe(0);
    expect(changes).toEqual([]);
  });
});

describe('client rate limits (per user and per address)', () => {
  const none: ClientRateLimit = { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null };
  function limits(perUser: Partial<ClientRateLimit>, perIp: Partial<ClientRateLimit> = {}, maxTracked = 100) {
    const clock = fakeClock();
    const buckets = new MemoryTokenBuckets(maxTracked, clock);
    const l = new ClientRateLimits({ perUser: { ...none, ...perUser }, perIp: { ...none, ...perIp }, maxTracked }, buckets);
    return { l, clock, buckets };
  }

  it('admits everything and tracks nothing when no limit is configured', async () => {
    const { l, buckets } = limits({});
    for (let i = 0; i < 100; i++) expect(await l.admitMessage('billing', '10.0.0.1')).toBeNull();
    expect(buckets.tracked).toBe(0);
  });

  it('refuses the message past the per-user limit per minute, naming the limit', async () => {
    const { l } = limits({ messagesPerMinute: 3 });
    for (let i = 0; i < 3; i++) expect(await l.admitMessage('billing', '10.0.0.1')).toBeNull();
    const over = await l.admitMessage('billing', '10.0.0.1');
    expect(over).toMatchObject({ scope: 'user', subject: 'billing', limit: 'messagesPerMinute', max: 3 });
    expect(over!.retryInMs).toBe(20_000);
    expect(describeLimit(over!)).toBe('at most 3 messages per minute for user billing; try again in 20 s');
  });

  it('keeps users apart', async () => {
    const { l } = limits({ messagesPerMinute: 1 });
    expect(await l.admitMessage('billing', '10.0.0.1')).toBeNull();
    expect(await l.admitMessage('reports', '10.0.0.1')).toBeNull();
    expect(await l.admitMessage('billing', '10.0.0.1')).not.toBeNull();
  });

  it('gives the allowance back as time passes', async () => {
    const { l, clock } = limits({ messagesPerMinute: 2 });
    await l.admitMessage('billing', '10.0.0.1');
    await l.admitMessage('billing', '10.0.0.1');
    expect(await l.admitMessage('billing', '10.0.0.1')).not.toBeNull();
    clock.t += 30_000;
    expect(await l.admitMessage('billing', '10.0.0.1')).toBeNull();
    expect(await l.admitMessage('billing', '10.0.0.1')).not.toBeNull();
  });

  it('applies the per-address limit to clients without a user, and treats ::ffff:a.b.c.d as a.b.c.d', async () => {
    const { l } = limits({}, { messagesPerHour: 2 });
    expect(await l.admitMessage(null, '10.0.0.1')).toBeNull();
    expect(await l.admitMessage(null, '::ffff:10.0.0.1')).toBeNull();
    expect(await l.admitMessage(null, '10.0.0.1')).toMatchObject({ scope: 'ip', subject: '10.0.0.1', limit: 'messagesPerHour' });
  });

  it('does not use up one limit when another refuses', async () => {
    const { l } = limits({ messagesPerMinute: 5 }, { messagesPerMinute: 1 });
    expect(await l.admitMessage('billing', '10.0.0.1')).toBeNull();
    expect(await l.admitMessage('billing', '10.0.0.1')).toMatchObject({ scope: 'ip' });
    // The user still has 4 left: from another address they all go through.
    for (let i = 0; i < 4; i++) expect(await l.admitMessage('billing', `10.0.0.${i + 2}`)).toBeNull();
    expect(await l.admitMessage('billing', '10.0.0.9')).toMatchObject({ scope: 'user' });
  });

  it('counts recipients separately from messages', async () => {
    const { l } = limits({ messagesPerMinute: 1, recipientsPerHour: 2 });
    expect(await l.admitMessage('billing', '10.0.0.1')).toBeNull();
    expect(await l.admitRecipient('billing', '10.0.0.1')).toBeNull();
    expect(await l.admitRecipient('billing', '10.0.0.1')).toBeNull();
    expect(await l.admitRecipient('billing', '10.0.0.1')).toMatchObject({ limit: 'recipientsPerHour', max: 2 });
  });

  it('tracks at most maxTracked users and addresses', async () => {
    const { l, buckets } = limits({}, { messagesPerMinute: 1 }, 50);
    for (let i = 0; i < 500; i++) await l.admitMessage(null, `10.0.${Math.floor(i / 250)}.${i % 250}`);
    expect(buckets.tracked).toBe(50);
  });
});
