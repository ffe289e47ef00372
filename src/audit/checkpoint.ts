import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { IdGenerator } from '../ids.js';
import type { Logger } from '../logger.js';
import type { AuditWriter } from './audit-writer.js';
import type { CheckpointSigner } from './checkpoint-signer.js';
import { AUDIT_SCHEMA_VERSION, type CheckpointRecord } from './records.js';

export interface CheckpointOptions {
  /** A checkpoint after this many records. */
  readonly every: number;
  /** ...or this many ms after the last one, when records were written since. */
  readonly interval: number;
  readonly signer: CheckpointSigner | null;
  /** A second file that receives a copy of every checkpoint line (to ship elsewhere); null = none. */
  readonly copyFile: string | null;
  /** The instance that writes the trail (records.ts, RecordHead). */
  readonly instance: string;
}

/**
 * Writes `checkpoint` records into the chain: every `every` records, every `interval` when records
 * were written since the last one, and at shutdown. A checkpoint states the chain head it follows
 * (`head`: seq and hash of the record before it) and, with a signing key, signs it; a copy kept
 * elsewhere lets `mailtrail verify --checkpoints` prove the trail was not cut short after it.
 *
 * The signed bytes are the checkpoint's canonical serialisation without `signature` and `hash`,
 * `seq` and `prev` included (checkpoint-signer.ts), so the signature binds its place in the chain.
 */
export class Checkpointer {
  #writer: AuditWriter;
  #ids: IdGenerator;
  #log: Logger;
  #opts: CheckpointOptions;
  #since = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(writer: AuditWriter, ids: IdGenerator, log: Logger, opts: CheckpointOptions) {
    this.#writer = writer;
    this.#ids = ids;
    this.#log = log;
    this.#opts = opts;
    if (opts.copyFile) mkdirSync(dirname(opts.copyFile), { recursive: true });
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (this.#since > 0) this.checkpoint();
    }, this.#opts.interval);
    this.#timer.unref();
  }

  /** A record was written to the trail. */
  recorded(): void {
    this.#since += 1;
    if (this.#since >= this.#opts.every) this.checkpoint();
  }

  /** The final checkpoint (when anything was written since the last one) and no more timers. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#since > 0) this.checkpoint();
  }

  /** Writes a checkpoint now. A failure is logged: the records themselves are already safe. */
  checkpoint(): void {
    const head = this.#writer.head;
    if (!head) return;
    const record = this.#build(head);
    try {
      const chain = this.#writer.write(record);
      this.#since = 0;
      if (chain && this.#opts.copyFile) {
        appendFileSync(this.#opts.copyFile, JSON.stringify({ ...record, ...chain }) + '\n', { mode: 0o640 });
      }
    } catch (err) {
      this.#log.error({ err, file: this.#writer.file, copyFile: this.#opts.copyFile }, 'audit checkpoint failed');
    }
  }

  #build(head: { seq: number; hash: string }): CheckpointRecord {
    const signer = this.#opts.signer;
    const unsigned: CheckpointRecord = {
      v: AUDIT_SCHEMA_VERSION,
      type: 'checkpoint',
      time: new Date().toISOString(),
      id: this.#ids.next(),
      instance: this.#opts.instance,
      head: { seq: head.seq, hash: head.hash },
      count: this.#since,
      keyId: signer?.keyId ?? null,
      signature: null,
    };
    if (!signer) return unsigned;
    // What verify reconstructs: the record without signature and hash, seq and prev at the end.
    const { signature: _none, ...signed } = unsigned;
    const data = JSON.stringify({ ...signed, seq: head.seq + 1, prev: head.hash });
    return { ...unsigned, signature: signer.sign(data) };
  }
}
