import { EventEmitter } from 'node:events';
import type { AuditRefusal } from '../audit/recorder.js';
import type { AuthEvent } from '../auth/auth-lockout.js';
import type { AlertRecord, RejectRecord, RelayRecord, SessionRecord } from '../audit/records.js';
import type { AlertDelivery } from './alerts/delivery-queue.js';
import type { ProbeResult } from './upstream-probe.js';

/** What the relay publishes; observers (metrics, alerts, recent lookups) subscribe. */
export interface RelayEvents {
  relay: [RelayRecord];
  reject: [RejectRecord];
  session: [SessionRecord];
  /** An alert fired or resolved (after its record was written). */
  alert: [AlertRecord];
  /** One notification to one sink ended: sent, failed after its retries, or dropped (queue full). */
  'alert-delivery': [AlertDelivery];
  /** An upstream health probe finished. */
  probe: [ProbeResult];
  /** A record could not be written to the trail. */
  'audit-write-error': [{ readonly id: string }];
  /** The trail stopped or started taking records (`reason`: why not; null when writable). */
  'audit-state': [{ readonly writable: boolean; readonly reason: AuditRefusal | null }];
  /** An upstream's circuit breaker changed state (a failed half-open probe re-reports `open`). */
  'upstream-state': [{ readonly upstream: string; readonly state: 'closed' | 'open' | 'half-open'; readonly reason: string }];
  /** The adaptive slow-down towards an upstream changed; 0 = back to its configured pace. */
  'upstream-throttle': [{ readonly upstream: string; readonly delayMs: number }];
  /** A client AUTH failed, was refused because locked, or started a lockout (auth/auth-lockout.ts). */
  auth: [AuthEvent];
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
