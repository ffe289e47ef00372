/**
 * The queue manager's delivery events (docs/spool.md, "Delivery events"): with `spool.events`, the
 * application's endpoint hears what becomes of each spooled message, each event's id the id of the
 * trail record that reports the same thing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeliveryEventBody } from '../../src/spool/delivery-event.js';
import type { DeliveryRecord } from '../../src/audit/records.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const QUEUED = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]{26})/;

describe('delivery events of spooled messages', () => {
  let upstream: FakeUpstream;
  let hook: WebhookReceiver<DeliveryEventBody>;
  let relay: RunningRelay | null = null;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    hook = await startWebhookReceiver<DeliveryEventBody>();
  });
  afterEach(async () => {
    await relay?.stop();
    relay = null;
    await upstream.resetFaults();
    upstream.clearRecords();
    hook.received.length = 0;
  });
  afterAll(async () => {
    await upstream.close();
    await hook.close();
  });

  it('tells the endpoint queued, each deferral, then delivered, each attempt with the id of its delivery record', async () => {
    await upstream.setFaults({ data: { code: 451, text: '4.3.0 try later' } });
    relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port, breaker: null }],
      mode: 'spool',
      tls: null,
      spool: { retry: { first: 100, max: 400 }, events: [{ url: hook.url, secret: 'event-secret' }] },
      appOptions: { spool: { tickMs: 50 } },
    });
    const res = await relay.send({
      from: 'app@example.com',
      to: ['ana@example.org'],
      raw: simpleMessage({ messageId: '<ev-1@example.com>' }),
      startTls: false,
    });
    const id = QUEUED.exec(res.ok ? res.response : '')?.[1];
    expect(id, JSON.stringify(res)).toBeDefined();
    await hook.waitFor((r) => r.some((x) => x.json.type === 'deferred'));
    await upstream.resetFaults();
    await hook.waitFor((r) => r.some((x) => x.json.type === 'delivered'));
    const events = [...hook.received].map((x) => x.json).sort((a, b) => a.time.localeCompare(b.time));
    // One deferral or more (the retry comes 100 ms later), then the delivery.
    const types = events.map((e) => e.type);
    expect(types[0]).toBe('queued');
    expect(types.at(-1)).toBe('delivered');
    expect(new Set(types.slice(1, -1))).toEqual(new Set(['deferred']));
    for (const e of events) expect(e).toMatchObject({ spoolId: id, messageId: '<ev-1@example.com>', envelope: { from: 'app@example.com' } });
    expect(events[0]).toMatchObject({ id, attempt: 0 });
    expect(events[1]).toMatchObject({
      attempt: 1,
      upstream: 'provider',
      class: 'upstream_unavailable',
      reply: { code: 451 },
      nextAttemptAt: expect.any(String),
    });
    expect(events.at(-1)).toMatchObject({ attempt: events.length - 1, envelope: { recipients: [{ address: 'ana@example.org', status: 'delivered' }] } });
    const records = (await relay.records()).filter((r): r is DeliveryRecord => r.type === 'delivery');
    expect(events.slice(1).map((e) => e.id)).toEqual(records.map((r) => r.id));
  });
});
