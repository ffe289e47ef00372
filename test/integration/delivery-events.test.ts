import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/event-bus.js';
import { IdGenerator } from '../../src/ids.js';
import { createLogger } from '../../src/logger.js';
import type { DeliveryEventBody, DeliveryEventInput } from '../../src/spool/delivery-event.js';
import { DeliveryEvents, type DeliveryEventEndpoint, type DeliveryEventsOptions } from '../../src/spool/delivery-events.js';
import type { DeliveryOutboxEvents } from '../../src/spool/outbox-events.js';
import { startWebhookReceiver, type ReceivedHook, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const SECRET = 'app-webhook-secret';

type Seen = { [K in keyof DeliveryOutboxEvents]: DeliveryOutboxEvents[K][0][] };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function receiver(mode: WebhookReceiver['mode'] = 'ok'): Promise<WebhookReceiver<DeliveryEventBody>> {
  const r = await startWebhookReceiver<DeliveryEventBody>(mode);
  cleanups.push(() => r.close());
  return r;
}

async function outboxDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mailtrail-events-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A DeliveryEvents on `dir` with fast retries; stopped after the test. */
function outbox(dir: string, endpoints: DeliveryEventEndpoint[], tuning: Partial<DeliveryEventsOptions> = {}) {
  const bus = new EventBus<DeliveryOutboxEvents>(() => undefined);
  const seen: Seen = { 'delivery-event-sent': [], 'delivery-event-failed': [], 'delivery-event-dropped': [], 'delivery-event-pending': [] };
  for (const name of Object.keys(seen) as (keyof Seen)[]) bus.subscribe(name, (e) => void (seen[name] as unknown[]).push(e));
  const events = new DeliveryEvents({
    dir,
    endpoints,
    host: 'relay.example.org',
    ids: new IdGenerator(),
    bus,
    log: createLogger('silent'),
    timeout: 5_000,
    retryFirst: 40,
    retryMax: 300,
    ...tuning,
  });
  cleanups.push(() => events.stop());
  return { events, seen };
}

const ids = new IdGenerator();

function event(over: Partial<DeliveryEventInput> = {}): DeliveryEventInput {
  return {
    type: 'delivered',
    spoolId: ids.next(),
    messageId: '<inv-42@example.com>',
    from: 'bounces@example.com',
    recipients: [{ address: 'bob@example.net', status: 'delivered', reply: { code: 250, enhanced: '2.0.0', text: 'Ok: queued as 4F2A' } }],
    attempt: 1,
    upstream: 'ses',
    reply: { code: 250, enhanced: '2.0.0', text: 'Ok: queued as 4F2A' },
    class: null,
    nextAttemptAt: null,
    reason: null,
    ...over,
  };
}

/** What a receiver does: recompute the HMAC over the raw body and compare in constant time. */
function signatureValid(hook: ReceivedHook<unknown>, secret: string): boolean {
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(hook.body).digest('hex')}`);
  const given = Buffer.from(String(hook.headers['x-mailtrail-signature'] ?? ''));
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Waits for a condition that may need the disk; generous, for a loaded machine. */
async function until(predicate: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const eventFiles = async (dir: string): Promise<string[]> => (await readdir(dir)).sort();

describe('delivery events: what an endpoint receives', () => {
  it('POSTs the event as JSON, signed like the alert webhooks, so the receiver can verify it came from mailtrail', async () => {
    const hook = await receiver();
    const { events } = outbox(await outboxDir(), [{ url: hook.url, secret: SECRET }]);
    await events.start();
    const id = await events.emit(event());
    await hook.waitFor((r) => r.length === 1);
    const got = hook.received[0]!;
    expect(signatureValid(got, SECRET)).toBe(true);
    expect(signatureValid(got, 'another secret')).toBe(false);
    expect(got.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(got.headers['x-mailtrail-event']).toBe('delivered');
    expect(got.headers['x-mailtrail-delivery']).toBe(id);
    expect(got.json.id).toBe(id);
  });

  it('carries the event id, mailtrail id, envelope and recipients, Message-ID, reply, class, attempt and times', async () => {
    const hook = await receiver();
    const { events } = outbox(await outboxDir(), [{ url: hook.url, secret: SECRET }]);
    await events.start();
    const spoolId = ids.next();
    const reply = { code: 451, enhanced: '4.7.1', text: 'Too many messages, slow down' };
    const id = await events.emit(
      event({
        type: 'deferred',
        spoolId,
        recipients: [
          { address: 'bob@example.net', status: 'deferred', reply },
          { address: 'ann@example.net', status: 'delivered', reply: { code: 250, enhanced: '2.1.5', text: 'Ok' } },
        ],
        attempt: 2,
        reply,
        class: 'throttled',
        nextAttemptAt: new Date('2026-03-01T10:10:00Z'),
        time: new Date('2026-03-01T10:05:00Z'),
      }),
    );
    await hook.waitFor((r) => r.length === 1);
    expect(hook.received[0]!.json).toEqual({
      v: 1,
      id,
      type: 'deferred',
      time: '2026-03-01T10:05:00.000Z',
      host: 'relay.example.org',
      spoolId,
      messageId: '<inv-42@example.com>',
      envelope: {
        from: 'bounces@example.com',
        recipients: [
          { address: 'bob@example.net', status: 'deferred', reply },
          { address: 'ann@example.net', status: 'delivered', reply: { code: 250, enhanced: '2.1.5', text: 'Ok' } },
        ],
      },
      attempt: 2,
      upstream: 'ses',
      reply,
      class: 'throttled',
      nextAttemptAt: '2026-03-01T10:10:00.000Z',
      reason: null,
    });
  });

  it('uses the id it is given (the trail record of the same event), so a repeat after a crash is a duplicate by id', async () => {
    const hook = await receiver();
    const dir = await outboxDir();
    const { events } = outbox(dir, [{ url: hook.url, secret: SECRET }]);
    const recordId = ids.next();
    await events.emit(event({ id: recordId }));
    await events.emit(event({ id: recordId }));
    expect(await eventFiles(dir)).toHaveLength(1);
    await events.start();
    await hook.waitFor((r) => r.length === 1);
    expect(hook.received[0]!.json.id).toBe(recordId);
  });

  it('makes the outbox folder when an event is emitted before start', async () => {
    const hook = await receiver();
    const dir = join(await outboxDir(), 'spool', 'events');
    const { events } = outbox(dir, [{ url: hook.url, secret: SECRET }]);
    const id = await events.emit(event());
    expect(await eventFiles(dir)).toHaveLength(1);
    await events.start();
    await hook.waitFor((r) => r.length === 1);
    expect(hook.received[0]!.json.id).toBe(id);
  });

  it('refuses an id that is not a ULID', async () => {
    const { events } = outbox(await outboxDir(), [{ url: 'http://127.0.0.1:1/hook', secret: null }]);
    await expect(events.emit(event({ id: '../../etc/passwd' }))).rejects.toThrow(/not a ULID/);
  });
});

describe('delivery events: at least once', () => {
  it('has the event on disk when emit returns, and removes it after the 2xx', async () => {
    const hook = await receiver();
    const dir = await outboxDir();
    const { events, seen } = outbox(dir, [{ url: hook.url, secret: SECRET, name: 'app' }]);
    await events.start();
    hook.mode = 'hang';
    const id = await events.emit(event());
    expect(await eventFiles(dir)).toEqual([expect.stringMatching(new RegExp(`^${id}\\.delivered\\.[0-9a-f]{16}\\.json$`))]);
    hook.mode = 'ok';
    await hook.waitFor((r) => r.length === 1, 15_000);
    await until(() => seen['delivery-event-sent'].length === 1);
    expect(await eventFiles(dir)).toEqual([]);
    expect(seen['delivery-event-sent']).toEqual([expect.objectContaining({ endpoint: 'app', id, type: 'delivered' })]);
    expect(events.pending().get('app')).toBe(0);
  });

  it('retries after a 500 with the same event id until the endpoint takes it', async () => {
    const hook = await receiver((n) => (n <= 2 ? 500 : 'ok'));
    const { events, seen } = outbox(await outboxDir(), [{ url: hook.url, secret: SECRET, name: 'app' }]);
    await events.start();
    const id = await events.emit(event());
    await until(() => seen['delivery-event-sent'].length === 1);
    expect(hook.requests).toBe(3);
    expect(hook.received[0]!.headers['x-mailtrail-delivery']).toBe(id);
    expect(seen['delivery-event-failed'].map((f) => [f.id, f.attempt, f.error])).toEqual([
      [id, 1, 'webhook answered 500'],
      [id, 2, 'webhook answered 500'],
    ]);
    expect(seen['delivery-event-sent']).toEqual([expect.objectContaining({ id, attempts: 3 })]);
  });

  it('waits longer after each failure: exponential backoff', async () => {
    const times: number[] = [];
    const hook = await receiver((n) => {
      times.push(Date.now());
      return n <= 4 ? 503 : 'ok';
    });
    const { events } = outbox(await outboxDir(), [{ url: hook.url, secret: SECRET }], { retryFirst: 60, retryMax: 10_000 });
    await events.start();
    await events.emit(event());
    await hook.waitFor((r) => r.length === 1);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    // Jitter takes each wait to between half and all of 60, 120, 240, 480 ms.
    expect(gaps[0]).toBeGreaterThanOrEqual(25);
    expect(gaps[3]).toBeGreaterThanOrEqual(235);
    expect(gaps[3]!).toBeGreaterThan(gaps[0]!);
  });

  it('retries after a timeout, when the endpoint never answers', async () => {
    const hook = await receiver((n) => (n === 1 ? 'hang' : 'ok'));
    const { events, seen } = outbox(await outboxDir(), [{ url: hook.url, secret: SECRET }], { timeout: 300 });
    await events.start();
    const id = await events.emit(event());
    await hook.waitFor((r) => r.length === 1);
    expect(seen['delivery-event-failed'][0]).toMatchObject({ id, attempt: 1, error: expect.stringMatching(/ETIMEDOUT.*300 ms/) as string });
    expect(hook.received[0]!.json.id).toBe(id);
  });

  it('sends at start-up what a crashed process left in the outbox, and not what it was still writing', async () => {
    const hook = await receiver();
    const dir = await outboxDir();
    const endpoint = { url: hook.url, secret: SECRET };
    // The first process writes five events and dies before sending any (never started, never stopped).
    const crashed = outbox(dir, [endpoint]).events;
    const emitted = [];
    for (let i = 0; i < 5; i++) emitted.push(await crashed.emit(event()));
    // ... and one write it never finished.
    await writeFile(join(dir, `${ids.next()}.delivered.0123456789abcdef.json.tmp`), '{"torn":');
    const { events } = outbox(dir, [endpoint]);
    await events.start();
    await hook.waitFor((r) => r.length === 5);
    expect(hook.received.map((r) => r.json.id).sort()).toEqual(emitted.sort());
    expect(hook.received.every((r) => signatureValid(r, SECRET))).toBe(true);
    await until(async () => (await eventFiles(dir)).length === 0);
  });

  it('delivers each event id at least once when the endpoint fails now and then; order is not promised', async () => {
    const hook = await receiver((n) => (n % 3 === 0 ? 500 : 'ok'));
    const { events } = outbox(await outboxDir(), [{ url: hook.url, secret: SECRET }]);
    await events.start();
    const emitted = await Promise.all(Array.from({ length: 30 }, () => events.emit(event())));
    await hook.waitFor((r) => new Set(r.map((h) => h.json.id)).size === 30, 20_000);
    expect([...new Set(hook.received.map((r) => r.json.id))].sort()).toEqual([...emitted].sort());
  });

  it('keeps the pending events of a named endpoint when its URL changes across a restart', async () => {
    const dir = await outboxDir();
    const before = outbox(dir, [{ url: 'http://127.0.0.1:1/old', secret: SECRET, name: 'billing-app' }]).events;
    const id = await before.emit(event());
    const hook = await receiver();
    const { events } = outbox(dir, [{ url: hook.url, secret: SECRET, name: 'billing-app' }]);
    await events.start();
    await hook.waitFor((r) => r.length === 1);
    expect(hook.received[0]!.json.id).toBe(id);
  });

  it('leaves unsent events in the outbox on stop, for the next start', async () => {
    const hook = await receiver('hang');
    const dir = await outboxDir();
    const { events } = outbox(dir, [{ url: hook.url, secret: SECRET }]);
    await events.start();
    await events.emit(event());
    await until(() => hook.requests === 1);
    await events.stop();
    expect(await eventFiles(dir)).toHaveLength(1);
  });
});

describe('delivery events: a dead endpoint', () => {
  it('never holds up another endpoint, keeps few events in memory and probes it one POST at a time', async () => {
    const dead = await receiver('hang');
    const live = await receiver();
    const dir = await outboxDir();
    const { events, seen } = outbox(
      dir,
      [
        { url: dead.url, secret: SECRET, name: 'dead' },
        { url: live.url, secret: SECRET, name: 'live' },
      ],
      { timeout: 200, maxInMemory: 5, concurrency: 4 },
    );
    await events.start();
    const emitted = [];
    for (let i = 0; i < 40; i++) emitted.push(await events.emit(event()));
    await live.waitFor((r) => r.length === 40, 20_000);
    expect(events.pending().get('dead')).toBe(40);
    // Once the first POSTs (`concurrency` of them) have failed, one at a time.
    const failedDead = (): number => seen['delivery-event-failed'].filter((f) => f.endpoint === 'dead').length;
    await until(() => failedDead() >= 5);
    let mostOpen = 0;
    await until(() => {
      mostOpen = Math.max(mostOpen, dead.open);
      return failedDead() >= 9;
    });
    expect(mostOpen).toBe(1);
    expect(events.inMemory().get('dead')).toBeLessThanOrEqual(5);
    // When it comes back, everything that waited on disk is read in and sent.
    dead.mode = 'ok';
    await dead.waitFor((r) => new Set(r.map((h) => h.json.id)).size === 40, 20_000);
    expect([...new Set(dead.received.map((r) => r.json.id))].sort()).toEqual(emitted.sort());
    await until(async () => (await eventFiles(dir)).length === 0);
  });

  it('counts an endpoint that refuses connections as failing, and retries it', async () => {
    const { events, seen } = outbox(await outboxDir(), [{ url: 'http://127.0.0.1:1/hook', secret: SECRET, name: 'nobody' }]);
    await events.start();
    await events.emit(event());
    await until(() => seen['delivery-event-failed'].length >= 2);
    expect(seen['delivery-event-failed'][0]).toMatchObject({ endpoint: 'nobody', attempt: 1, error: expect.stringMatching(/ECONNREFUSED/) as string });
  });

  it('drops an event still failing at the age limit, removes its file and says so', async () => {
    const hook = await receiver(500);
    const dir = await outboxDir();
    const { events, seen } = outbox(dir, [{ url: hook.url, secret: SECRET, name: 'app' }], { maxAge: 400 });
    await events.start();
    const id = await events.emit(event());
    await until(() => seen['delivery-event-dropped'].length === 1);
    expect(seen['delivery-event-dropped'][0]).toMatchObject({ endpoint: 'app', id, reason: 'max-age' });
    expect(await eventFiles(dir)).toEqual([]);
    expect(seen['delivery-event-pending'].at(-1)).toEqual({ endpoint: 'app', pending: 0 });
  });

  it("drops all of a failing endpoint's events past the age limit at once, not one per probe", async () => {
    const hook = await receiver(500);
    const dir = await outboxDir();
    const { events, seen } = outbox(dir, [{ url: hook.url, secret: SECRET, name: 'app' }], {
      maxAge: 400,
      maxInMemory: 2,
      retryFirst: 2_000,
      retryMax: 60_000,
    });
    await events.start();
    for (let i = 0; i < 10; i++) await events.emit(event());
    await until(() => seen['delivery-event-dropped'].length === 10);
    expect(await eventFiles(dir)).toEqual([]);
    expect(events.pending().get('app')).toBe(0);
    // A few probes, not one per event.
    expect(hook.requests).toBeLessThan(10);
  });

  it('publishes the pending count of each endpoint as it changes, for the metrics', async () => {
    const hook = await receiver('hang');
    const dir = await outboxDir();
    const { events, seen } = outbox(dir, [{ url: hook.url, secret: SECRET, name: 'app' }]);
    await events.emit(event());
    await events.start();
    await events.emit(event());
    expect(seen['delivery-event-pending']).toEqual([
      { endpoint: 'app', pending: 1 },
      { endpoint: 'app', pending: 2 },
    ]);
    hook.mode = 'ok';
    await until(() => seen['delivery-event-pending'].at(-1)?.pending === 0);
  });
});
