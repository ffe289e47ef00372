import type { AlertDeliveryConfig } from '../../config/types.js';
import type { EventPublisher } from '../../event-bus.js';
import type { Logger } from '../../logger.js';
import type { AlertNotification } from './notification.js';
import { ERR } from '../../error-codes.js';

/** How one notification to one sink ended; published on the bus as `alert-delivery`. */
export interface AlertDelivery {
  readonly sink: string;
  readonly result: 'sent' | 'failed' | 'dropped';
  /** Tries made (0 when dropped unsent). */
  readonly attempts: number;
  /** The alert record the notification belongs to. */
  readonly id: string;
  readonly error: string | null;
}

/** What the delivery queue publishes: one notification to one sink ended (sent, failed, dropped). */
export interface AlertDeliveryEvents {
  'alert-delivery': [AlertDelivery];
}

/** A way to deliver a notification; rejects on failure. `signal` fires on timeout or shutdown. */
export interface AlertSink {
  readonly name: string;
  send(notification: AlertNotification, signal: AbortSignal): Promise<void>;
}

/** A failure retrying cannot fix (a 4xx from a webhook, say): give up at once. */
export class PermanentSinkError extends Error {
  readonly code = ERR.SINK_PERMANENT;
}

/** Upper bound on one backoff wait, whatever the retry count. */
const MAX_BACKOFF_MS = 60_000;

interface SinkLane {
  readonly sink: AlertSink;
  readonly queue: AlertNotification[];
  working: Promise<void> | null;
}

/**
 * Delivers notifications to sinks in the background. Each sink has its own bounded queue and one
 * worker, so a hanging sink delays only its own queue: never another sink, never relaying. A full
 * queue drops the newest notice (the older ones describe the start of the incident). Each try has a
 * timeout; failures are retried with exponential backoff, then logged and counted.
 */
export class DeliveryQueue {
  #lanes = new Map<string, SinkLane>();
  #limits: AlertDeliveryConfig;
  #bus: EventPublisher<AlertDeliveryEvents>;
  #log: Logger;
  #stop = new AbortController();

  constructor(sinks: readonly AlertSink[], limits: AlertDeliveryConfig, bus: EventPublisher<AlertDeliveryEvents>, log: Logger) {
    for (const sink of sinks) this.#lanes.set(sink.name, { sink, queue: [], working: null });
    this.#limits = limits;
    this.#bus = bus;
    this.#log = log;
  }

  /** Queues `notification` for `sinkName`; returns at once. */
  enqueue(sinkName: string, notification: AlertNotification): void {
    const lane = this.#lanes.get(sinkName);
    if (!lane || this.#stop.signal.aborted) return;
    if (lane.queue.length >= this.#limits.queueSize) {
      this.#log.error({ sink: sinkName, alert: notification.id, queueSize: this.#limits.queueSize }, 'alert sink queue full; notification dropped');
      this.#report({ sink: sinkName, result: 'dropped', attempts: 0, id: notification.id, error: 'queue full' });
      return;
    }
    lane.queue.push(notification);
    lane.working ??= this.#work(lane).finally(() => {
      lane.working = null;
    });
  }

  /** Notifications not yet delivered, all sinks together. */
  get pending(): number {
    let n = 0;
    for (const lane of this.#lanes.values()) n += lane.queue.length + (lane.working ? 1 : 0);
    return n;
  }

  /**
   * Waits up to `graceMs` for queued notifications (a resolve sent during shutdown, say), then
   * aborts what is left. Never waits longer than that.
   */
  async stop(graceMs: number): Promise<void> {
    const busy = [...this.#lanes.values()].map((l) => l.working).filter((w): w is Promise<void> => w !== null);
    if (busy.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(busy), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
    }
    this.#stop.abort();
    for (const lane of this.#lanes.values()) {
      for (const n of lane.queue.splice(0)) this.#report({ sink: lane.sink.name, result: 'dropped', attempts: 0, id: n.id, error: 'shutting down' });
    }
    await Promise.allSettled([...this.#lanes.values()].flatMap((l) => (l.working ? [l.working] : [])));
  }

  async #work(lane: SinkLane): Promise<void> {
    for (let n = lane.queue.shift(); n !== undefined; n = lane.queue.shift()) {
      await this.#deliver(lane.sink, n);
    }
  }

  async #deliver(sink: AlertSink, n: AlertNotification): Promise<void> {
    const tries = 1 + this.#limits.retries;
    let lastError = '';
    for (let attempt = 1; attempt <= tries; attempt++) {
      if (this.#stop.signal.aborted) break;
      try {
        await this.#tryOnce(sink, n);
        this.#report({ sink: sink.name, result: 'sent', attempts: attempt, id: n.id, error: null });
        return;
      } catch (err) {
        lastError = describe(err);
        const permanent = err instanceof PermanentSinkError;
        this.#log.warn({ sink: sink.name, alert: n.id, attempt, error: lastError }, 'alert delivery failed');
        if (permanent || attempt === tries) break;
        await sleep(Math.min(this.#limits.backoff * 2 ** (attempt - 1), MAX_BACKOFF_MS), this.#stop.signal);
      }
    }
    this.#log.error({ sink: sink.name, alert: n.id, state: n.state, rule: n.rule, error: lastError }, 'alert not delivered');
    this.#report({ sink: sink.name, result: 'failed', attempts: tries, id: n.id, error: lastError });
  }

  async #tryOnce(sink: AlertSink, n: AlertNotification): Promise<void> {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(Object.assign(new Error(`no answer within ${this.#limits.timeout} ms`), { code: 'ETIMEDOUT' })),
      this.#limits.timeout,
    );
    const onStop = (): void => controller.abort(Object.assign(new Error('mailtrail is shutting down'), { code: ERR.SHUTDOWN }));
    this.#stop.signal.addEventListener('abort', onStop, { once: true });
    try {
      // The race makes the timeout hold even if a sink ignores its signal.
      await Promise.race([sink.send(n, controller.signal), aborted(controller.signal)]);
    } finally {
      clearTimeout(timer);
      this.#stop.signal.removeEventListener('abort', onStop);
      controller.abort();
    }
  }

  #report(delivery: AlertDelivery): void {
    this.#bus.publish('alert-delivery', delivery);
  }
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise<never>((_resolve, reject) => {
    const fail = (): void => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as Error & { code?: string }).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
