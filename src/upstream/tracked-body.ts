import { close, open, read } from 'node:fs';
import { Readable } from 'node:stream';
import type { AttemptPhase } from '../classify/upstream-facts.js';

/** A replayable message body: in memory, or a spill file. */
export type ReplayableBody = Buffer | { readonly path: string };

/**
 * Runs (and is awaited) after the last body byte is handed over and before the final dot is written
 * (docs/spool.md, "Before the final dot"): the spool makes its durable mark there. A rejection stops
 * the send before the dot, so the upstream never gets the message.
 */
export type BeforeFinalDot = () => Promise<void>;

const CHUNK = 64 * 1024;

/**
 * A fresh stream over the body that tells how far it was handed over. nodemailer pulls from it only
 * after the upstream's 354, so the first pull marks the start of the body, and its end marks the
 * point after which a lost connection means "unknown outcome" (the upstream may have the message).
 * Ending a little before the final dot is on the wire errs on the side of a duplicate, never a loss.
 *
 * It is pull-driven on purpose: attaching a 'data' listener to observe it would start the flow
 * before nodemailer pipes it, and the body would be gone.
 */
export class TrackedBody extends Readable {
  phase: AttemptPhase = 'envelope';
  /** Fits in one chunk: worth sending in one write with the final dot (see UpstreamConnection.send). */
  readonly small: boolean;
  bodyStartedAt: number | null = null;
  #body: ReplayableBody;
  #offset = 0;
  #fd: number | null = null;
  #beforeFinalDot: BeforeFinalDot | null;

  constructor(body: ReplayableBody, beforeFinalDot: BeforeFinalDot | null = null) {
    super({ highWaterMark: CHUNK });
    this.#body = body;
    this.#beforeFinalDot = beforeFinalDot;
    this.small = Buffer.isBuffer(body) && body.length <= CHUNK;
    this.once('end', () => {
      this.phase = 'sent';
    });
  }

  override _read(): void {
    if (this.bodyStartedAt === null) {
      this.bodyStartedAt = performance.now();
      this.phase = 'body';
      this.emit('started');
    }
    if (Buffer.isBuffer(this.#body)) this.#readMemory(this.#body);
    else this.#readFile(this.#body.path);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#fd === null) return callback(err);
    close(this.#fd, () => callback(err));
    this.#fd = null;
  }

  /**
   * The end of the body: nodemailer's DataStream writes the final dot when this stream ends, so a
   * `beforeFinalDot` hook is awaited first; its failure destroys the stream (nodemailer then fails
   * the send with ESTREAM, the dot never written).
   */
  #end(): void {
    const hook = this.#beforeFinalDot;
    if (hook === null) {
      this.push(null);
      return;
    }
    this.#beforeFinalDot = null;
    hook().then(
      () => {
        if (!this.destroyed) this.push(null);
      },
      (err: unknown) => this.destroy(err as Error),
    );
  }

  #readMemory(body: Buffer): void {
    if (this.#offset >= body.length) {
      this.#end();
      return;
    }
    const end = Math.min(body.length, this.#offset + CHUNK);
    // subarray shares memory: no copy of the message per attempt.
    const chunk = body.subarray(this.#offset, end);
    this.#offset = end;
    this.push(chunk);
  }

  #readFile(path: string): void {
    if (this.#fd === null) {
      open(path, 'r', (err, fd) => {
        if (err) return this.destroy(err);
        this.#fd = fd;
        this.#readFile(path);
      });
      return;
    }
    const buf = Buffer.allocUnsafe(CHUNK);
    read(this.#fd, buf, 0, CHUNK, this.#offset, (err, n) => {
      if (err) return this.destroy(err);
      if (n === 0) return this.#end();
      this.#offset += n;
      this.push(buf.subarray(0, n));
    });
  }
}
