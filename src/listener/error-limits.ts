import type { LimitsConfig } from '../config/types.js';

/** What the limits need of an smtp-server connection (checked at start-up by fast-greeting.ts). */
export interface SlowedConnection {
  readonly id: string;
  /** smtp-server's parser passes no callback for a last line without CRLF at the end of the stream. */
  _onCommand(command: Buffer | string, callback?: () => void): void;
}

/**
 * Error limits of one client connection, as Postfix's smtpd has them (smtpd_soft_error_limit,
 * smtpd_hard_error_limit, smtpd_error_sleep_time):
 *
 * - every refusal the client provokes is an error; the upstream's verdicts on relayed messages are not,
 *   and a delivered message forgives the errors before it (smtpd.c: "Forgive any previous client errors
 *   when a message was received successfully"), so an app whose mail the provider refuses is never cut off;
 * - from `softErrorLimit` errors on, every reply waits `errorDelay` (smtpd_chat.c sleeps before each
 *   reply), so a client that keeps erring gets one reply a second;
 * - at `hardErrorLimit` errors the server says `421 4.7.0 Error: too many errors` right after the reply
 *   that made the count, and closes the connection.
 *
 * The count itself lives with the connection's state (an integer); this holds the limits and slows
 * the connection down.
 */
export class ErrorLimits {
  #limits: Pick<LimitsConfig, 'softErrorLimit' | 'hardErrorLimit' | 'errorDelay'>;

  constructor(limits: Pick<LimitsConfig, 'softErrorLimit' | 'hardErrorLimit' | 'errorDelay'>) {
    this.#limits = limits;
  }

  /** True when a connection with `errors` errors is to be cut off. */
  reached(errors: number): boolean {
    return errors >= this.#limits.hardErrorLimit;
  }

  /** How long the reply to the next command waits. */
  delay(errors: number): number {
    return errors >= this.#limits.softErrorLimit ? this.#limits.errorDelay : 0;
  }

  /**
   * Makes each command of `connection` wait `delay(errors)` before it is handled, which delays its
   * reply; smtp-server reads the next command only once this one is done, so pipelined commands wait
   * in turn. `errorsOf` returns null once the connection's session has ended: a command still waiting
   * then is dropped (the parser is closed; nothing could be answered).
   */
  slowDown(connection: SlowedConnection, errorsOf: () => number | null): void {
    const onCommand = connection._onCommand;
    connection._onCommand = (command, callback) => {
      const errors = errorsOf();
      const wait = errors === null ? 0 : this.delay(errors);
      if (wait === 0) return onCommand.call(connection, command, callback);
      const timer = setTimeout(() => {
        if (errorsOf() === null) return callback?.();
        onCommand.call(connection, command, callback);
      }, wait);
      // A client left waiting must not keep a stopping process alive.
      timer.unref();
    };
  }
}
