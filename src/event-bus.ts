import { EventEmitter } from 'node:events';

/** Event name → the arguments its subscribers receive. Each producer declares its own map. */
export type EventMap<E> = { [K in keyof E]: unknown[] };

/** The side of the bus a producer sees: it can publish its own events and nothing else. */
export interface EventPublisher<E extends EventMap<E>> {
  publish<K extends keyof E & string>(event: K, ...args: E[K]): void;
}

/**
 * In-process bus between the relay path and everything that observes it. Producers (the recorder,
 * the router, the probes, the alert delivery) each declare the events they publish and see only
 * `publish`; observers (metrics, readiness, alerts, recent lookups) subscribe to the union the
 * composition root builds. A subscriber that throws is reported through `onSubscriberError` and the
 * remaining subscribers still run: a broken observer never breaks or slows a transaction
 * (docs/design.md, "Observers never slow a reply"). It stays subscribed: one bad record must not
 * blind an observer for the rest of the process's life.
 */
export class EventBus<E extends EventMap<E>> implements EventPublisher<E> {
  #emitter = new EventEmitter();
  #onSubscriberError: (err: unknown, event: string) => void;

  constructor(onSubscriberError: (err: unknown, event: string) => void) {
    this.#onSubscriberError = onSubscriberError;
    this.#emitter.setMaxListeners(50);
  }

  publish<K extends keyof E & string>(event: K, ...args: E[K]): void {
    for (const listener of this.#emitter.listeners(event)) {
      try {
        (listener as (...a: E[K]) => void)(...args);
      } catch (err) {
        this.#onSubscriberError(err, event);
      }
    }
  }

  subscribe<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): () => void {
    this.#emitter.on(event, listener as (...a: unknown[]) => void);
    return () => this.#emitter.off(event, listener as (...a: unknown[]) => void);
  }
}
