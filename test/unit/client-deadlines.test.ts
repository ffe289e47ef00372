import { describe, expect, it } from 'vitest';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { ClientDeadlines, missingDeadlineInternals } from '../../src/listener/client-deadlines.js';
import { thrown } from '../helpers/thrown.js';

/** Replaces a prototype method for the duration of `fn` and puts back exactly the same descriptor. */
function withMethod<T>(name: string, replacement: (...args: never[]) => unknown, fn: () => T): T {
  const proto = SMTPConnection.prototype as unknown as Record<string, unknown>;
  const original = Object.getOwnPropertyDescriptor(proto, name);
  if (!original) throw new Error(`${name} is not an own property of the prototype`);
  try {
    Object.defineProperty(proto, name, { ...original, value: replacement });
    return fn();
  } finally {
    Object.defineProperty(proto, name, original);
  }
}

const LIMITS = { command: 120_000, session: 600_000, dataMinRate: 500 };

describe('the smtp-server behaviour the client deadlines rely on', () => {
  it('is all there in the installed smtp-server', () => {
    expect(missingDeadlineInternals()).toEqual([]);
  });

  it('fails loudly, with code ESMTPSERVERINTERNALS, when DATA sends its 354 before handing the message to onData', () => {
    // The watch learns that a message is arriving from onData; a 354 first would start the command deadline instead.
    const reshaped = function handler_DATA(this: { send(c: number, t: string): void; _server: { onData(): void } }) {
      this.send(354, 'End data with <CR><LF>.<CR><LF>');
      this._server.onData();
    };
    const err = withMethod('handler_DATA', reshaped, () => thrown(() => new ClientDeadlines(LIMITS, () => '')));
    expect(err?.code).toBe('ESMTPSERVERINTERNALS');
    expect(err?.message).toContain('SMTPConnection.handler_DATA');
  });

  it('fails loudly when a 421 no longer closes the connection', () => {
    const reshaped = function send(this: { _socket: { write(s: string): void } }, code: number, data: string) {
      this._socket.write(`${code} ${data}\r\n`);
    };
    const err = withMethod('send', reshaped, () => thrown(() => new ClientDeadlines(LIMITS, () => '')));
    expect(err?.code).toBe('ESMTPSERVERINTERNALS');
    expect(err?.message).toContain('SMTPConnection.send');
  });
});
