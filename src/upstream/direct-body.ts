import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { AttemptPhase } from '../classify/upstream-facts.js';
import type { BeforeFinalDot } from './tracked-body.js';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/**
 * True when nodemailer's DataStream would pass `body` through unchanged: no line starts with a dot,
 * every CR is followed by LF and every LF preceded by CR (no bare line ends to normalise), and it
 * ends with CRLF (so the terminator is just ".\r\n"). That is what almost every message an
 * application writes looks like (base64 and quoted-printable parts, CRLF line ends).
 *
 * Found with Buffer.indexOf (memchr) over the line ends, not a loop over every byte: DataStream's
 * byte loop costs about 380 µs per 100 KiB message, this check a few µs.
 */
export function passesUnchanged(body: Buffer): boolean {
  const n = body.length;
  if (n < 2 || body[0] === DOT || body[n - 2] !== CR || body[n - 1] !== LF) return false;
  let lfs = 0;
  for (let i = body.indexOf(LF); i !== -1; i = body.indexOf(LF, i + 1)) {
    if (body[i - 1] !== CR || body[i + 1] === DOT) return false;
    lfs += 1;
  }
  // Each LF has its own CR before it; as many CRs as LFs means no CR stands alone.
  let crs = 0;
  for (let i = body.indexOf(CR); i !== -1; i = body.indexOf(CR, i + 1)) crs += 1;
  return crs === lfs;
}

/** What ends the DATA section after a body that ends with CRLF (RFC 5321 §4.1.1.4). */
const TERMINATOR = Buffer.from('.\r\n');

/** Up to this size the body and the terminator go out in one corked write. */
const ONE_WRITE = 64 * 1024;

/**
 * A body in memory that needs no dot-stuffing (passesUnchanged), handed to nodemailer's send() as a
 * pipe-able source: nodemailer calls `pipe(dataStream)` once the upstream answered 354, with its
 * DataStream already piped to the socket. The body and the terminating ".\r\n" go straight to the
 * socket instead; the DataStream is unpiped and ended empty, so nodemailer sees its stream end as
 * usual. The bytes on the wire are exactly what DataStream would have produced (tested against it),
 * without its per-byte loop.
 *
 * Tracks the phase like TrackedBody: `body` when nodemailer starts the body (after the 354), `sent`
 * once the whole body is handed over and before the final dot is written, so a connection lost after
 * `sent` is an unknown outcome (errs toward a possible duplicate, never a loss or a failover after the
 * dot). A small body goes with its dot in one corked write (`sent` first); a larger one is `sent`
 * when the socket has taken it, then the dot follows: a reset while it is still going out is a
 * connection lost before the end of the data, which may safely fail over.
 *
 * With a `beforeFinalDot` hook (a delivery from the spool), the body is written, the hook awaited,
 * and only then the dot: never the body and its dot in one write. A failed hook closes the socket
 * before the dot (the upstream discards an unfinished DATA, RFC 5321 §4.1.4).
 */
export class DirectBody {
  phase: AttemptPhase = 'envelope';
  bodyStartedAt: number | null = null;
  #body: Buffer;
  #socket: Socket | null = null;
  #beforeFinalDot: BeforeFinalDot | null;

  constructor(body: Buffer, beforeFinalDot: BeforeFinalDot | null = null) {
    this.#body = body;
    this.#beforeFinalDot = beforeFinalDot;
  }

  /** The upstream socket the body is written to (set by UpstreamConnection.send). */
  attach(socket: Socket): void {
    this.#socket = socket;
  }

  /** Called by nodemailer with its DataStream, which is already piped to the socket. */
  pipe(dataStream: Readable & Writable): Writable {
    this.bodyStartedAt = performance.now();
    this.phase = 'body';
    const socket = this.#socket;
    const hook = this.#beforeFinalDot;
    if (!socket) {
      if (hook === null) {
        dataStream.end(this.#body);
        this.phase = 'sent';
      } else {
        dataStream.write(this.#body);
        hook().then(
          () => {
            this.phase = 'sent';
            dataStream.end();
          },
          (err: unknown) => dataStream.destroy(err as Error),
        );
      }
      return dataStream;
    }
    dataStream.unpipe(socket);
    // Whatever the emptied DataStream still produces (its own terminator) goes nowhere.
    dataStream.resume();
    dataStream.end();
    if (hook !== null) {
      socket.write(this.#body);
      hook().then(
        () => {
          if (socket.destroyed) return; // the connection is gone: nodemailer reports it
          this.phase = 'sent';
          socket.write(TERMINATOR);
        },
        (err: unknown) => socket.destroy(err as Error),
      );
    } else if (this.#body.length <= ONE_WRITE) {
      socket.cork();
      socket.write(this.#body);
      this.phase = 'sent';
      socket.write(TERMINATOR);
      process.nextTick(() => socket.uncork());
    } else {
      socket.write(this.#body, (err) => {
        if (err) return; // the connection is gone: nodemailer reports it; the dot never went out
        this.phase = 'sent';
        socket.write(TERMINATOR);
      });
    }
    return dataStream;
  }

  /** Nothing to release (the body belongs to the transaction); here for TrackedBody's interface. */
  destroy(): void {}
}
