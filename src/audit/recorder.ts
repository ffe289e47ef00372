import type { Logger } from '../observe/logger.js';
import type { EventBus } from '../observe/event-bus.js';
import type { AuditWriter } from './audit-writer.js';
import type { RejectRecord, RelayRecord, SessionRecord } from './records.js';

/**
 * Writes a record to the trail, then publishes it to observers. A relay record that cannot be
 * written throws, so the caller answers 451 instead of a 250 without a record (the non-negotiable).
 * Reject and session records are best effort: the client is refused or gone either way.
 */
export class Recorder {
  #writer: AuditWriter;
  #bus: EventBus;
  #log: Logger;
  writeErrors = 0;

  constructor(writer: AuditWriter, bus: EventBus, log: Logger) {
    this.#writer = writer;
    this.#bus = bus;
    this.#log = log;
  }

  relay(record: RelayRecord): void {
    try {
      this.#writer.write(record);
    } catch (err) {
      this.#failed(err, record.id);
      throw err;
    }
    this.#bus.publish('relay', record);
  }

  reject(record: RejectRecord): void {
    this.#bestEffort(record.id, () => this.#writer.write(record));
    this.#bus.publish('reject', record);
  }

  session(record: SessionRecord): void {
    this.#bestEffort(record.id, () => this.#writer.write(record));
    this.#bus.publish('session', record);
  }

  #bestEffort(id: string, write: () => void): void {
    try {
      write();
    } catch (err) {
      this.#failed(err, id);
    }
  }

  #failed(err: unknown, id: string): void {
    this.writeErrors += 1;
    this.#log.error({ err, recordId: id, file: this.#writer.file }, 'audit write failed');
  }
}
