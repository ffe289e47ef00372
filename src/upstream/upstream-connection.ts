import { readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { UpstreamConfig } from '../config/types.js';
import type { StopSignal } from './deadline.js';
import type { TrackedBody } from './tracked-body.js';
import { DirectBody } from './direct-body.js';
import { ERR } from '../error-codes.js';
import { withXoauth2, xoauth2Auth, xoauth2Handler, type UpstreamLogin } from './upstream-login.js';

/** TLS facts of an upstream connection, for the audit record. */
export interface UpstreamTls {
  readonly protocol: string | null;
  readonly cipher: string | null;
  readonly authorized: boolean;
}

export interface UpstreamEnvelope {
  /** MAIL FROM address; "" is the null sender. */
  readonly from: string;
  readonly to: readonly string[];
  readonly use8BitMime: boolean;
  readonly size: number;
}

export type SendInfo = SMTPConnection.SentMessageInfo;
type NodemailerError = Error & { code?: string; command?: string; responseCode?: number };

/**
 * One SMTP client connection to an upstream, opened with EHLO, STARTTLS and AUTH done. We drive
 * nodemailer's SMTPConnection ourselves (not its pool) because the audit record needs what the pool
 * hides: per-phase timings, whether the connection was reused, its TLS parameters, and verbatim
 * envelope addresses (sendMail lowercases domains and rewrites IDNs; send() does not).
 */
export class UpstreamConnection {
  #conn: SMTPConnection;
  #alive = true;
  #ended = false;
  #onEnded: (() => void)[] = [];
  #messages = 0;
  readonly openedAt = Date.now();
  idleSince = Date.now();

  private constructor(conn: SMTPConnection) {
    this.#conn = conn;
    // A closed or broken connection must never be handed out again; the error itself reaches the
    // caller through the pending command's callback, so the event only marks the state.
    conn.on('error', () => this.#markDead());
    conn.on('end', () => {
      this.#markDead();
      this.#ended = true;
      for (const callback of this.#onEnded.splice(0)) callback();
    });
  }

  /** Calls `callback` once the socket is closed (at once if it is already). */
  onClosed(callback: () => void): void {
    if (this.#ended) callback();
    else this.#onEnded.push(callback);
  }

  /**
   * Connects, greets, upgrades and authenticates. Rejects with nodemailer's error (code, command,
   * responseCode), or with a TokenError (ETOKEN) when no OAuth2 token could be had. The token is asked
   * for while the connection is set up, not after: a cached one costs nothing, a new one overlaps the
   * TCP, TLS and EHLO round trips.
   */
  static open(options: SMTPConnection.Options, login: UpstreamLogin | null, signal: StopSignal): Promise<UpstreamConnection> {
    let token: string | null = null;
    const tokenRequest = login?.kind === 'xoauth2' ? login.tokens.token(signal) : null;
    // Settled below or abandoned with the connection: never an unhandled rejection.
    tokenRequest?.catch(() => undefined);
    const conn = new SMTPConnection(
      login?.kind === 'xoauth2'
        ? withXoauth2(
            options,
            xoauth2Handler(login, () => token ?? '', signal),
          )
        : options,
    );
    const wrapper = new UpstreamConnection(conn);
    return new Promise<UpstreamConnection>((resolve, reject) => {
      if (signal.stopped) {
        wrapper.close();
        return reject(abortError(signal));
      }
      const detach = signal.onStop(() => {
        wrapper.close();
        reject(abortError(signal));
      });
      const done = (err?: Error | null): void => {
        detach();
        if (err) {
          wrapper.close();
          reject(err);
        } else resolve(wrapper);
      };
      conn.once('error', (err: Error) => done(err));
      conn.connect(() => {
        if (login === null) return done();
        if (login.kind === 'password') return conn.login({ user: login.user, pass: login.pass }, (err) => done(err));
        tokenRequest!.then(
          (t) => {
            token = t;
            conn.login(xoauth2Auth(login.user), (err) => done(err));
          },
          (err: Error) => done(err),
        );
      });
    });
  }

  get alive(): boolean {
    return this.#alive && !this.#conn.destroyed;
  }

  get messages(): number {
    return this.#messages;
  }

  tls(): UpstreamTls | null {
    const socket = this.#conn._socket;
    if (!socket || !this.#conn.secure || !('getProtocol' in socket)) return null;
    const tlsSocket = socket as TLSSocket;
    return {
      protocol: tlsSocket.getProtocol() ?? null,
      cipher: tlsSocket.getCipher()?.name ?? null,
      authorized: tlsSocket.authorized,
    };
  }

  /** Sends one message; `body` must be fresh (it tracks how far the body was handed over). */
  send(envelope: UpstreamEnvelope, body: TrackedBody | DirectBody, signal: StopSignal): Promise<SendInfo> {
    this.#messages += 1;
    return new Promise<SendInfo>((resolve, reject) => {
      if (signal.stopped) {
        this.close();
        return reject(abortError(signal));
      }
      const detach = signal.onStop(() => {
        this.close();
        reject(abortError(signal));
      });
      // With PIPELINING, send() writes MAIL, every RCPT and DATA in one go (RFC 2920): corking the
      // socket turns those writes into one writev, a syscall and a TCP segment instead of several.
      const socket = this.#conn._socket || null;
      socket?.cork();
      // A body in memory that needs no dot-stuffing writes itself, corked (direct-body.ts). A small
      // streamed one: one chunk plus the final ".\r\n", corked from the first read until the source
      // is done (ended or destroyed, so a failed send never leaves the socket corked). Large streamed
      // bodies are not corked: that would buffer the whole message in memory.
      if (body instanceof DirectBody) {
        if (socket) body.attach(socket);
      } else if (socket && body.small) {
        let corked = false;
        body.once('started', () => {
          socket.cork();
          corked = true;
        });
        body.once('close', () => {
          if (corked) process.nextTick(() => socket.uncork());
        });
      }
      this.#conn.send(
        { from: envelope.from, to: [...envelope.to], use8BitMime: envelope.use8BitMime, size: envelope.size },
        // nodemailer pipes any source with a pipe() into its DataStream (DirectBody is one).
        body as TrackedBody,
        (err, info) => {
          detach();
          if (err) reject(err);
          else resolve(info);
        },
      );
      if (socket) process.nextTick(() => socket.uncork());
    });
  }

  /** RSET after a refused envelope or message, so the connection can carry the next one. */
  reset(timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.close();
        resolve(false);
      }, timeoutMs);
      this.#conn.reset((err) => {
        clearTimeout(timer);
        if (err) this.close();
        resolve(!err);
      });
    });
  }

  /** Polite close: QUIT, then the socket. */
  quit(): void {
    this.#markDead();
    try {
      this.#conn.quit();
    } catch {
      this.#conn.close();
    }
  }

  close(): void {
    this.#markDead();
    this.#conn.close();
  }

  #markDead(): void {
    this.#alive = false;
  }
}

/** Built once per pool: reading the CA file per connection would put disk I/O on the hot path. */
export function connectionOptions(upstream: UpstreamConfig, ehloName: string): SMTPConnection.Options {
  const tls = upstream.tls;
  return {
    host: upstream.host,
    port: upstream.port,
    secure: upstream.implicitTls,
    requireTLS: !upstream.implicitTls && tls.mode === 'required',
    opportunisticTLS: tls.mode === 'opportunistic',
    ignoreTLS: !upstream.implicitTls && tls.mode === 'none',
    name: upstream.ehloName ?? ehloName,
    connectionTimeout: upstream.timeouts.connect,
    greetingTimeout: upstream.timeouts.greeting,
    socketTimeout: upstream.timeouts.socket,
    dnsTimeout: upstream.timeouts.connect,
    // Loopback and private upstreams (a smarthost next door, a test sink) are legitimate here.
    allowInternalNetworkInterfaces: true,
    logger: false,
    debug: false,
    ...(tls.servername ? { servername: tls.servername } : {}),
    tls: {
      rejectUnauthorized: tls.verify,
      minVersion: 'TLSv1.2',
      ...(tls.ca ? { ca: readFileSync(tls.ca) } : {}),
      ...(tls.servername ? { servername: tls.servername } : {}),
    },
  };
}

/** The error a stopped operation rejects with: the signal's reason (EDEADLINE, ESHUTDOWN...). */
export function abortError(signal: StopSignal): Error {
  return signal.reason ?? Object.assign(new Error('Relay deadline reached'), { code: ERR.DEADLINE });
}

export type { NodemailerError };
