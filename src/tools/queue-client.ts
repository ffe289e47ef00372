/**
 * The client side of the control protocol (spool/queue-protocol.ts): one request to the running relay
 * over its data folder's lock socket, its answer read line by line.
 */
import net from 'node:net';
import { MAX_REQUEST_BYTES, type ControlEnd, type ControlRequest } from '../spool/queue-protocol.js';

export type RelayAnswer =
  /** The relay answered; `end` is its last line. */
  | { readonly kind: 'answer'; readonly end: ControlEnd }
  /** Nobody listens on the socket (or there is none): the relay is not running. */
  | { readonly kind: 'not-running' }
  /** The socket is there but could not be used, or the answer broke off: why, in words. */
  | { readonly kind: 'failed'; readonly why: string };

/** An answer stalled this long is given up. */
const IDLE_TIMEOUT_MS = 60_000;
/** An answer line longer than this is not the relay's (an entry is a few KB). */
const MAX_LINE = 16 * 1024 * 1024;

/**
 * Sends `request` to the relay listening on `socketPath`; each `{"entry": ...}` line goes to `onEntry`
 * (awaited: a slow reader slows the relay's writing, not its memory) before the last line resolves.
 */
export function askRelay(
  socketPath: string,
  request: ControlRequest,
  onEntry: (entry: unknown) => void | Promise<void> = () => undefined,
): Promise<RelayAnswer> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    let settled = false;
    let buffered = '';
    let chain = Promise.resolve();
    const finish = (answer: RelayAnswer): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(IDLE_TIMEOUT_MS, () => finish({ kind: 'failed', why: `the relay did not answer within ${IDLE_TIMEOUT_MS / 1000} s` }));
    socket.once('connect', () => {
      const line = JSON.stringify(request) + '\n';
      if (Buffer.byteLength(line) > MAX_REQUEST_BYTES) return finish({ kind: 'failed', why: 'the request is too long' });
      socket.write(line);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'unknown error';
      if (code === 'ENOENT' || code === 'ECONNREFUSED') return finish({ kind: 'not-running' });
      if (code === 'EACCES' || code === 'EPERM') {
        return finish({ kind: 'failed', why: `permission denied on ${socketPath}: run mailtrail queue as the user the relay runs as` });
      }
      finish({ kind: 'failed', why: `${socketPath}: ${code}` });
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MAX_LINE) return finish({ kind: 'failed', why: 'an answer line is too long' });
      let newline: number;
      while ((newline = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        let value: { entry?: unknown; ok?: unknown };
        try {
          value = JSON.parse(line) as { entry?: unknown; ok?: unknown };
        } catch {
          return finish({ kind: 'failed', why: 'the answer is not JSON lines: is something else listening there?' });
        }
        if (typeof value.ok === 'boolean') {
          const end = value as ControlEnd;
          void chain.then(() => finish({ kind: 'answer', end }));
          return;
        }
        socket.pause();
        chain = chain.then(() => onEntry(value.entry)).then(() => void socket.resume());
      }
    });
    socket.once('close', () => void chain.then(() => finish({ kind: 'failed', why: 'the relay closed the connection before it finished answering' })));
  });
}
