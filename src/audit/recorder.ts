import type { Logger } from '../observe/logger.js';
import type { EventBus } from '../observe/event-bus.js';
import type { AuditWriter } from './audit-writer.js';
import type { Checkpointer } from './checkpoint.js';
import { RecordPrivacy } from './privacy.js';
import type { AlertRecord, RejectRecord, RelayRecord, SessionRecord } from './records.js';

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
}

/**
 * Writes a record to the trail, then publishes it to observers: privacy is applied first, so the
 * file and every subscriber see the same record (with its seq / prev / hash when the chain is on).
 * Reject, session and alert records are best effort: the client is refused or gone either way.
 */
export class Recorder {
  #writer: AuditWriter;
  #bus: EventBus;
  #log: Logger;
  #opts: RecorderOptions;
  writeErrors = 0;
  #failing = false;

  constructor(writer: AuditWriter, bus: EventBus, log: Logger, opts: Partial<RecorderOptions> = {}) {
    this.#writer = writer;
    this.#bus = bus;
    this.#log = log;
    this.#opts = {
      onWriteFailure: opts.onWriteFailure ?? 'refuse',
      privacy: opts.privacy ?? new RecordPrivacy('clear', null),
      checkpoints: opts.checkpoints ?? null,
    };
  }

  /**
   * With `refuse`: the last relay record could not be written and nothing has been written since.
   * The transaction then refuses before relaying; its own record's write tells when the trail is back.
   */
  get failing(): boolean {
    return this.#failing && this.#opts.onWriteFailure === 'refuse';
  }

  /** Throws when the record could not be written and `onWriteFailure` is `refuse`. */
  relay(record: RelayRecord): void {
    const masked = this.#opts.privacy.relay(record);
    let written: RelayRecord;
    try {
      written = this.#write(masked);
    } catch (err) {
      this.#failed(err, record.id);
      this.#failing = true;
      if (this.#opts.onWriteFailure === 'refuse') throw err;
      this.#log.warn({ recordId: record.id }, 'relaying without an audit record (audit.onWriteFailure: continue)');
      this.#bus.publish('relay', masked);
      return;
    }
    this.#bus.publish('relay', written);
  }

  reject(record: RejectRecord): void {
    this.#bus.publish('reject', this.#bestEffort(this.#opts.privacy.reject(record)));
  }

  session(record: SessionRecord): void {
    this.#bus.publish('session', this.#bestEffort(record));
  }

  /** Best effort: an alert that cannot be recorded is still delivered to its sinks. */
  alert(record: AlertRecord): void {
    this.#bus.publish('alert', this.#bestEffort(this.#opts.privacy.alert(record)));
  }

  /** The final checkpoint, then the file flushed and closed. */
  close(): void {
    this.#opts.checkpoints?.stop();
    this.#writer.close();
  }

  #write<R extends object>(record: R): R {
    const chain = this.#writer.write(record);
    this.#failing = false;
    this.#opts.checkpoints?.recorded();
    // Object.assign, not a spread: V8 copies a record-sized object about 3x faster this way.
    return chain ? Object.assign({}, record, chain) : record;
  }

  #bestEffort<R extends { readonly id: string }>(record: R): R {
    try {
      return this.#write(record);
    } catch (err) {
      this.#failed(err, record.id);
      return record;
    }
  }

  #failed(err: unknown, id: string): void {
    this.writeErrors += 1;
    this.#log.error({ err, recordId: id, file: this.#writer.file }, 'audit write failed');
    this.#bus.publish('audit-write-error', { id });
  }
}
