import type { SpoolActor } from '../audit/records.js';
import type { SpoolState } from './spool-entry.js';

/** Where an entry is after a change: one of its states, or the end it came to (its files are gone). */
export type QueueEntryState = SpoolState | 'delivered' | 'bounced' | 'expired' | 'deleted';

/**
 * What the queue manager publishes (spool/queue-manager.ts): one `spool-entry` event per change of
 * an entry's state (accepted, taken for an attempt, put back, held, released, ended), and each
 * parking of an upstream. Metrics and alerts subscribe; the trail has the `delivery` and `spool`
 * records of the same changes.
 */
export interface QueueEvents {
  'spool-entry': [
    {
      readonly id: string;
      /** The state before; null for a message just accepted. */
      readonly previous: SpoolState | null;
      readonly state: QueueEntryState;
      /** Delivery attempts made so far. */
      readonly attempts: number;
      /** When a `queued` entry is due next (ms); null otherwise. */
      readonly nextAttemptAt: number | null;
      /** When it was accepted (ms): the age of what is queued. */
      readonly acceptedAt: number;
      /** The failure class that caused the change (a deferral, a bounce, an expiry); null otherwise. */
      readonly class: string | null;
      /** Why, in words; null when the state says it all. */
      readonly reason: string | null;
      /** The operator; null for mailtrail itself. */
      readonly by: SpoolActor | null;
    },
  ];
  /** An upstream's queue was parked (an account-wide failure); `until`: when it gets one trial (ms). */
  'spool-parked': [{ readonly upstream: string; readonly class: string; readonly reason: string; readonly until: number }];
  /** A parked upstream takes deliveries again. */
  'spool-unparked': [{ readonly upstream: string; readonly reason: string }];
}
