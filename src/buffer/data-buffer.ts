import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { DEFAULT_HEADER_CAP, HeaderCollector, sniffHeaders, type HeaderFacts } from './header-sniffer.js';
import { removeQuietly, SpillFile } from './temp-files.js';
import { ERR } from '../error-codes.js';

export type { HeaderFacts };

/**
 * A DATA body read to its end (docs/design.md, "One message"). The body can be handed to nodemailer as
 * `raw` any number of times, which is what makes failover and pool requeues safe: a consumed stream
 * cannot be sent twice (a stream is used up by its first reader).
 */
export interface BufferedMessage {
  /** Bytes received, after smtp-server's dot-unstuffing. */
  readonly size: number;
  /** Hex SHA-256 of exactly the bytes received. Empty for an oversize message: its tail is drained unhashed. */
  readonly sha256: string;
  /** More than `maxSize` bytes arrived. Nothing was kept: `body()` throws, the caller answers 552. */
  readonly oversize: boolean;
  /** The body lives in a temp file rather than in memory. */
  readonly spilled: boolean;
  readonly headers: HeaderFacts;
  /** A replayable body for nodemailer's `raw`: a Buffer, or `{ path }` of the temp file. */
  body(): Buffer | { path: string };
  /** Remove the temp file. Idempotent, never throws. */
  dispose(): Promise<void>;
}

export interface ReceiveOptions {
  /** Bytes kept in memory; past this the body goes to a temp file. */
  memoryLimit: number;
  /** Bytes accepted; past this the rest is drained and counted, and the message flagged oversize. */
  maxSize: number;
  /** Folder for spill files. */
  tempDir: string;
  /** Bytes of header block parsed at most. Default 256 KiB. */
  headerCap?: number;
}

export type ReceiveErrorCode =
  /** The client went away before the final dot: the stream errored or closed without 'end'. */
  | typeof ERR.CLIENT_ABORT
  /** The temp file could not be written (disk full, permissions). `cause` has the system error. */
  | typeof ERR.SPILL;

export class ReceiveError extends Error {
  override readonly name = 'ReceiveError';
  readonly code: ReceiveErrorCode;

  constructor(code: ReceiveErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Read an smtp-server DATA stream to its end: count, hash, collect the header block, and keep the
 * body in memory or, past `memoryLimit`, in a temp file. Rejects with a `ReceiveError`; any temp file
 * is removed before that. The stream is always read to its end, even after a failure, because
 * smtp-server answers only after 'end' and an unread stream stalls the client.
 */
export function receiveMessage(stream: Readable, opts: ReceiveOptions): Promise<BufferedMessage> {
  return new Promise((resolve, reject) => {
    new Reception(stream, opts, resolve, reject).start();
  });
}

/** The state of one message being received. Lives until the stream ends or fails. */
class Reception {
  readonly #stream: Readable;
  readonly #opts: ReceiveOptions;
  readonly #resolve: (message: BufferedMessage) => void;
  readonly #reject: (error: ReceiveError) => void;
  readonly #hash = createHash('sha256');
  readonly #head: HeaderCollector;
  #chunks: Buffer[] = [];
  #stored = 0;
  #size = 0;
  #spill: SpillFile | null = null;
  /** Removal of a spill file discarded because the message turned out oversize. */
  #pendingRemoval: Promise<void> = Promise.resolve();
  #oversize = false;
  #paused = false;
  #ended = false;
  #settled = false;

  constructor(stream: Readable, opts: ReceiveOptions, resolve: (message: BufferedMessage) => void, reject: (error: ReceiveError) => void) {
    this.#stream = stream;
    this.#opts = opts;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#head = new HeaderCollector(opts.headerCap ?? DEFAULT_HEADER_CAP);
  }

  start(): void {
    const stream = this.#stream;
    // A stream already gone never emits 'end' or 'close' again: waiting for them would hang.
    if (stream.destroyed || stream.readableEnded) {
      this.#fail(clientAbort());
      return;
    }
    stream.on('data', this.#onData);
    stream.once('end', this.#onEnd);
    // Listening for 'error' also makes smtp-server destroy the stream with ECONNECTION instead of
    // silently; a silent destroy shows up as 'close' without 'end'.
    stream.on('error', this.#onError);
    stream.once('close', this.#onClose);
    stream.resume();
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#settled) return; // failed already: keep the stream flowing, drop the bytes
    this.#size += chunk.length;
    this.#head.push(chunk);
    if (this.#oversize) return;
    if (this.#size > this.#opts.maxSize) {
      this.#becomeOversize();
      return;
    }
    this.#hash.update(chunk);
    this.#store(chunk);
  };

  readonly #onEnd = (): void => {
    this.#ended = true;
    if (!this.#settled) void this.#finish();
  };

  readonly #onError = (error: Error): void => {
    if (!this.#ended) this.#fail(clientAbort(error));
  };

  readonly #onClose = (): void => {
    if (!this.#ended) this.#fail(clientAbort());
  };

  readonly #onSpillError = (error: Error): void => {
    // Errors of a file already discarded for an oversize message concern nobody.
    if (this.#spill !== null) this.#fail(spillFailure(error));
  };

  #store(chunk: Buffer): void {
    if (this.#spill !== null) {
      if (!this.#spill.write(chunk)) this.#waitForDrain();
      return;
    }
    this.#chunks.push(chunk);
    this.#stored += chunk.length;
    if (this.#stored > this.#opts.memoryLimit) this.#startSpill();
  }

  /** Move what is in memory to a new temp file; from now on every chunk goes there. */
  #startSpill(): void {
    const spill = new SpillFile(this.#opts.tempDir, this.#onSpillError);
    this.#spill = spill;
    let hasRoom = true;
    for (const chunk of this.#chunks) hasRoom = spill.write(chunk);
    this.#chunks = [];
    this.#stored = 0;
    if (!hasRoom) this.#waitForDrain();
  }

  /** Backpressure: a fast client must not fill memory faster than the disk takes it. */
  #waitForDrain(): void {
    if (this.#paused || this.#spill === null) return;
    this.#paused = true;
    this.#stream.pause();
    this.#spill.onceDrained(this.#resumeSource);
  }

  readonly #resumeSource = (): void => {
    if (!this.#paused) return;
    this.#paused = false;
    this.#stream.resume();
  };

  /** Stop keeping anything; the file goes at once (it may be large), the stream is still drained. */
  #becomeOversize(): void {
    this.#oversize = true;
    this.#chunks = [];
    this.#stored = 0;
    if (this.#spill !== null) {
      this.#pendingRemoval = this.#spill.discard();
      this.#spill = null;
    }
    this.#resumeSource();
  }

  async #finish(): Promise<void> {
    try {
      await this.#pendingRemoval;
      const spill = this.#spill;
      if (spill !== null) await spill.close();
      const headers = await sniffHeaders(this.#head.head(), this.#head.truncated);
      if (this.#settled) return; // a write error came first and has been reported
      this.#settled = true;
      this.#resolve(this.#result(headers, spill));
    } catch (error) {
      this.#fail(spillFailure(error));
    }
  }

  #result(headers: HeaderFacts, spill: SpillFile | null): BufferedMessage {
    const facts = { size: this.#size, headers, oversize: this.#oversize };
    if (this.#oversize) return new ReceivedMessage({ ...facts, sha256: '' }, null);
    const sha256 = this.#hash.digest('hex');
    if (spill !== null) return new ReceivedMessage({ ...facts, sha256 }, spill.path);
    const chunks = this.#chunks;
    this.#chunks = [];
    // A small message usually arrives as one chunk: keep it without copying.
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, this.#stored);
    return new ReceivedMessage({ ...facts, sha256 }, body);
  }

  /** Settle with an error after removing any temp file, and leave the source flowing. */
  #fail(error: ReceiveError): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#chunks = [];
    const spill = this.#spill;
    this.#spill = null;
    this.#resumeSource();
    const removal = spill === null ? this.#pendingRemoval : spill.discard();
    void removal.then(() => this.#reject(error));
  }
}

function clientAbort(cause?: Error): ReceiveError {
  const message = 'the client went away before the end of DATA';
  return new ReceiveError(ERR.CLIENT_ABORT, message, cause === undefined ? undefined : { cause });
}

function spillFailure(cause: unknown): ReceiveError {
  return new ReceiveError(ERR.SPILL, 'could not write the message to a temp file', { cause });
}

interface MessageFacts {
  size: number;
  sha256: string;
  oversize: boolean;
  headers: HeaderFacts;
}

/** A finished message: its body in memory (Buffer), in a temp file (path), or not kept (null). */
class ReceivedMessage implements BufferedMessage {
  readonly size: number;
  readonly sha256: string;
  readonly oversize: boolean;
  readonly spilled: boolean;
  readonly headers: HeaderFacts;
  readonly #content: Buffer | string | null;
  #disposal: Promise<void> | null = null;

  constructor(facts: MessageFacts, content: Buffer | string | null) {
    this.size = facts.size;
    this.sha256 = facts.sha256;
    this.oversize = facts.oversize;
    this.headers = facts.headers;
    this.spilled = typeof content === 'string';
    this.#content = content;
  }

  body(): Buffer | { path: string } {
    const content = this.#content;
    if (content === null) throw new Error('an oversize message keeps no body');
    return typeof content === 'string' ? { path: content } : content;
  }

  dispose(): Promise<void> {
    const content = this.#content;
    if (typeof content !== 'string') return Promise.resolve();
    this.#disposal ??= removeQuietly(content);
    return this.#disposal;
  }
}
