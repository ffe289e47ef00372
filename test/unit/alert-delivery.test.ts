import { describe, expect, it } from 'vitest';
import { DeliveryQueue, PermanentSinkError, type AlertDelivery, type AlertSink } from '../../src/observe/alerts/delivery-queue.js';
import type { AlertNotification } from '../../src/observe/alerts/notification.js';
import { EventBus } from '../../src/event-bus.js';
import type { RelayEvents } from '../../src/observe/relay-events.js';
import { createLogger } from '../../src/logger.js';

function notice(id: string): AlertNotification {
  const time = new Date().toISOString();
  return { id, state: 'fired', rule: 'failing', upstream: 'ses', class: 'connect', message: 'm', time, since: time, host: 'h' };
}

function setup(sinks: AlertSink[], limits: Partial<ConstructorParameters<typeof DeliveryQueue>[1]> = {}) {
  const bus = new EventBus<RelayEvents>(() => undefined);
  const deliveries: AlertDelivery[] = [];
  bus.subscribe('alert-delivery', (d) => deliveries.push(d));
  const queue = new DeliveryQueue(sinks, { queueSize: 10, retries: 2, timeout: 1_000, backoff: 20, ...limits }, bus, createLogger('silent'));
  return { queue, deliveries };
}

async function until(predicate: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('alert delivery', () => {
  it('retries a failing sink with growing waits, then reports it sent', async () => {
    const times: number[] = [];
    const sink: AlertSink = {
      name: 'flaky',
      async send() {
        times.push(Date.now());
        if (times.length < 3) throw new Error('503');
      },
    };
    const { queue, deliveries } = setup([sink]);
    queue.enqueue('flaky', notice('a'));
    await until(() => deliveries.length === 1);
    expect(deliveries[0]).toMatchObject({ sink: 'flaky', result: 'sent', attempts: 3 });
    // The waits are backoff * 2^(n-1): 20 ms, then 40 ms. Timers never fire early, so these lower
    // bounds hold on a loaded machine (comparing the two measured gaps did not: a late first timer).
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(19);
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(39);
  });

  it('gives up after the retries and reports it failed', async () => {
    const { queue, deliveries } = setup([{ name: 'down', send: () => Promise.reject(new Error('ECONNREFUSED')) }]);
    queue.enqueue('down', notice('a'));
    await until(() => deliveries.length === 1);
    expect(deliveries[0]).toMatchObject({ result: 'failed', attempts: 3, error: 'ECONNREFUSED' });
  });

  it('does not retry a permanent refusal', async () => {
    let calls = 0;
    const { queue, deliveries } = setup([
      {
        name: 'gone',
        send: () => {
          calls += 1;
          return Promise.reject(new PermanentSinkError('webhook answered 404'));
        },
      },
    ]);
    queue.enqueue('gone', notice('a'));
    await until(() => deliveries.length === 1);
    expect(calls).toBe(1);
    expect(deliveries[0]!.result).toBe('failed');
  });

  it('times out a sink that never answers, even one that ignores its signal', async () => {
    const { queue, deliveries } = setup([{ name: 'hang', send: () => new Promise(() => undefined) }], { retries: 0, timeout: 100 });
    queue.enqueue('hang', notice('a'));
    await until(() => deliveries.length === 1);
    expect(deliveries[0]).toMatchObject({ result: 'failed', error: expect.stringContaining('no answer within 100 ms') });
  });

  it('drops and counts notices beyond the queue size, and keeps other sinks moving', async () => {
    const fast: string[] = [];
    const { queue, deliveries } = setup(
      [
        { name: 'hang', send: () => new Promise(() => undefined) },
        { name: 'fast', send: async (n) => void fast.push(n.id) },
      ],
      { queueSize: 2, timeout: 60_000 },
    );
    for (let i = 0; i < 5; i++) queue.enqueue('hang', notice(`h${i}`));
    for (let i = 0; i < 5; i++) {
      queue.enqueue('fast', notice(`f${i}`));
      await until(() => fast.length === i + 1);
    }
    // One in flight, two waiting, two dropped.
    expect(deliveries.filter((d) => d.sink === 'hang').map((d) => d.result)).toEqual(['dropped', 'dropped']);
    const t0 = Date.now();
    await queue.stop(50);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(deliveries.filter((d) => d.sink === 'hang' && d.result === 'dropped')).toHaveLength(4);
  });

  it('returns from enqueue at once, whatever the sink does', () => {
    const { queue } = setup([{ name: 'slow', send: () => new Promise((r) => setTimeout(r, 1_000)) }]);
    const t0 = performance.now();
    for (let i = 0; i < 10; i++) queue.enqueue('slow', notice(`s${i}`));
    expect(performance.now() - t0).toBeLessThan(50);
    return queue.stop(0);
  });
});
