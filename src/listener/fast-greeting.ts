import type { Socket } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { ERR } from '../error-codes.js';

/**
 * smtp-server waits a hard-coded 100 ms before every greeting to catch clients that talk too early
 * (smtp-connection.js `init()`). For apps that open one connection per message that adds 100 ms to
 * each send and caps a relay at a few hundred messages per second with the CPU idle. mailtrail's
 * clients are the operator's own applications, not the open Internet, so the early-talker check buys
 * nothing here: we greet at once.
 *
 * The change is per server instance (no global patching): `connect()` builds a connection whose
 * `init()` skips the timer and otherwise does what the library's `init()` does. It leans on two
 * internals (`_setListeners`, `connectionReady`), so it checks for them and throws at start-up
 * when an upgrade renamed them, instead of silently greeting late or never. The check also covers
 * the other internals the listener relies on: the AUTH guard's (listener.ts) and the PROXY gate's
 * `_handleProxy` seam (proxy-gate.ts).
 */
export function removeGreetingDelay(server: SMTPServer, decorate?: (connection: ConnectionInternals, socketOptions: unknown) => void): void {
  assertInternals();
  const srv = server as unknown as ServerInternals;
  srv.connect = function connect(socket: Socket, socketOptions: unknown): void {
    const connection = new SMTPConnection(server, socket, socketOptions as never) as unknown as ConnectionInternals;
    decorate?.(connection, socketOptions);
    srv.connections.add(connection);
    connection.on('error', (err: Error) => srv._onError(err));
    connection.on('connect', (data: unknown) => srv._onClientConnect(data));
    connection._setListeners(() => {
      if (srv.options.maxClients && srv.connections.size > srv.options.maxClients) {
        return connection.send(421, `${connection.name} Too many connected clients, try again in a moment`, false);
      }
      connection.connectionReady();
    });
  };
}

export interface ConnectionInternals {
  id: string;
  name: string;
  secure: boolean;
  session: import('smtp-server').SMTPServerSession;
  handler_AUTH(command: Buffer | string, callback: () => void): void;
  handler_EHLO(command: Buffer | string, callback: () => void): void;
  _isSupported(command: string): boolean;
  _onCommand(command: Buffer | string, callback: () => void): void;
  on(event: string, listener: (arg: never) => void): void;
  send(code: number, data?: string | string[], context?: unknown): void;
  _setListeners(callback: () => void): void;
  connectionReady(): void;
}

interface ServerInternals {
  options: { maxClients?: number };
  connections: Set<unknown>;
  connect(socket: Socket, socketOptions: unknown): void;
  _onError(err: Error): void;
  _onClientConnect(data: unknown): void;
}

/** Exported for the test that proves an upgrade which renames these fails loudly. */
export function missingInternals(): string[] {
  const conn = SMTPConnection.prototype as unknown as Record<string, unknown>;
  const srv = SMTPServer.prototype as unknown as Record<string, unknown>;
  const missing: string[] = [];
  for (const name of ['_setListeners', 'connectionReady', 'init', 'send', 'handler_AUTH', 'handler_EHLO', '_isSupported', '_onCommand']) {
    if (typeof conn[name] !== 'function') missing.push(`SMTPConnection.${name}`);
  }
  for (const name of ['connect', '_onError', '_onClientConnect', '_handleProxy']) {
    if (typeof srv[name] !== 'function') missing.push(`SMTPServer.${name}`);
  }
  // The PROXY gate (proxy-gate.ts) replaces _handleProxy: the accept handler must still call it, and
  // hand its socket options on to connect(), for every socket.
  if (!/this\._handleProxy\(socket,\s*\(err, socketOptions\)/.test(String(SMTPServer))) missing.push('SMTPServer accept handler (no _handleProxy call)');
  // The delay we remove must still be what init() does; if init() changed shape, our copy is stale.
  const initSource = String(conn['init']);
  if (!/setTimeout\(\s*\(\)\s*=>\s*this\.connectionReady\(\)/.test(initSource)) missing.push('SMTPConnection.init (shape changed)');
  // The listener hides AUTH from EHLO on plaintext by answering _isSupported('AUTH') with false while
  // handler_EHLO runs; that only works while EHLO asks _isSupported('AUTH') for its feature list.
  if (!/this\._isSupported\('AUTH'\)/.test(String(conn['handler_EHLO']))) missing.push('SMTPConnection.handler_EHLO (shape changed)');
  return missing;
}

function assertInternals(): void {
  const missing = missingInternals();
  if (missing.length > 0) {
    throw Object.assign(new Error(`smtp-server internals changed (${missing.join(', ')}); the greeting-delay removal must be revisited`), {
      code: ERR.SMTP_SERVER_INTERNALS,
    });
  }
}
