import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { missingInternals, removeGreetingDelay } from '../../src/listener/fast-greeting.js';
import { smtpTalk } from '../helpers/smtp-client.js';
import { thrown } from '../helpers/thrown.js';

/** A plain smtp-server on 127.0.0.1:0, optionally with the greeting delay removed. */
async function startServer(opts: { fast: boolean; maxClients?: number }): Promise<{ server: SMTPServer; port: number }> {
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    banner: opts.fast ? 'fast' : 'library',
    // Like mailtrail's listener, decide at once: the library's default onConnect answers on the next
    // tick, which would leave its own short window for "You talk too soon".
    onConnect: (_session, cb) => cb(),
    ...(opts.maxClients !== undefined ? { maxClients: opts.maxClients } : {}),
  });
  if (opts.fast) removeGreetingDelay(server);
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.server.address() as net.AddressInfo).port };
}

/** Milliseconds from connect() to the first byte the server sends. */
function timeToFirstByte(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('data', () => {
      resolve(performance.now() - t0);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/** Removes a prototype property for the duration of `fn` and puts back exactly the same descriptor. */
function withoutProperty<T>(proto: object, name: string, replacement: PropertyDescriptor | null, fn: () => T): T {
  const original = Object.getOwnPropertyDescriptor(proto, name);
  if (!original) throw new Error(`${name} is not an own property of the prototype`);
  try {
    delete (proto as Record<string, unknown>)[name];
    if (replacement) Object.defineProperty(proto, name, replacement);
    return fn();
  } finally {
    Object.defineProperty(proto, name, original);
  }
}

describe("removing smtp-server's greeting delay", () => {
  const servers: SMTPServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  });
  async function server(opts: { fast: boolean; maxClients?: number }): Promise<number> {
    const s = await startServer(opts);
    servers.push(s.server);
    return s.port;
  }

  it('finds every internal it relies on in the installed smtp-server', () => {
    expect(missingInternals()).toEqual([]);
  });

  it('fails loudly, with code ESMTPSERVERINTERNALS, when an upgrade renames connectionReady', () => {
    const target = new SMTPServer({ logger: false });
    const proto = SMTPConnection.prototype as object;
    const original = Object.getOwnPropertyDescriptor(proto, 'connectionReady')!;
    const err = withoutProperty(proto, 'connectionReady', null, () => {
      Object.defineProperty(proto, 'connectionIsReady', { ...original, configurable: true });
      try {
        return thrown(() => removeGreetingDelay(target));
      } finally {
        delete (proto as Record<string, unknown>)['connectionIsReady'];
      }
    });
    expect(err).not.toBeNull();
    expect(err!.code).toBe('ESMTPSERVERINTERNALS');
    expect(err!.message).toContain('SMTPConnection.connectionReady');
    expect(missingInternals()).toEqual([]);
  });

  it('fails loudly when init() no longer has the delay it replaces', () => {
    const target = new SMTPServer({ logger: false });
    const proto = SMTPConnection.prototype as object;
    const reshaped: PropertyDescriptor = {
      configurable: true,
      writable: true,
      enumerable: false,
      value: function init(this: { _setListeners(cb: () => void): void; connectionReady(): void }) {
        this._setListeners(() => this.connectionReady());
      },
    };
    const err = withoutProperty(proto, 'init', reshaped, () => thrown(() => removeGreetingDelay(target)));
    expect(err?.code).toBe('ESMTPSERVERINTERNALS');
    expect(err?.message).toContain('SMTPConnection.init (shape changed)');
  });

  it('greets a client that speaks before the greeting, then answers its EHLO', async () => {
    const port = await server({ fast: true });
    const talk = await smtpTalk(port);
    talk.send('EHLO early.test');
    const greeting = await talk.expect(220);
    expect(greeting.text).toContain('fast');
    const ehlo = await talk.expect(250);
    expect(ehlo.lines[0]).toMatch(/^250-/);
    talk.close();
  });

  it('(control) the library\'s own delay cuts the same early talker off with "You talk too soon"', async () => {
    // Also shows the removal is per server instance: this one, built afterwards, still has the delay.
    const port = await server({ fast: false });
    const talk = await smtpTalk(port);
    talk.send('EHLO early.test');
    const reply = await talk.expect();
    expect(reply.code).toBe(421);
    expect(reply.text).toContain('You talk too soon');
    talk.close();
  });

  it("sends the greeting well within the library's 100 ms delay", async () => {
    const port = await server({ fast: true });
    const times: number[] = [];
    for (let i = 0; i < 5; i++) times.push(await timeToFirstByte(port));
    times.sort((a, b) => a - b);
    expect(times[2]).toBeLessThan(50);
  });

  it("keeps the library's maxClients refusal", async () => {
    const port = await server({ fast: true, maxClients: 1 });
    const first = await smtpTalk(port);
    await first.expect(220);
    const second = await smtpTalk(port);
    const reply = await second.expect();
    expect(reply.code).toBe(421);
    expect(reply.text).toContain('Too many connected clients');
    await second.waitClosed();
    first.close();
  });
});
