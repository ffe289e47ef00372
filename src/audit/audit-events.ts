import type { AuditRefusal } from './audit-refusal.js';
import type { AlertRecord, DeliveryRecord, RejectRecord, RelayRecord, SessionRecord, SpoolRecord } from './records.js';

/** What the recorder publishes once a record is written (or could not be). */
export interface AuditEvents {
  relay: [RelayRecord];
  reject: [RejectRecord];
  session: [SessionRecord];
  /** An alert fired or resolved (after its record was written). */
  alert: [AlertRecord];
  /** A delivery attempt of a spooled message. */
  delivery: [DeliveryRecord];
  /** A spooled message ended or changed state without an attempt, or an upstream's queue was parked or unparked. */
  spool: [SpoolRecord];
  /** A record could not be written to the trail. */
  'audit-write-error': [{ readonly id: string }];
  /** The trail stopped or started taking records (`reason`: why not; null when writable). */
  'audit-state': [
    {
      readonly writable: boolean;
      readonly reason: AuditRefusal | null;
      /** Messages are refused before relaying meanwhile (audit.onWriteFailure: refuse); with continue they are relayed without records. */
      readonly refusing: boolean;
    },
  ];
}
