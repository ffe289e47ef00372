/**
 * The spool's counters, fed by what the bus carries: `delivery` records (attempts by class), `spool`
 * records (ends by end and the class of the message's last failed attempt; parked upstreams) and the
 * delivery-event outbox (webhook tries by result, pending events). Names and values as Prometheus
 * reads them (the exposition parsed strictly).
 */
import { describe, expect, it } from 'vitest';
import { EventBus } from '../../src/event-bus.js';
import { Metrics, type SpoolGauges } from '../../src/observe/metrics.js';
import type { RelayEvents } from '../../src/observe/relay-events.js';
import { parseExposition, type Exposition } from '../helpers/exposition.js';
import { delivery, spoolEvent } from '../helpers/trail-fixtures.js';

const SPOOL: SpoolGauges = {
  counts: () => ({ queued: 3, delivering: 1, held: 2, oldestWaitingAt: Date.now() - 90_000 }),
  freeBytes: () => 5_000_000,
  minFreeSpace: 1_000_000,
  eventEndpoints: ['billing', 'crm'],
};

function setup(spool: SpoolGauges | null = SPOOL) {
  const bus = new EventBus<RelayEvents>((err) => {
    throw err;
  });
  const metrics = new Metrics(bus, { upstreams: ['ses', 'backup'], sessionsActive: () => 0, processMetrics: false, spool });
  return { bus, read: async (): Promise<Exposition> => parseExposition(await metrics.render()) };
}

const THROTTLED = {
  class: 'throttled',
  retryable: true,
  actor: 'upstream',
  scope: 'account',
  detail: { rule: 'ses-max-send-rate', code: 'EENVELOPE', cause: null, timeoutType: null, message: null },
} as const;

describe('the spool metrics', () => {
  it('read the spool at scrape time: messages by state, the oldest waiting one, free space and its reserve', async () => {
    const m = await setup().read();
    expect(m.value('mailtrail_spool_messages', { state: 'queued' })).toBe(3);
    expect(m.value('mailtrail_spool_messages', { state: 'delivering' })).toBe(1);
    expect(m.value('mailtrail_spool_messages', { state: 'held' })).toBe(2);
    expect(m.value('mailtrail_spool_oldest_age_seconds')).toBeGreaterThanOrEqual(90);
    expect(m.value('mailtrail_spool_oldest_age_seconds')).toBeLessThan(100);
    expect(m.value('mailtrail_spool_free_bytes')).toBe(5_000_000);
    expect(m.value('mailtrail_spool_min_free_bytes')).toBe(1_000_000);
  });

  it('count delivery attempts by failure class, "none" for a delivery', async () => {
    const { bus, read } = setup();
    bus.publish('delivery', delivery('01M94YAFK06VB1GMH80B0ECYC5'));
    bus.publish(
      'delivery',
      delivery('01M94YAFN925NXRNGHGVGN5BPC', { outcome: 'deferred', failure: THROTTLED, next: { action: 'retry', at: '2026-11-25T10:20:00.000Z' } }),
    );
    const m = await read();
    expect(m.value('mailtrail_spool_attempts_total', { class: 'none' })).toBe(1);
    expect(m.value('mailtrail_spool_attempts_total', { class: 'throttled' })).toBe(1);
  });

  it('count ends by end and by the class of the message’s last failed attempt, never a queued message as delivered', async () => {
    const { bus, read } = setup();
    const id = '01M94YAFN925NXRNGHGVGN5BPC';
    bus.publish('delivery', delivery(id, { outcome: 'deferred', failure: THROTTLED, next: { action: 'retry', at: null } }));
    bus.publish('spool', spoolEvent(id, { event: 'expired' }));
    bus.publish('spool', spoolEvent('01M94YAFK06VB1GMH80B0ECYC5', { event: 'delivered' }));
    bus.publish('spool', spoolEvent('01M94YAFRBAD8KXKK9BWGPFAX4', { event: 'deleted', by: { channel: 'cli', user: 'ops', address: null } }));
    // Not ends: a hold, a recovery.
    bus.publish('spool', spoolEvent('01M94YAFRBAD8KXKK9BWGPFAX4', { event: 'held' }));
    bus.publish('spool', spoolEvent('01M94YAFRBAD8KXKK9BWGPFAX4', { event: 'recovered' }));
    const m = await read();
    expect(m.value('mailtrail_spool_ends_total', { end: 'expired', class: 'throttled' })).toBe(1);
    expect(m.value('mailtrail_spool_ends_total', { end: 'delivered', class: 'none' })).toBe(1);
    expect(m.value('mailtrail_spool_ends_total', { end: 'deleted', class: 'none' })).toBe(1);
    expect(m.value('mailtrail_spool_ends_total')).toBe(3);
  });

  it('show an upstream parked while it is, per upstream', async () => {
    const { bus, read } = setup();
    bus.publish('spool', spoolEvent(null, { event: 'parked', upstream: 'ses' }));
    expect((await read()).value('mailtrail_spool_parked', { upstream: 'ses' })).toBe(1);
    expect((await read()).value('mailtrail_spool_parked', { upstream: 'backup' })).toBe(0);
    bus.publish('spool', spoolEvent(null, { event: 'unparked', upstream: 'ses' }));
    expect((await read()).value('mailtrail_spool_parked', { upstream: 'ses' })).toBe(0);
  });

  it('count delivery-event webhook tries by endpoint and result, every series at 0 from the start, and the pending ones', async () => {
    const { bus, read } = setup();
    const before = await read();
    for (const endpoint of ['billing', 'crm']) {
      for (const result of ['sent', 'failed', 'dropped']) {
        expect(before.samples).toContainEqual({ name: 'mailtrail_delivery_events_total', labels: { endpoint, result }, value: 0 });
      }
      expect(before.samples).toContainEqual({ name: 'mailtrail_delivery_events_pending', labels: { endpoint }, value: 0 });
    }
    bus.publish('delivery-event-sent', { endpoint: 'billing', id: 'e1', type: 'delivered', attempts: 1, ms: 20 });
    bus.publish('delivery-event-failed', { endpoint: 'crm', id: 'e2', type: 'deferred', attempt: 1, error: 'HTTP 503', retryAt: Date.now() + 5_000 });
    bus.publish('delivery-event-dropped', { endpoint: 'crm', id: 'e3', type: 'deferred', attempts: 40, reason: 'max-age' });
    bus.publish('delivery-event-pending', { endpoint: 'crm', pending: 7 });
    const m = await read();
    expect(m.value('mailtrail_delivery_events_total', { endpoint: 'billing', result: 'sent' })).toBe(1);
    expect(m.value('mailtrail_delivery_events_total', { endpoint: 'crm', result: 'failed' })).toBe(1);
    expect(m.value('mailtrail_delivery_events_total', { endpoint: 'crm', result: 'dropped' })).toBe(1);
    expect(m.value('mailtrail_delivery_events_pending', { endpoint: 'crm' })).toBe(7);
  });

  it('are not there at all when nothing spools', async () => {
    const m = await setup(null).read();
    expect(m.samples.filter((s) => s.name.startsWith('mailtrail_spool_') || s.name.startsWith('mailtrail_delivery_events'))).toEqual([]);
  });
});
