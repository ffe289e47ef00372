import type { Logger } from '../logger.js';
import type { EventPublisher } from '../event-bus.js';
import type { AuditEvents } from './audit-events.js';
import type { AuditRefusal } from './audit-refusal.js';
import type { AuditWriter } from './audit-writer.js';
import type { Checkpointer } from './checkpoint.js';
import { RecordPrivacy } from './privacy.js';
import type { AlertRecord, Built, DeliveryRecord, RecordHead, RejectRecord, RelayRecord, SessionRecord, SpoolRecord } from './records.js';

export interface RecorderOptions {
  /**
   * A relay record that cannot be written: `refuse` (default) throws, so the caller answers 451
   * instead of a 250 without a record (the non-negotiable); `continue` logs and counts it and lets
   * the transaction keep the upstream's verdict.
   */
  readonly onWriteFailure: 'refuse' | 'continue';
  /** `audit.privacy`, applied before anything is written or published. */
  readonly privacy: RecordPrivacy;
  /** Told about every record written, to write checkpoints; null with the chain off. */
  readonly checkpoints: Checkpointer | null;
  /** `instance` of every record written (records.ts, RecordHead). */
  readonly instance: string;
}

/**
 * Writes a record to the trail, then publishes it to observers: privacy is applied first, so the
 * file and every subscriber see the same record (with its seq / prev / hash when the chain is on).
 * Reject, session and alert records are best effort: the client is refused or gone either way.
 */
export class Recorder {
  #writer: AuditWriter;
  #bus: EventPublisher<AuditEvents>;
  #log: Logger;
  #opts: RecorderOptions;
  writeErrors = 0;
  #failing = false;
  /** What observers were last told (`audit-state`): null = writable. */
  #refusal: AuditRefusal | null = null;

  constructor(writer: AuditWriter, bus: EventPublisher<AuditEvents>, log: Logger, opts: Partial<RecorderOptions> = {}) {
    this.#writer = writer;
    this.#bus = bus;
    this.#log = log;
    this.#opts = {
      onWriteFailure: opts.onWriteFailure ?? 'refuse',
      privacy: opts.privacy ?? new RecordPrivacy('clear', null),
      checkpoints: opts.checkpoints ?? null,
      instance: opts.instance ?? 'mailtrail',
    };
  }

  /**
   * With `refuse`: why a transaction must be refused *before* relaying, or null when it may relay.
   * `write-failed`: the last record could not be written and none has been since (the refused
   * transaction's own record tells when the trail is back). `low-space`: the trail's filesystem is
   * below `audit.minFreeSpace`, so the next records may not fit. Observers hear every change.
   */
  refusal(): AuditRefusal | null {
    if (this.#opts.onWriteFailure !== 'refuse') return null;
    const refusal: AuditRefusal | null = this.#failing ? 'write-failed' : this.#writer.hasRoom() ? null : 'low-space';
    this.#report(refusal);
    return refusal;
  }

  /**
   * Throws when the record could not be written and `onWriteFailure` is `refuse`; with `continue`,
   * returns false then (true: the record is in the trail).
   */
  relay(built: Built<RelayRecord>): boolean {
    const before = this.writeErrors;
    this.#bus.publish('relay', this.#required(this.#opts.privacy.relay(this.#stamp(built)), 'relay', 'relaying without an audit record'));
    return this.writeErrors === before;
  }

  /**
   * A delivery attempt from the spool. Throws like relay() (and returns false like it with
   * `continue`): the queue must not move the message on (to its end, or its next attempt) on a record
   * that is not in the trail.
   */
  delivery(built: Built<DeliveryRecord>): boolean {
    const before = this.writeErrors;
    this.#bus.publish('delivery', this.#required(this.#opts.privacy.delivery(this.#stamp(built)), 'delivery', 'going on without a delivery record'));
    return this.writeErrors === before;
  }

  /**
   * A spooled message's end or change of state (docs/spool.md). Throws like relay() (and returns
   * false like it with `continue`): an end record comes before the message's files are removed, and a
   * failed one must keep them.
   */
  spool(built: Built<SpoolRecord>): boolean {
    const before = this.writeErrors;
    this.#bus.publish('spool', this.#required(this.#opts.privacy.spool(this.#stamp(built)), 'spool', 'going on without a spool record'));
    return this.writeErrors === before;
  }

  reject(record: Built<RejectRecord>): void {
    this.#bus.publish('reject', this.#bestEffort(this.#opts.privacy.reject(this.#stamp(record))));
  }

  session(record: Built<SessionRecord>): void {
    this.#bus.publish('session', this.#bestEffort(this.#stamp(record)));
  }

  /** Best effort: an alert that cannot be recorded is still delivered to its sinks. */
  alert(record: Built<AlertRecord>): void {
    this.#bus.publish('alert', this.#bestEffort(this.#opts.privacy.alert(this.#stamp(record))));
  }

  /** The final checkpoint, then the file flushed and closed. */
  close(): void {
    this.#opts.checkpoints?.stop();
    this.#writer.close();
  }

  /**
   * A record something depends on (a reply to a client, a message's next step): written, or, when it
   * cannot be, kept in the operational log and thrown with `refuse`; with `continue` the caller carries
   * on without it. Returns the record to publish.
   */
  #required<R extends { readonly id: string }>(masked: R, kind: string, goingOn: string): R {
    try {
      return this.#write(masked);
    } catch (err) {
      this.#failed(err, masked.id);
      // The operational log keeps what the trail could not: the upstream may have the message.
      if ((err as { recordKept?: boolean }).recordKept) {
        // The record is whole in the trail but not known to be on disk (audit-writer.ts), and with
        // `refuse` what it says may not be what happens next (a client told 451): the log says so.
        this.#log.error({ record: masked }, `${kind} record is in the audit trail but its write failed (not known to be on disk); it follows here`);
      } else {
        this.#log.error({ record: masked }, `${kind} record not written to the audit trail; it follows here`);
      }
      if (this.#opts.onWriteFailure === 'refuse') throw err;
      this.#log.warn({ recordId: masked.id }, `${goingOn} (audit.onWriteFailure: continue)`);
      return masked;
    }
  }

  /**
   * A copy of the record with `instance` after `id`, where every type has it (records.ts,
   * RecordHead): the head's members keep their places when the builder's values overwrite them.
   * Object.assign, not a spread: V8 copies a record-sized object about 3x faster this way.
   */
  #stamp<R extends RecordHead>(built: Built<R>): R {
    const { v, type, time, id } = built as unknown as RecordHead;
    return Object.assign({ v, type, time, id, instance: this.#opts.instance }, built) as unknown as R;
  }

  #write<R extends object>(record: R): R {
    const chain = this.#writer.write(record);
    if (this.#failing) {
      this.#failing = false;
      this.#report(null);
    }
    this.#opts.checkpoints?.recorded();
    // The record is the recorder's own copy (#stamp), so the chain fields are added in place.
    return chain ? Object.assign(record, chain) : record;
  }

  #bestEffort<R extends { readonly id: string }>(record: R): R {
    try {
      return this.#write(record);
    } catch (err) {
      this.#failed(err, record.id);
      return record;
    }
  }

  #report(refusal: AuditRefusal | null): void {
    if (refusal === this.#refusal) return;
    this.#refusal = refusal;
    if (refusal === 'low-space') {
      this.#log.error(
        { file: this.#writer.file, freeBytes: this.#writer.freeBytes },
        'audit trail filesystem below audit.minFreeSpace: refusing messages before relaying',
      );
    } else if (refusal === null) {
      this.#log.info({ file: this.#writer.file }, 'audit trail writable again: relaying');
    }
    this.#bus.publish('audit-state', { writable: refusal === null, reason: refusal, refusing: refusal !== null && this.#opts.onWriteFailure === 'refuse' });
  }

  /**
   * Any record that could not be written, best-effort ones included: they go to the same trail, so
   * the next transaction is refused before relaying instead of relayed and then answered 451.
   */
  #failed(err: unknown, id: string): void {
    this.writeErrors += 1;
    this.#log.error({ err, recordId: id, file: this.#writer.file }, 'audit write failed');
    this.#bus.publish('audit-write-error', { id });
    this.#failing = true;
    this.#report('write-failed');
  }
}
