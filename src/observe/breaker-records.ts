import { AUDIT_SCHEMA_VERSION } from '../audit/records.js';
import type { Recorder } from '../audit/recorder.js';
import type { IdGenerator } from '../ids.js';
import type { RelayBus } from './relay-events.js';

/**
 * The trail's account of the circuit breakers: an `alert` record (rule `circuit-breaker`) when an
 * upstream is cut off and when it is back. Whatever the alert rules and sinks, the trail says why
 * messages went to another upstream or got 451 at once. A failed half-open trial re-reports `open`
 * and is not a new incident.
 */
export class BreakerRecords {
  #off: () => void;

  constructor(bus: RelayBus, recorder: Recorder, ids: IdGenerator) {
    this.#off = bus.subscribe('upstream-state', (t) => {
      const fired = t.from === 'closed' && t.state === 'open';
      if (!fired && t.state !== 'closed') return;
      recorder.alert({
        v: AUDIT_SCHEMA_VERSION,
        type: 'alert',
        time: new Date().toISOString(),
        id: ids.next(),
        state: fired ? 'fired' : 'resolved',
        rule: 'circuit-breaker',
        upstream: t.upstream,
        class: null,
        message: fired ? `circuit breaker open: ${t.reason}` : `circuit breaker closed: ${t.reason}`,
        sinks: [],
      });
    });
  }

  close(): void {
    this.#off();
  }
}
