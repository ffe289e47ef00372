import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { EventPublisher } from '../event-bus.js';
import type { IdGenerator } from '../ids.js';
import type { Logger } from '../logger.js';
import { describeAnswer, describePostError, isSuccess, postSigned } from '../webhook/signed-post.js';
import { eventBody, type DeliveryEventInput } from './delivery-event.js';
import { DeliveryOutbox, isEventId, type OutboxEntry } from './delivery-outbox.js';
import type { DeliveryOutboxEvents } from './outbox-events.js';

/** One webhook that receives the delivery events (config `spool.events`). */
export interface DeliveryEventEndpoint {
  readonly url: string;
  /** HMAC-SHA256 key of `X-Mailtrail-Signature`; null sends unsigned. */
  readonly secret: string | null;
  /** Label in logs and metrics, and what ties pending events to the endpoint across restarts; the URL's host when absent. */
  readonly name?: string;
}

export interface DeliveryEventsOptions {
  /** The outbox folder, `<spool.dir>/events`. */
  readonly dir: string;
  readonly endpoints: readonly DeliveryEventEndpoint[];
  /** mailtrail's host name (config `hostname`), in every body. */
  readonly host: string;
  readonly ids: IdGenerator;
  readonly bus: EventPublisher<DeliveryOutboxEvents>;
  readonly log: Logger;
  /** One POST's deadline, ms. */
  readonly timeout?: number;
  /** POSTs in flight to one endpoint at once (one while it is failing). */
  readonly concurrency?: number;
  /** First retry delay, ms; doubled per failure up to `retryMax`, each times a random factor in [0.5, 1]. */
  readonly retryFirst?: number;
  readonly retryMax?: number;
  /** An event that still fails this long after it was made is dropped (logged, counted), ms. */
  readonly maxAge?: number;
  /** Pending events of one endpoint held in memory; the rest wait on disk and are read in as these drain. */
  readonly maxInMemory?: number;
}

type Tuning = Required<Pick<DeliveryEventsOptions, 'timeout' | 'concurrency' | 'retryFirst' | 'retryMax' | 'maxAge' | 'maxInMemory'>>;

/** The tuning a demanding user gets without asking (docs/spool.md, "Delivery events"). */
export const DELIVERY_EVENT_DEFAULTS: Tuning = {
  timeout: 10_000,
  concurrency: 4,
  retryFirst: 5_000,
  retryMax: 5 * 60_000,
  maxAge: 3 * 24 * 3_600_000,
  maxInMemory: 1_000,
};

/** An event waiting for one endpoint, in memory. */
interface Item {
  readonly entry: OutboxEntry;
  /** Tries since start-up. */
  attempts: number;
  /** Not before this (epoch ms). */
  nextAt: number;
  sending: boolean;
}

/** One endpoint: its window of pending events in memory, its health, its own timer. */
interface Lane {
  readonly label: string;
  readonly key: string;
  readonly url: URL;
  readonly secret: string | null;
  readonly agent: HttpAgent | HttpsAgent;
  readonly window: Map<string, Item>;
  /** Files waiting in the outbox for this endpoint (in memory or not). */
  pending: number;
  /** Some of its files on disk are not in the window: read more in as it drains. */
  overflow: boolean;
  refilling: boolean;
  /** Dropping the events past the age limit. */
  sweeping: boolean;
  inFlight: Set<Promise<void>>;
  /** Failed tries in a row: while above 0, one POST at a time, after a pause. */
  failures: number;
  pausedUntil: number;
  timer: NodeJS.Timeout | null;
}

/** What ties pending files to an endpoint: a hash of its name, else of its URL (never the URL itself on disk). */
export function deliveryEndpointKey(endpoint: DeliveryEventEndpoint): string {
  return createHash('sha256')
    .update(endpoint.name ?? endpoint.url)
    .digest('hex')
    .slice(0, 16);
}

/**
 * Per-message delivery events to the applications' webhooks (docs/spool.md, "Delivery events"),
 * at least once. `emit` writes the event to the outbox on disk for every endpoint and returns once
 * it is durable; each endpoint then has its own lane that POSTs from the outbox, signed like the
 * alert webhooks, and removes an event's file after a 2xx. A failed POST is retried with
 * exponential backoff and jitter, for the event and for the endpoint (a failing endpoint gets one
 * POST at a time, after a growing pause), until the event is `maxAge` old. A dead endpoint holds at
 * most `maxInMemory` events in memory and `concurrency` sockets; everything else waits on disk and
 * nothing else waits for it. Pending events found at start-up are sent. Order is not kept: a
 * receiver orders by `time` and drops duplicates by `id`.
 */
export class DeliveryEvents {
  readonly #outbox: DeliveryOutbox;
  readonly #lanes: Lane[];
  readonly #opts: DeliveryEventsOptions & Tuning;
  #started = false;
  /** While start() reads the outbox: emits wait for it, so each file is counted once. */
  #starting: Promise<void> | null = null;
  #stop = new AbortController();

  constructor(options: DeliveryEventsOptions) {
    this.#opts = { ...DELIVERY_EVENT_DEFAULTS, ...stripUndefined(options) };
    this.#outbox = new DeliveryOutbox(options.dir);
    const labels = new Map<string, number>();
    this.#lanes = options.endpoints.map((endpoint) => {
      const url = new URL(endpoint.url);
      const base = endpoint.name ?? url.host;
      const seen = (labels.get(base) ?? 0) + 1;
      labels.set(base, seen);
      const agentOptions = { keepAlive: true, maxSockets: this.#opts.concurrency };
      return {
        label: seen === 1 ? base : `${base}#${seen}`,
        key: deliveryEndpointKey(endpoint),
        url,
        secret: endpoint.secret,
        agent: url.protocol === 'https:' ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions),
        window: new Map(),
        pending: 0,
        overflow: false,
        refilling: false,
        sweeping: false,
        inFlight: new Set(),
        failures: 0,
        pausedUntil: 0,
        timer: null,
      };
    });
  }

  /**
   * Prepares the outbox (crash leftovers removed), counts and reads in the pending events of every
   * endpoint, and starts sending. Events of endpoints no longer configured stay on disk (they are
   * sent if the endpoint comes back under the same name or URL) and are removed past the age limit.
   */
  start(): Promise<void> {
    if (this.#started) return Promise.resolve();
    this.#starting ??= this.#start().finally(() => {
      this.#starting = null;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    await this.#outbox.prepare();
    const byKey = new Map(this.#lanes.map((l) => [l.key, l]));
    const orphans = { kept: 0, removed: 0 };
    for await (const entry of this.#outbox.entries()) {
      const lane = byKey.get(entry.key);
      if (lane !== undefined) {
        lane.pending += 1;
        this.#admit(lane, entry);
      } else if (Date.now() - entry.createdAt > this.#opts.maxAge) {
        if (await this.#outbox.remove(entry.name)) orphans.removed += 1;
      } else orphans.kept += 1;
    }
    if (orphans.kept + orphans.removed > 0) {
      this.#opts.log.warn({ ...orphans, dir: this.#outbox.dir }, 'delivery events for endpoints no longer configured: kept until the age limit');
    }
    this.#started = true;
    for (const lane of this.#lanes) {
      this.#publishPending(lane);
      this.#pump(lane);
    }
  }

  /**
   * Records an event for every endpoint; resolves with its id once it is on disk (fsynced). Rejects
   * when it cannot be written (a full disk, say): the caller decides whether that stops anything.
   */
  async emit(input: DeliveryEventInput): Promise<string> {
    const time = input.time ?? new Date();
    const id = input.id ?? this.#opts.ids.next(time.getTime());
    if (!isEventId(id)) throw new Error(`delivery event id ${JSON.stringify(id)} is not a ULID`);
    if (this.#lanes.length === 0) return id;
    if (this.#starting !== null) await this.#starting;
    const body = Buffer.from(JSON.stringify(eventBody(input, id, time, this.#opts.host)));
    const written = await this.#outbox.write(
      id,
      input.type,
      this.#lanes.map((l) => l.key),
      body,
    );
    // Before start() the files are only written: start() counts and reads in what it finds.
    if (!this.#started) return id;
    for (const entry of written) {
      const lane = this.#lanes.find((l) => l.key === entry.key)!;
      lane.pending += 1;
      this.#publishPending(lane);
      this.#admit(lane, entry);
      this.#pump(lane);
    }
    return id;
  }

  /** Events waiting in the outbox, by endpoint label (for gauges pulled at scrape time). */
  pending(): ReadonlyMap<string, number> {
    return new Map(this.#lanes.map((l) => [l.label, l.pending]));
  }

  /** Events held in memory, by endpoint label: at most `maxInMemory` each. */
  inMemory(): ReadonlyMap<string, number> {
    return new Map(this.#lanes.map((l) => [l.label, l.window.size]));
  }

  /**
   * Stops sending: waits up to `graceMs` for POSTs in flight, then aborts them. Nothing is lost:
   * unsent events stay in the outbox for the next start.
   */
  async stop(graceMs = 0): Promise<void> {
    this.#started = false;
    for (const lane of this.#lanes) if (lane.timer !== null) clearTimeout(lane.timer);
    const inFlight = (): Promise<void>[] => this.#lanes.flatMap((l) => [...l.inFlight]);
    if (graceMs > 0 && inFlight().length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(inFlight()), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
    }
    this.#stop.abort();
    await Promise.allSettled(inFlight());
    for (const lane of this.#lanes) lane.agent.destroy();
  }

  /** Takes an entry into the lane's window when there is room; otherwise it waits on disk. */
  #admit(lane: Lane, entry: OutboxEntry): void {
    if (lane.window.has(entry.name)) return;
    if (lane.window.size >= this.#opts.maxInMemory) {
      lane.overflow = true;
      return;
    }
    lane.window.set(entry.name, { entry, attempts: 0, nextAt: 0, sending: false });
  }

  /** Starts the POSTs that are due and allowed; arms the lane's timer for the next one. */
  #pump(lane: Lane): void {
    if (!this.#started) return;
    if (lane.timer !== null) {
      clearTimeout(lane.timer);
      lane.timer = null;
    }
    const now = Date.now();
    if (now < lane.pausedUntil) return this.#arm(lane, lane.pausedUntil);
    const limit = lane.failures > 0 ? 1 : this.#opts.concurrency;
    let next: Item | null = null;
    while (lane.inFlight.size < limit) {
      next = null;
      for (const item of lane.window.values()) if (!item.sending && (next === null || item.nextAt < next.nextAt)) next = item;
      if (next === null || next.nextAt > now) break;
      this.#send(lane, next);
    }
    if (next !== null && lane.inFlight.size < limit) this.#arm(lane, next.nextAt);
  }

  #arm(lane: Lane, at: number): void {
    // Unref'd: the outbox is on disk, so a pending retry is no reason to keep the process alive.
    lane.timer = setTimeout(() => this.#pump(lane), Math.max(0, at - Date.now())).unref();
  }

  #send(lane: Lane, item: Item): void {
    item.sending = true;
    const done = this.#post(lane, item).finally(() => {
      lane.inFlight.delete(done);
      if (!this.#started) return;
      void this.#refill(lane);
      this.#pump(lane);
    });
    lane.inFlight.add(done);
  }

  async #post(lane: Lane, item: Item): Promise<void> {
    const { entry } = item;
    const started = Date.now();
    item.attempts += 1;
    let error: string;
    try {
      const body = await this.#outbox.read(entry.name);
      if (body === null) {
        // Sent and removed meanwhile (a refill read its name just before): nothing to do.
        lane.window.delete(entry.name);
        return;
      }
      const answer = await this.#postOnce(lane, entry, body);
      if (isSuccess(answer)) return await this.#sent(lane, item, Date.now() - started);
      error = describeAnswer(answer);
    } catch (err) {
      error = describePostError(err);
    }
    if (this.#stop.signal.aborted) {
      item.sending = false;
      return;
    }
    await this.#failed(lane, item, error);
  }

  async #postOnce(lane: Lane, entry: OutboxEntry, body: Buffer): ReturnType<typeof postSigned> {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(Object.assign(new Error(`no answer within ${this.#opts.timeout} ms`), { code: 'ETIMEDOUT' })),
      this.#opts.timeout,
    );
    const onStop = (): void => controller.abort(new Error('mailtrail is shutting down'));
    this.#stop.signal.addEventListener('abort', onStop, { once: true });
    try {
      return await postSigned({
        url: lane.url,
        body,
        secret: lane.secret,
        headers: { 'x-mailtrail-event': entry.type, 'x-mailtrail-delivery': entry.id },
        signal: controller.signal,
        agent: lane.agent,
      });
    } finally {
      clearTimeout(timer);
      this.#stop.signal.removeEventListener('abort', onStop);
    }
  }

  async #sent(lane: Lane, item: Item, ms: number): Promise<void> {
    await this.#removeFile(lane, item.entry);
    if (lane.failures > 0) this.#opts.log.info({ endpoint: lane.label, failures: lane.failures }, 'delivery event endpoint answering again');
    lane.failures = 0;
    lane.pausedUntil = 0;
    this.#opts.bus.publish('delivery-event-sent', { endpoint: lane.label, id: item.entry.id, type: item.entry.type, attempts: item.attempts, ms });
  }

  async #failed(lane: Lane, item: Item, error: string): Promise<void> {
    const { entry } = item;
    const now = Date.now();
    lane.failures += 1;
    lane.pausedUntil = now + this.#backoff(lane.failures);
    const expired = now - entry.createdAt >= this.#opts.maxAge;
    item.nextAt = now + this.#backoff(item.attempts);
    item.sending = false;
    // One warning when an endpoint starts failing, not one per event: a dead endpoint would flood the log.
    const log = lane.failures === 1 ? this.#opts.log.warn.bind(this.#opts.log) : this.#opts.log.debug.bind(this.#opts.log);
    log({ endpoint: lane.label, event: entry.id, attempt: item.attempts, error }, 'delivery event not taken');
    this.#opts.bus.publish('delivery-event-failed', {
      endpoint: lane.label,
      id: entry.id,
      type: entry.type,
      attempt: item.attempts,
      error,
      retryAt: expired ? null : item.nextAt,
    });
    if (!expired) return;
    this.#opts.log.error(
      { endpoint: lane.label, event: entry.id, type: entry.type, attempts: item.attempts, error },
      'delivery event dropped: still failing at the age limit',
    );
    await this.#drop(lane, entry, item.attempts);
    await this.#dropExpired(lane);
  }

  async #drop(lane: Lane, entry: OutboxEntry, attempts: number): Promise<void> {
    await this.#removeFile(lane, entry);
    this.#opts.bus.publish('delivery-event-dropped', { endpoint: lane.label, id: entry.id, type: entry.type, attempts, reason: 'max-age' });
  }

  /**
   * One event reached the age limit while its endpoint fails: the endpoint's other events past the
   * limit go too, without a try each. A dead endpoint is probed one event at a time, so waiting for
   * each to come up would keep them on disk long past the limit.
   */
  async #dropExpired(lane: Lane): Promise<void> {
    if (lane.sweeping) return;
    lane.sweeping = true;
    let dropped = 0;
    try {
      const limit = Date.now() - this.#opts.maxAge;
      for await (const entry of this.#outbox.entries()) {
        if (entry.key !== lane.key || entry.createdAt > limit) continue;
        const item = lane.window.get(entry.name);
        if (item?.sending) continue;
        await this.#drop(lane, entry, item?.attempts ?? 0);
        dropped += 1;
      }
    } catch (err) {
      this.#opts.log.error({ err, endpoint: lane.label }, 'delivery event outbox could not be read');
    } finally {
      lane.sweeping = false;
    }
    if (dropped > 0) this.#opts.log.error({ endpoint: lane.label, dropped }, 'delivery events dropped: older than the age limit, endpoint failing');
  }

  async #removeFile(lane: Lane, entry: OutboxEntry): Promise<void> {
    lane.window.delete(entry.name);
    if (await this.#outbox.remove(entry.name).catch(() => false)) {
      lane.pending = Math.max(0, lane.pending - 1);
      this.#publishPending(lane);
    }
  }

  /** Reads in events that waited on disk once the window has drained to half. */
  async #refill(lane: Lane): Promise<void> {
    if (!lane.overflow || lane.refilling || lane.window.size > this.#opts.maxInMemory / 2) return;
    lane.refilling = true;
    lane.overflow = false;
    try {
      for await (const entry of this.#outbox.entries()) {
        if (entry.key !== lane.key) continue;
        this.#admit(lane, entry);
        if (lane.overflow) break;
      }
    } catch (err) {
      lane.overflow = true;
      this.#opts.log.error({ err, endpoint: lane.label }, 'delivery event outbox could not be read');
    } finally {
      lane.refilling = false;
    }
    this.#pump(lane);
  }

  #backoff(failures: number): number {
    const base = Math.min(this.#opts.retryMax, this.#opts.retryFirst * 2 ** (failures - 1));
    return Math.round(base * (0.5 + Math.random() * 0.5));
  }

  #publishPending(lane: Lane): void {
    this.#opts.bus.publish('delivery-event-pending', { endpoint: lane.label, pending: lane.pending });
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
