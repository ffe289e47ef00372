import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { breakerEvidence, CircuitBreaker, type BreakerTransition } from '../../src/routing/circuit-breaker.js';
import { classify } from '../../src/classify/classify.js';
import type { UpstreamBreakerConfig } from '../../src/config/types.js';
import type { UpstreamFacts } from '../../src/classify/upstream-facts.js';

const CONFIG: UpstreamBreakerConfig = { failures: 3, window: null, failureRate: 0.5, cooldown: 1_000 };

function setup(config: UpstreamBreakerConfig | null = CONFIG) {
  const clock = { t: 0, now: () => clock.t };
  const changes: BreakerTransition[] = [];
  const breaker = new CircuitBreaker('primary', config, (t) => changes.push(t), clock);
  const advance = (ms: number) => {
    clock.t += ms;
    vi.advanceTimersByTime(ms);
  };
  return { breaker, changes, advance, clock };
}

function fail(b: CircuitBreaker, n: number) {
  for (let i = 0; i < n; i++) {
    expect(b.admit()).toBe('pass');
    b.record('failure', false, 'connect ECONNREFUSED');
  }
}

describe('the circuit breaker', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('stays closed below the number of consecutive failures', () => {
    const { breaker, changes } = setup();
    fail(breaker, 2);
    expect(breaker.state).toBe('closed');
    expect(changes).toEqual([]);
  });

  it('opens after N consecutive infrastructure failures and then skips without letting anything through', () => {
    const { breaker, changes } = setup();
    fail(breaker, 3);
    expect(breaker.state).toBe('open');
    expect(breaker.admit()).toBe('skip');
    expect(changes).toEqual([{ from: 'closed', state: 'open', reason: '3 consecutive infrastructure failures (last: connect ECONNREFUSED)' }]);
  });

  it('forgets earlier failures after a success', () => {
    const { breaker } = setup();
    fail(breaker, 2);
    breaker.record('success', false);
    fail(breaker, 2);
    expect(breaker.state).toBe('closed');
  });

  it('ignores neutral evidence (our own deadline, throttling, credentials)', () => {
    const { breaker } = setup();
    fail(breaker, 2);
    breaker.record('neutral', false);
    fail(breaker, 1);
    expect(breaker.state).toBe('open');
  });

  it('turns half-open after the cooldown and lets exactly one probe through', () => {
    const { breaker, changes, advance } = setup();
    fail(breaker, 3);
    advance(999);
    expect(breaker.admit()).toBe('skip');
    expect(breaker.retryInMs).toBe(1);
    advance(1);
    expect(breaker.state).toBe('half-open');
    expect(changes.at(-1)).toEqual({ from: 'open', state: 'half-open', reason: 'cooldown of 1000 ms elapsed' });
    expect(breaker.admit()).toBe('probe');
    expect(breaker.admit()).toBe('skip');
  });

  it('closes when the probe succeeds', () => {
    const { breaker, changes, advance } = setup();
    fail(breaker, 3);
    advance(1_000);
    expect(breaker.admit()).toBe('probe');
    breaker.record('success', true, 'delivered');
    expect(breaker.state).toBe('closed');
    expect(changes.at(-1)).toMatchObject({ from: 'half-open', state: 'closed' });
    expect(breaker.admit()).toBe('pass');
  });

  it('opens again for a fresh cooldown when the probe fails', () => {
    const { breaker, changes, advance } = setup();
    fail(breaker, 3);
    advance(1_000);
    breaker.admit();
    breaker.record('failure', true, 'connect ECONNREFUSED');
    expect(breaker.state).toBe('open');
    expect(changes.at(-1)).toEqual({ from: 'half-open', state: 'open', reason: 'half-open trial failed: connect ECONNREFUSED' });
    advance(999);
    expect(breaker.state).toBe('open');
    advance(1);
    expect(breaker.state).toBe('half-open');
  });

  it('lets the next message probe when the probe ended without evidence', () => {
    const { breaker, advance } = setup();
    fail(breaker, 3);
    advance(1_000);
    expect(breaker.admit()).toBe('probe');
    breaker.record('neutral', true);
    expect(breaker.state).toBe('half-open');
    expect(breaker.admit()).toBe('probe');
  });

  it('lets the health probe decide a half-open breaker, and the late message probe then changes nothing', () => {
    const { breaker, advance } = setup();
    fail(breaker, 3);
    advance(1_000);
    expect(breaker.admit()).toBe('probe');
    breaker.recordProbe(true);
    expect(breaker.state).toBe('closed');
    breaker.record('failure', true, 'connect');
    expect(breaker.state).toBe('closed');
  });

  it('ignores a health probe during the cooldown', () => {
    const { breaker } = setup();
    fail(breaker, 3);
    breaker.recordProbe(true);
    expect(breaker.state).toBe('open');
  });

  it('counts failed health probes while closed', () => {
    const { breaker } = setup();
    for (let i = 0; i < 3; i++) breaker.recordProbe(false, 'connect');
    expect(breaker.state).toBe('open');
  });

  it('does not count results of attempts that were already under way when it opened', () => {
    const { breaker, advance } = setup();
    fail(breaker, 3);
    breaker.record('success', false);
    expect(breaker.state).toBe('open');
    advance(1_000);
    breaker.record('success', false);
    expect(breaker.state).toBe('half-open');
  });

  it('with a window, opens on a failure rate even when failures are not consecutive', () => {
    const { breaker, advance } = setup({ failures: 3, window: 10_000, failureRate: 0.5, cooldown: 1_000 });
    for (let i = 0; i < 3; i++) {
      breaker.record('failure', false, 'timeout');
      breaker.record('success', false);
      advance(100);
    }
    expect(breaker.state).toBe('open');
    expect(breaker.admit()).toBe('skip');
  });

  it('with a window, forgets failures older than the window', () => {
    const { breaker, advance } = setup({ failures: 3, window: 1_000, failureRate: 0.5, cooldown: 1_000 });
    for (let i = 0; i < 3; i++) {
      breaker.record('failure', false, 'timeout');
      breaker.record('success', false);
      advance(600);
    }
    expect(breaker.state).toBe('closed');
  });

  it('never skips when turned off', () => {
    const { breaker, changes } = setup(null);
    fail(breaker, 20);
    expect(breaker.admit()).toBe('pass');
    expect(changes).toEqual([]);
  });
});

describe('what an attempt tells the breaker', () => {
  const base: UpstreamFacts = {
    ok: false,
    phase: 'connecting',
    reply: null,
    replyPhase: null,
    errorCode: null,
    cause: null,
    timeoutType: null,
    syscall: null,
    message: null,
    accepted: [],
    rejected: [],
  };
  const refused = (code: number, enhanced: string | null, text: string, phase: UpstreamFacts['replyPhase'], errorCode = 'EENVELOPE') =>
    classify({ ...base, phase: 'envelope', errorCode, reply: { code, enhanced, text }, replyPhase: phase });

  it('counts a refused connection as a failure', () => {
    expect(breakerEvidence(classify({ ...base, errorCode: 'ESOCKET', cause: 'ECONNREFUSED', syscall: 'connect' }), false)).toBe('failure');
  });

  it('counts a 421 as a failure', () => {
    expect(breakerEvidence(refused(421, '4.3.2', 'Service not available', 'mail'), false)).toBe('failure');
  });

  it('takes a delivery and a verdict on the message as signs of life', () => {
    expect(breakerEvidence(classify({ ...base, ok: true, phase: 'done', reply: { code: 250, enhanced: null, text: 'Ok' }, replyPhase: 'data' }), false)).toBe(
      'success',
    );
    expect(breakerEvidence(refused(550, '5.1.1', 'User unknown', 'rcpt'), false)).toBe('success');
  });

  it('takes throttling, quota and credential refusals as neutral', () => {
    expect(breakerEvidence(refused(454, null, 'Throttling failure: Maximum sending rate exceeded.', 'mail'), false)).toBe('neutral');
    expect(
      breakerEvidence(
        classify({ ...base, errorCode: 'EAUTH', reply: { code: 535, enhanced: '5.7.8', text: 'Authentication failed' }, replyPhase: 'auth' }),
        false,
      ),
    ).toBe('neutral');
  });

  it('takes an attempt ended by our own deadline as neutral', () => {
    expect(breakerEvidence(classify({ ...base, errorCode: 'EDEADLINE' }), true)).toBe('neutral');
  });
});
