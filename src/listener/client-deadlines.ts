import type { Readable } from 'node:stream';
import type { SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { ServerTimeoutsConfig } from '../config/types.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';
import { CLIENT_REPLIES, commandTooSlowReply, dataTooSlowReply } from '../reply/client-replies.js';
import { ERR } from '../error-codes.js';

/**
 * Deadlines that hold a slow client to account (docs/config.md, `timeouts.command`, `.session`,
 * `.dataMinRate`). smtp-server's idle timer (`timeouts.clientIdle`) restarts with every byte, so a
 * client that sends one byte every few seconds keeps its connection, and its slot, for ever. Three
 * limits that no byte restarts:
 *
 * - **command**: from the moment the server waits for a command (greeting sent, previous reply sent,
 *   334 continuation asked for, STARTTLS's 220 sent) until the line is complete. Idle time counts, so
 *   it is never below `clientIdle`.
 * - **dataMinRate**: message data must arrive at this average rate. Measured as credit, as Postfix's
 *   per-request deadlines do (smtpd_min_data_rate): the DATA phase starts with `command` worth of
 *   credit; elapsed time spends it, each byte earns 1/dataMinRate s of it, and it never exceeds
 *   `command`, so a client may fall behind the pace (a slow start, a stalled link) by that much and
 *   no more. A 50 MB message over any link faster than the minimum rate gets through, however long it
 *   takes.
 * - **session**: the whole connection. A transaction in flight is never cut: when the deadline falls
 *   during a message (data arriving, or being relayed) the session ends right after its reply; when
 *   it falls with an envelope open (MAIL accepted, no DATA yet) the client has `command` more to
 *   reach DATA. Between transactions the session ends at once.
 *
 * A cut is a 421 4.4.2 naming the limit, after which smtp-server closes the connection. Command and
 * session cuts are `reject` records (classes `client_too_slow` and `client_timeout`); a message cut
 * ends its stream with a SlowClientError, so the transaction answers the 421 and its `relay` record
 * (class `client_too_slow`) is the one record of it.
 *
 * One timer per connection, set for the earliest deadline and re-planned when it fires, so a busy
 * connection costs a timestamp per command, not a timer.
 */

/** The smtp-server connection members a watch wraps (checked at start-up, missingDeadlineInternals). */
export interface WatchedConnection {
  readonly id: string;
  readonly session: SMTPServerSession;
  send(code: number, data?: string | string[], context?: unknown): void;
  _onCommand(command: Buffer | string, callback: () => void): void;
}

/** The stream smtp-server hands to onData; `byteLength` counts the data received so far (documented). */
export interface MessageStream extends Readable {
  readonly byteLength: number;
}

export type DeadlineLimits = Pick<ServerTimeoutsConfig, 'command' | 'session' | 'dataMinRate'>;

/** Writes the `reject` record of a command or session cut; returns the wire text of the 421, its id included. */
export type RecordCut = (session: SMTPServerSession, name: 'command_too_slow' | 'session_ended', command: 'COMMAND' | 'SESSION', reply: SmtpReply) => string;

/** The least time between two rate checks of one message, however close to the limit it is. */
const MIN_CHECK_MS = 250;

/**
 * Ends the data stream of a message arriving under `timeouts.dataMinRate`. The transaction finds it
 * as the cause of its receive error and answers with `reply` (transaction/transaction.ts).
 */
export class SlowClientError extends Error {
  readonly code = ERR.CLIENT_SLOW;
  readonly reply: SmtpReply;

  constructor(reply: SmtpReply, message: string) {
    super(message);
    this.name = 'SlowClientError';
    this.reply = reply;
  }
}

/** The deadlines of every connection of one listener set. */
export class ClientDeadlines {
  #limits: DeadlineLimits;
  #record: RecordCut;
  #now: () => number;
  #clocks = new Map<string, SessionClock>();

  constructor(limits: DeadlineLimits, record: RecordCut, now: () => number = () => performance.now()) {
    assertInternals();
    this.#limits = limits;
    this.#record = record;
    this.#now = now;
  }

  /** From the connection's creation (the TLS handshake of STARTTLS and the greeting included). */
  watch(connection: WatchedConnection): void {
    this.#clocks.set(connection.id, new SessionClock(connection, this.#limits, this.#record, this.#now));
  }

  /** A message starts arriving (onData, just before the 354). */
  receiving(sessionId: string, stream: MessageStream): void {
    this.#clocks.get(sessionId)?.receiving(stream);
  }

  /** The connection closed (onClose). */
  forget(sessionId: string): void {
    this.#clocks.get(sessionId)?.stop();
    this.#clocks.delete(sessionId);
  }
}

type Phase =
  /** The server waits for a command line: `command` runs. */
  | 'waiting'
  /** A command is being handled (AUTH being checked, MAIL decided): the client waits for us. */
  | 'busy'
  /** Message data is arriving: the rate is checked. */
  | 'data'
  /** The message is in, or was cut short; the reply to it is pending. */
  | 'relaying'
  | 'closed';

class SessionClock {
  readonly #connection: WatchedConnection;
  readonly #limits: DeadlineLimits;
  readonly #record: RecordCut;
  readonly #now: () => number;
  readonly #endsAt: number;
  #phase: Phase = 'waiting';
  #waitingSince: number;
  #expired = false;
  #stream: MessageStream | null = null;
  #dataSince = 0;
  /** How far (ms) the message may still fall behind the minimum rate. */
  #credit = 0;
  #checkedAt = 0;
  #bytesAt = 0;
  #timer: NodeJS.Timeout | null = null;
  #wakeAt = Number.POSITIVE_INFINITY;

  constructor(connection: WatchedConnection, limits: DeadlineLimits, record: RecordCut, now: () => number) {
    this.#connection = connection;
    this.#limits = limits;
    this.#record = record;
    this.#now = now;
    const t = now();
    this.#waitingSince = t;
    this.#endsAt = t + limits.session;
    this.#wrap();
    this.#plan(t);
  }

  receiving(stream: MessageStream): void {
    if (this.#phase === 'closed') return;
    const now = this.#now();
    this.#phase = 'data';
    this.#stream = stream;
    this.#dataSince = now;
    this.#credit = this.#limits.command;
    this.#checkedAt = now;
    this.#bytesAt = stream.byteLength;
    const over = (): void => {
      if (this.#phase !== 'data' || this.#stream !== stream) return;
      this.#phase = 'relaying';
      this.#stream = null;
    };
    stream.once('end', over);
    stream.once('close', over);
    this.#plan(now);
  }

  stop(): void {
    this.#phase = 'closed';
    this.#stream = null;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#wakeAt = Number.POSITIVE_INFINITY;
  }

  #wrap(): void {
    const connection = this.#connection;
    const send = connection.send;
    connection.send = (code, data, context) => {
      send.call(connection, code, data, context);
      this.#replied(code);
    };
    const onCommand = connection._onCommand;
    connection._onCommand = (command, callback) => {
      if (this.#phase === 'waiting') this.#phase = 'busy';
      onCommand.call(connection, command, () => {
        // Handled without a reply (a plaintext line dropped during a TLS upgrade): waiting again.
        if (this.#phase === 'busy') this.#waiting(false);
        callback?.();
      });
    };
  }

  /** After smtp-server wrote a reply. */
  #replied(code: number): void {
    if (this.#phase === 'closed') return;
    // smtp-server closes the connection after every 421 (our cuts, its idle timeout, shutdown).
    if (code === 421) return this.stop();
    if (code === 354) {
      if (this.#phase !== 'data') this.#phase = 'data';
      return;
    }
    // The reply to a message ends its transaction; any other reply ends a command.
    this.#waiting(this.#phase === 'data' || this.#phase === 'relaying');
  }

  #waiting(afterMessage: boolean): void {
    const now = this.#now();
    this.#phase = 'waiting';
    this.#waitingSince = now;
    this.#stream = null;
    if (now >= this.#endsAt) this.#expired = true;
    // Synchronously, so nothing the client pipelined behind the message runs after the deadline.
    if (this.#expired && this.#mayEnd(now, afterMessage)) return this.#cut('session');
    this.#plan(now);
  }

  /** Past the session deadline: end now, unless an envelope is open and still within its grace. */
  #mayEnd(now: number, afterMessage: boolean): boolean {
    const envelopeOpen = !afterMessage && Boolean(this.#connection.session.envelope?.mailFrom);
    return !envelopeOpen || now >= this.#endsAt + this.#limits.command;
  }

  #check(): void {
    this.#timer = null;
    this.#wakeAt = Number.POSITIVE_INFINITY;
    if (this.#phase === 'closed') return;
    const now = this.#now();
    if (now >= this.#endsAt) this.#expired = true;
    if (this.#phase === 'waiting') {
      if (this.#expired && this.#mayEnd(now, false)) return this.#cut('session');
      if (now - this.#waitingSince >= this.#limits.command) return this.#cut('command');
    } else if (this.#phase === 'data' && this.#stream && !this.#keepingUp(this.#stream, now)) {
      return this.#cutMessage(this.#stream, now);
    }
    this.#plan(now);
  }

  /** Spends the time since the last check, earns the bytes since; false once the credit is gone. */
  #keepingUp(stream: MessageStream, now: number): boolean {
    const bytes = stream.byteLength;
    const earned = ((bytes - this.#bytesAt) * 1000) / this.#limits.dataMinRate;
    this.#credit = Math.min(this.#limits.command, this.#credit - (now - this.#checkedAt) + earned);
    this.#checkedAt = now;
    this.#bytesAt = bytes;
    return this.#credit > 0;
  }

  /** Sets the timer for the earliest deadline that can fall in the current phase. */
  #plan(now: number): void {
    let at = this.#expired ? Number.POSITIVE_INFINITY : this.#endsAt;
    if (this.#phase === 'waiting') {
      at = Math.min(at, this.#waitingSince + this.#limits.command);
      if (this.#expired) at = Math.min(at, this.#endsAt + this.#limits.command);
    } else if (this.#phase === 'data') {
      at = Math.min(at, now + Math.max(this.#credit, MIN_CHECK_MS));
    }
    // A timer already set for earlier plans again when it fires.
    if (at === Number.POSITIVE_INFINITY || at >= this.#wakeAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#wakeAt = at;
    this.#timer = setTimeout(() => this.#check(), Math.max(0, at - now));
    this.#timer.unref();
  }

  #cut(kind: 'command' | 'session'): void {
    const reply: SmtpReply = kind === 'command' ? commandTooSlowReply(this.#limits.command) : CLIENT_REPLIES.session_ended;
    const name = kind === 'command' ? 'command_too_slow' : 'session_ended';
    const text = this.#record(this.#connection.session, name, kind === 'command' ? 'COMMAND' : 'SESSION', reply);
    this.stop();
    this.#connection.send(reply.code, text);
  }

  #cutMessage(stream: MessageStream, now: number): void {
    const rate = this.#limits.dataMinRate;
    const reply = dataTooSlowReply(rate);
    const err = new SlowClientError(
      reply,
      `message data under timeouts.dataMinRate (${rate} bytes/s): ${stream.byteLength} bytes in ${seconds(now - this.#dataSince)}`,
    );
    this.#phase = 'relaying';
    this.#stream = null;
    // The transaction reads the stream and listens for its errors; smtp-server does the same check.
    stream.destroy(stream.listenerCount('error') > 0 ? err : undefined);
    this.#plan(now);
  }
}

function seconds(ms: number): string {
  return `${Math.max(1, Math.round(ms / 1000))} s`;
}

/**
 * What the watch relies on besides its two wrapped methods: onData is called before the 354 goes
 * out (so the 354 finds the message watched), and every 421 closes the connection (so the watch
 * stops on it). Exported for the test that proves an upgrade which changes these fails loudly.
 */
export function missingDeadlineInternals(): string[] {
  const conn = SMTPConnection.prototype as unknown as Record<string, unknown>;
  const missing: string[] = [];
  for (const name of ['send', '_onCommand', 'handler_DATA']) {
    if (typeof conn[name] !== 'function') missing.push(`SMTPConnection.${name}`);
  }
  if (!/_server\.onData\([\s\S]*this\.send\(354/.test(String(conn['handler_DATA']))) missing.push('SMTPConnection.handler_DATA (shape changed)');
  if (!/code === 421\)[\s\S]*this\.close\(\)/.test(String(conn['send']))) missing.push('SMTPConnection.send (shape changed)');
  return missing;
}

function assertInternals(): void {
  const missing = missingDeadlineInternals();
  if (missing.length > 0) {
    throw Object.assign(new Error(`smtp-server internals changed (${missing.join(', ')}); the client deadlines must be revisited`), {
      code: ERR.SMTP_SERVER_INTERNALS,
    });
  }
}
