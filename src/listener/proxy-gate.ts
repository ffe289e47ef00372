import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { SMTPServer } from 'smtp-server';
import type { ProxyFacts } from '../audit/records.js';
import type { CidrList } from '../admission/cidr-list.js';
import { unmapIpv4 } from '../client-address.js';
import { readProxyHeader, type ProxyHeader } from './proxy-header.js';

/** Why a connection to a `proxyProtocol` listener was refused before its SMTP session. */
export interface ProxyRefusal {
  /** `untrusted`: the peer is not in `trustedProxies`; `invalid`: a trusted peer sent no valid header in time. */
  readonly kind: 'untrusted' | 'invalid';
  /** What was wrong, for the log: the parser's reason, a timeout, an early close. */
  readonly reason: string;
  /** The connection's id (the `session.id` of its record), made here as smtp-server makes its own. */
  readonly sessionId: string;
  /** The peer of the TCP connection. */
  readonly peer: { readonly ip: string; readonly port: number };
  /** The header version, when the bytes got far enough to tell. */
  readonly version: 'v1' | 'v2' | null;
}

export interface ProxyGateOptions {
  readonly trusted: CidrList;
  /** `timeouts.proxyHeader`: from accept until the header is complete. */
  readonly timeoutMs: number;
  /**
   * Records and logs the refusal; returns the reply line to write (the peer may be a client behind a
   * misconfigured proxy, which then sees why), or null to close without a word. A promise when the
   * connection rate it counts against is the fleet's (Redis).
   */
  readonly refuse: (refusal: ProxyRefusal) => string | null | Promise<string | null>;
}

/** What the gate hands to smtp-server's connect() (SMTPConnection reads `id`, `remoteAddress`, `remotePort`). */
interface GateSocketOptions {
  readonly id: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly proxy: ProxyFacts;
}

/** How long a refused socket stays open for its reply line to be delivered. */
const REFUSAL_LINGER_MS = 1_000;

/**
 * The PROXY protocol on one listener (docs/fleet.md, "PROXY protocol"). smtp-server reads its own
 * PROXY header in `_handleProxy(socket, callback)`, between accepting a socket and handing it to
 * `connect()` (after the TLS handshake on an implicit-TLS listener), and waits for its callback: this
 * replaces that method on this server instance (no global patching; fast-greeting.ts checks at
 * start-up that the seam is still there). Then:
 *
 * - a peer outside `trustedProxies` is refused at once: the listener is its load balancers' door, and
 *   a receiver must not guess whether a header is coming (the spec, §2); its header would be a
 *   forged client address;
 * - a trusted peer must send a valid v1 or v2 header within `timeouts.proxyHeader`, or it is refused;
 * - with the header read (and not a byte more), the session starts with the client it names as the
 *   remote address, so admission, limits, lockout and the trail all see the real client.
 *
 * No SMTP greeting is sent before the header is accepted.
 */
export function installProxyGate(server: SMTPServer, opts: ProxyGateOptions): void {
  const srv = server as unknown as { _handleProxy(socket: Socket, callback: (err: Error | null, options?: GateSocketOptions) => void): void };
  srv._handleProxy = (socket, callback) => {
    // Errors after the refusal (a reset while the reply is written) must not reach the process.
    socket.on('error', () => undefined);
    // Gone before it could be looked at (a load balancer's layer-4 health check connects and closes at
    // once): no address to judge, nobody to answer, nothing to record.
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return callback(Object.assign(new Error('PROXY protocol: the peer closed at once'), { code: 'EPROXY' }));
    }
    const sessionId = connectionId();
    const peer = { ip: unmapIpv4(socket.remoteAddress), port: socket.remotePort ?? 0 };
    const refused = (reason: string, line: string | null): void => {
      if (line !== null && socket.writable) socket.end(`${line}\r\n`);
      setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
      if (line === null) socket.destroy();
      callback(Object.assign(new Error(`PROXY protocol: ${reason}`), { code: 'EPROXY' }));
    };
    const refuse = (kind: ProxyRefusal['kind'], reason: string, version: ProxyRefusal['version']): void => {
      const line = opts.refuse({ kind, reason, sessionId, peer, version });
      if (!(line instanceof Promise)) return refused(reason, line);
      // Closed without a word if recording the refusal failed (it should not): the peer is refused either way.
      line.then(
        (text) => refused(reason, text),
        () => refused(reason, null),
      );
    };
    if (!opts.trusted.has(peer.ip)) return refuse('untrusted', 'peer not in trustedProxies', null);
    readHeader(socket, opts.timeoutMs, (result) => {
      if (result.kind === 'gone') {
        socket.destroy();
        return callback(Object.assign(new Error('PROXY protocol: the peer closed before sending anything'), { code: 'EPROXY' }));
      }
      if (result.kind === 'refused') return refuse('invalid', result.reason, result.version);
      const { header } = result;
      const client = header.source ?? peer;
      callback(null, {
        id: sessionId,
        remoteAddress: client.ip,
        remotePort: client.port,
        proxy: { ip: peer.ip, port: peer.port, version: header.version, command: header.command },
      });
    });
  };
}

/** The proxy facts the gate put in a connection's socket options; null for a direct connection. */
export function proxyFactsOf(socketOptions: unknown): ProxyFacts | null {
  const proxy = (socketOptions as { proxy?: ProxyFacts } | null | undefined)?.proxy;
  return proxy ?? null;
}

type Read =
  | { readonly kind: 'header'; readonly header: ProxyHeader }
  | { readonly kind: 'refused'; readonly reason: string; readonly version: ProxyRefusal['version'] }
  /**
   * Closed before a single byte: nobody to answer and nothing refused (a port check, a client behind
   * the balancer that left at once); not recorded, as no session would have been.
   */
  | { readonly kind: 'gone' };

/**
 * Reads the header from a paused socket, as smtp-server's own reader does: chunk by chunk, giving
 * back (unshift) whatever follows it, so the SMTP session (or the TLS handshake) gets the client's
 * bytes untouched.
 */
function readHeader(socket: Socket, timeoutMs: number, done: (read: Read) => void): void {
  let received: Buffer = Buffer.alloc(0);
  let finished = false;
  const versionSoFar = (): ProxyRefusal['version'] => (received.length === 0 ? null : received[0] === 0x0d ? 'v2' : received[0] === 0x50 ? 'v1' : null);
  const finish = (read: Read): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('end', onEnd);
    socket.off('close', onEnd);
    done(read);
  };
  const onReadable = (): void => {
    let chunk: Buffer | null;
    while (!finished && (chunk = socket.read() as Buffer | null) !== null) {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const result = readProxyHeader(received);
      if (result.status === 'incomplete') continue;
      if (result.status === 'invalid') return finish({ kind: 'refused', reason: result.reason, version: versionSoFar() });
      const rest = received.subarray(result.length);
      if (rest.length > 0) socket.unshift(rest);
      return finish({ kind: 'header', header: result.header });
    }
  };
  const onEnd = (): void =>
    finish(received.length === 0 ? { kind: 'gone' } : { kind: 'refused', reason: 'closed in the middle of a PROXY header', version: versionSoFar() });
  const timer = setTimeout(
    () =>
      finish({
        kind: 'refused',
        reason: received.length === 0 ? `no PROXY header within ${timeoutMs} ms` : `PROXY header not complete within ${timeoutMs} ms`,
        version: versionSoFar(),
      }),
    timeoutMs,
  );
  timer.unref();
  socket.on('readable', onReadable);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
}

/** A connection id of smtp-server's shape (16 base-32 characters), so records look alike whichever made it. */
function connectionId(): string {
  return BigInt(`0x${randomBytes(10).toString('hex')}`)
    .toString(32)
    .padStart(16, '0');
}
