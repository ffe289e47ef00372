/**
 * What ready means with circuit breakers (docs/observability.md, "Readiness"), fed through the bus
 * exactly as the relay and the probes feed it. The integration tests drive the same through a relay.
 */
import { describe, expect, it } from 'vitest';
import { EventBus } from '../../src/event-bus.js';
import { Readiness } from '../../src/observe/readiness.js';
import type { ProbeResult } from '../../src/routing/routing-events.js';
import type { RelayBus, RelayEvents } from '../../src/observe/relay-events.js';

const LISTENER = { host: '127.0.0.1', port: 2525, implicitTls: false };

function readiness(upstreams: string[], probed: string[]): { bus: RelayBus; ready: () => boolean; reasons: () => readonly string[] } {
  const bus = new EventBus<RelayEvents>((err) => {
    throw err;
  });
  const r = new Readiness(bus, { upstreams, probed, listeners: () => [LISTENER] });
  return { bus, ready: () => r.report().ready, reasons: () => r.report().reasons };
}

function probe(bus: RelayBus, upstream: string, ok: boolean): void {
  const result: ProbeResult = {
    upstream,
    ok,
    class: ok ? null : 'connect',
    time: new Date().toISOString(),
    ms: 1,
    reply: null,
    error: null,
    hint: null,
    tls: null,
  };
  bus.publish('probe', result);
}

function breaker(bus: RelayBus, upstream: string, state: 'open' | 'half-open' | 'closed'): void {
  bus.publish('upstream-state', { upstream, from: state === 'closed' ? 'half-open' : 'closed', state, reason: 'test' });
}

describe('readiness with circuit breakers', () => {
  it('is ready with an unprobed upstream until its breaker opens, and again once it is half-open', () => {
    const { bus, ready, reasons } = readiness(['a'], []);
    expect(ready()).toBe(true);
    breaker(bus, 'a', 'open');
    expect(ready()).toBe(false);
    expect(reasons()).toEqual(['no usable upstream (a: circuit breaker open)']);
    // Only a message can try an unprobed upstream: not ready here would keep traffic away for good.
    breaker(bus, 'a', 'half-open');
    expect(ready()).toBe(true);
  });

  it('stays ready while one upstream is usable, and names why each other one is not', () => {
    const { bus, ready, reasons } = readiness(['a', 'b', 'c'], ['b']);
    probe(bus, 'b', false);
    breaker(bus, 'a', 'open');
    expect(ready()).toBe(true);
    breaker(bus, 'c', 'open');
    expect(ready()).toBe(false);
    expect(reasons()).toEqual(['no usable upstream (a: circuit breaker open; b: last probe failed; c: circuit breaker open)']);
  });

  it('is not ready with a probed upstream before its first probe', () => {
    const { bus, ready, reasons } = readiness(['a'], ['a']);
    expect(reasons()).toEqual(['no usable upstream (a: no probe finished yet)']);
    probe(bus, 'a', true);
    expect(ready()).toBe(true);
  });

  it('is not ready while the breaker of a probed upstream is open, whatever its last probe said', () => {
    const { bus, ready } = readiness(['a'], ['a']);
    probe(bus, 'a', true);
    breaker(bus, 'a', 'open');
    expect(ready()).toBe(false);
    // A probe during the cooldown does not close the breaker: the relay still skips the upstream.
    probe(bus, 'a', true);
    expect(ready()).toBe(false);
  });

  it('keeps a half-open probed upstream unusable until a trial or a probe says it is back', () => {
    const { bus, ready, reasons } = readiness(['a'], ['a']);
    probe(bus, 'a', true);
    breaker(bus, 'a', 'open');
    breaker(bus, 'a', 'half-open');
    expect(ready()).toBe(false);
    expect(reasons()).toEqual(['no usable upstream (a: circuit breaker half-open, not yet tried again)']);
    breaker(bus, 'a', 'closed');
    expect(ready()).toBe(true);
  });

  it('counts a probe that passed during the cooldown once the breaker is half-open', () => {
    const { bus, ready } = readiness(['a'], ['a']);
    breaker(bus, 'a', 'open');
    probe(bus, 'a', true);
    breaker(bus, 'a', 'half-open');
    expect(ready()).toBe(true);
  });

  it('takes a trial that closed the breaker over an older failed probe, and a newer failed probe over the trial', () => {
    const { bus, ready } = readiness(['a'], ['a']);
    probe(bus, 'a', false);
    breaker(bus, 'a', 'open');
    breaker(bus, 'a', 'half-open');
    breaker(bus, 'a', 'closed');
    expect(ready()).toBe(true);
    probe(bus, 'a', false);
    expect(ready()).toBe(false);
  });
});
