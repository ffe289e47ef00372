import { EventEmitter } from 'node:events';
import type { RejectRecord, RelayRecord, SessionRecord } from '../audit/records.js';

/** What the relay publishes; observers (metrics, alerts, recent lookups) subscribe. */
export interface RelayEvents {
  relay: [RelayRecord];
  reject: [RejectRecord];
  session: [SessionRecord];
}

/**
 * In-process bus between the relay path and everything that observes it. The relay path only ever
 * calls `publish`; a subscriber that throws is logged and detached from that event, never allowed to
 * break or slow a transaction (ARCHITECTURE.md, step 7).
 */
export class EventBus {
  #emitter = new EventEmitter();
  #onSubscriberError: (err: unknown, event: string) => void;

  constructor(onSubscriberError: (err: unknown, event: string) => void) {
    this.#onSubscriberError = onSubscriberError;
    this.#emitter.setMaxListeners(50);
  }

  publish<K extends keyof RelayEvents>(event: K, ...args: RelayEvents[K]): void {
    for (const listener of this.#emitter.listeners(event)) {
      try {
        (listener as (...a: RelayEvents[K]) => void)(...args);
      } catch (err) {
        this.#onSubscriberError(err, event);
      }
    }
  }

  subscribe<K extends keyof RelayEvents>(event: K, listener: (...args: RelayEvents[K]) => void): () => void {
    this.#emitter.on(event, listener as (...a: unknown[]) => void);
    return () => this.#emitter.off(event, listener as (...a: unknown[]) => void);
  }
}
