import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { AuditRecord } from './records.js';

/**
 * The audit trail's only writer: one JSON line per record, one synchronous write(2) each, so a record
 * the client's reply depends on is in the file (the kernel's page cache) before the reply leaves. With
 * `fsync` each record also survives a power loss, at one fsync per record.
 *
 * Why not a pino destination: SonicBoom in sync mode reports a failed write as an 'error' event and
 * keeps the bytes queued for the next write, so the caller cannot tell that *this* record is missing.
 * Here a failed write throws, and the relay answers 451 instead of accepting mail it cannot record.
 */
export class AuditWriter {
  readonly file: string;
  #fd: number;
  #fsync: boolean;

  constructor(file: string, fsync: boolean) {
    this.file = file;
    this.#fsync = fsync;
    this.#fd = file === '-' ? 1 : openAppend(file);
  }

  /** Throws when the record could not be written completely. */
  write(record: AuditRecord): void {
    if (this.#fd < 0) throw Object.assign(new Error('Audit trail is closed'), { code: 'EAUDITCLOSED' });
    writeFully(this.#fd, Buffer.from(JSON.stringify(record) + '\n', 'utf8'));
    if (this.#fsync && this.#fd !== 1) fsyncSync(this.#fd);
  }

  /** Reopen the file by name (after logrotate moved it away). */
  reopen(): void {
    if (this.#fd === 1) return;
    const old = this.#fd;
    this.#fd = openAppend(this.file);
    closeSync(old);
  }

  close(): void {
    if (this.#fd === 1 || this.#fd < 0) return;
    fsyncSync(this.#fd);
    closeSync(this.#fd);
    this.#fd = -1;
  }
}

function openAppend(file: string): number {
  mkdirSync(dirname(file), { recursive: true });
  return openSync(file, 'a', 0o640);
}

/** write(2) may write less than asked (a full disk mid-record, a signal); finish or throw. */
function writeFully(fd: number, data: Buffer): void {
  let offset = 0;
  while (offset < data.length) {
    offset += writeSync(fd, data, offset, data.length - offset);
  }
}
