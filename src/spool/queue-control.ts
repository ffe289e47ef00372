/**
 * The relay's side of the control protocol (queue-protocol.ts): one request per connection, read as
 * a line of JSON within a few seconds, answered through QueueAdmin, closed. A listing is written one
 * entry at a time, waiting for the reader (a slow `mailtrail queue list | less` holds one socket's
 * buffer, never the whole spool in memory). Whatever goes wrong is answered as an error line; nothing
 * a client sends can stop the relay.
 */
import type { Socket } from 'node:net';
import type { SpoolActor } from '../audit/records.js';
import { ERR } from '../error-codes.js';
import type { Logger } from '../logger.js';
import { QueueActionError, type QueueAdmin, type QueueErrorCode } from './queue-admin.js';
import { controlRequest, MAX_REQUEST_BYTES, type ControlEnd, type ParsedControlRequest } from './queue-protocol.js';

/** A client must send its request within this long. */
const REQUEST_TIMEOUT_MS = 5_000;
/** A reader that takes nothing for this long is dropped. */
const IDLE_TIMEOUT_MS = 60_000;

export class QueueControl {
  /** null: this relay has no spool (no listener or user spools): every request is answered so. */
  readonly #admin: QueueAdmin | null;
  readonly #log: Logger;
  readonly #sockets = new Set<Socket>();
  readonly #running = new Set<Promise<void>>();
  #closed = false;

  constructor(admin: QueueAdmin | null, log: Logger) {
    this.#admin = admin;
    this.#log = log;
  }

  /** Takes a connection to the control socket. */
  handle(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
    let buffered = '';
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      const newline = buffered.indexOf('\n');
      if (newline === -1) {
        // A knock (a process checking the lock) or a client too slow or too long: nothing to answer.
        if (Buffer.byteLength(buffered) > MAX_REQUEST_BYTES) void this.#end(socket, failure(ERR.CONTROL, 'the request is too long'));
        return;
      }
      socket.off('data', onData);
      socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
      const run = this.#answer(socket, buffered.slice(0, newline)).finally(() => this.#running.delete(run));
      this.#running.add(run);
    };
    socket.on('data', onData);
  }

  /** New connections are refused; requests being answered finish (the spool closes after this). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#running]);
    for (const socket of this.#sockets) socket.destroy();
  }

  async #answer(socket: Socket, line: string): Promise<void> {
    let request: ParsedControlRequest;
    try {
      request = controlRequest.parse(JSON.parse(line));
    } catch (err) {
      const why =
        err instanceof SyntaxError
          ? 'not JSON'
          : ((err as { issues?: { path: PropertyKey[]; message: string }[] }).issues?.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ') ??
            'invalid');
      return this.#end(socket, failure(ERR.CONTROL, `the request was not understood (${why}); is mailtrail queue the same version as the relay?`));
    }
    const admin = this.#admin;
    if (admin === null) return this.#end(socket, failure(ERR.CONTROL, 'this relay has no spool: no listener or user is in spool or hybrid mode'));
    try {
      await this.#end(socket, await this.#run(admin, request, socket));
    } catch (err) {
      if (err instanceof QueueActionError) return this.#end(socket, failure(err.code, err.message));
      this.#log.error({ err, op: request.op }, 'queue control request failed');
      return this.#end(socket, failure(ERR.CONTROL, `the relay could not do it: ${(err as Error).message}`));
    }
  }

  async #run(admin: QueueAdmin, request: ParsedControlRequest, socket: Socket): Promise<ControlEnd> {
    switch (request.op) {
      case 'list': {
        let count = 0;
        for await (const entry of admin.list({ state: request.state, query: request.query })) {
          if (socket.destroyed) return { ok: true, count };
          count += 1;
          if (!socket.write(JSON.stringify({ entry }) + '\n')) await drained(socket);
        }
        return { ok: true, count };
      }
      case 'show':
        return { ok: true, entry: await admin.show(request.id) };
      case 'act': {
        const result = await admin.act({ id: request.id, action: request.action, by: actor(request.user), reason: request.reason });
        this.#log.info({ id: result.id, action: result.action, changed: result.changed, by: actor(request.user) }, 'queue action');
        return { ok: true, result };
      }
      case 'retry-all': {
        const result = await admin.retryAll(actor(request.user), request.reason);
        this.#log.info({ ...result, by: actor(request.user) }, 'queue action: retry every queued message');
        return { ok: true, result };
      }
    }
  }

  #end(socket: Socket, end: ControlEnd): Promise<void> {
    return new Promise((resolve) => {
      if (socket.destroyed) return resolve();
      socket.end(JSON.stringify(end) + '\n', () => resolve());
    });
  }
}

/** The operator behind a request on the control socket: a local user, no address. */
function actor(user: string | null): SpoolActor {
  return { channel: 'cli', user, address: null };
}

function failure(code: QueueErrorCode, message: string): ControlEnd {
  return { ok: false, error: { code, message } };
}

function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.once('drain', done);
    socket.once('close', done);
  });
}
