/**
 * SMTP clients for tests.
 *
 * `smtpTalk` is a tiny raw-socket client that makes protocol tests read like a transcript:
 *
 * @example
 * const c = await smtpTalk(relay.port);
 * await c.expect(220);
 * c.send('EHLO test.example');
 * const ehlo = await c.expect(250);          // multi-line reply: ehlo.lines
 * c.send('STARTTLS');
 * await c.expect(220);
 * await c.startTls({ ca: pki.ca, servername: 'localhost' });
 * c.close();
 *
 * `sendMessage` sends one raw message with nodemailer and returns the reply the client got
 * instead of throwing, so tests assert on codes:
 *
 * @example
 * const r = await sendMessage({ port, from: 'a@x.test', to: ['b@y.test'], raw });
 * expect(r).toMatchObject({ ok: false, code: 451 });
 */
import net from 'node:net';
import tls from 'node:tls';
import nodemailer from 'nodemailer';

/** One (possibly multi-line) SMTP reply. */
export interface TalkReply {
  code: number;
  /** The text of every line without the code and separator, joined with "\n". */
  text: string;
  /** The raw lines, without CRLF. */
  lines: string[];
}

export interface SmtpTalk {
  /** Reads the next full reply. Rejects if the code differs from `code` (when given), on timeout, or if the connection closes. */
  expect(code?: number, timeoutMs?: number): Promise<TalkReply>;
  /** Writes `line` + CRLF. */
  send(line: string): void;
  /** Writes bytes as they are (for bare LF, smuggling, bodies). */
  sendRaw(data: Buffer | string): void;
  /** Upgrades the socket to TLS (after a 220 to STARTTLS). */
  startTls(opts?: { ca?: string | Buffer; servername?: string; rejectUnauthorized?: boolean }): Promise<tls.TLSSocket>;
  /** Resolves when the server has closed the connection (or rejects after `timeoutMs`). */
  waitClosed(timeoutMs?: number): Promise<void>;
  /** True once the socket is closed. */
  readonly closed: boolean;
  /** The current socket (a TLSSocket after startTls). */
  readonly socket: net.Socket;
  /** Sends nothing more and destroys the socket. */
  close(): void;
}

export interface SmtpTalkOptions {
  /** Connect with implicit TLS. */
  tls?: { ca?: string | Buffer; servername?: string; rejectUnauthorized?: boolean };
  /** Default timeout of `expect` (ms). Default 5000. */
  timeoutMs?: number;
  /** Connect from this local address (e.g. `127.0.0.2`: any 127.x.y.z is a loopback address on Linux). */
  localAddress?: string;
}

/**
 * Opens a raw SMTP connection. The greeting is not read: start with `await c.expect(220)`.
 *
 * @example
 * const c = await smtpTalk(port);
 * await c.expect(220);
 */
export async function smtpTalk(port: number, host = '127.0.0.1', opts: SmtpTalkOptions = {}): Promise<SmtpTalk> {
  const defaultTimeout = opts.timeoutMs ?? 5000;
  let socket: net.Socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = opts.tls
      ? // tls.connect takes the socket options of net.connect too (localAddress); its types leave them out.
        tls.connect({
          host,
          port,
          localAddress: opts.localAddress,
          ca: opts.tls.ca,
          servername: opts.tls.servername ?? 'localhost',
          rejectUnauthorized: opts.tls.rejectUnauthorized ?? true,
        } as tls.ConnectionOptions)
      : net.connect({ host, port, localAddress: opts.localAddress });
    s.once(opts.tls ? 'secureConnect' : 'connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });

  let buffer = '';
  let closed = false;
  let lastError: Error | null = null;
  const closeWaiters: (() => void)[] = [];
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };

  const attach = (s: net.Socket) => {
    s.setEncoding('latin1'); // byte-preserving; SMTP replies are ASCII anyway
    s.on('data', (d: string) => {
      buffer += d;
      notify();
    });
    s.on('error', (err) => {
      lastError = err;
    });
    s.once('close', () => {
      if (s !== socket) return;
      closed = true;
      notify();
      for (const w of closeWaiters.splice(0)) w();
    });
  };
  attach(socket);

  /** Takes one complete reply off the buffer, or returns null if it isn't all there yet. */
  const takeReply = (): TalkReply | null => {
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      const eol = buffer.indexOf('\n', pos);
      if (eol < 0) return null;
      const line = buffer.slice(pos, eol).replace(/\r$/, '');
      pos = eol + 1;
      lines.push(line);
      if (!/^\d{3}-/.test(line)) break;
    }
    buffer = buffer.slice(pos);
    const last = lines[lines.length - 1] ?? '';
    return {
      code: Number.parseInt(last.slice(0, 3), 10),
      text: lines.map((l) => l.slice(4)).join('\n'),
      lines,
    };
  };

  const talk: SmtpTalk = {
    get closed() {
      return closed;
    },
    get socket() {
      return socket;
    },
    async expect(code, timeoutMs = defaultTimeout) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const reply = takeReply();
        if (reply) {
          if (code !== undefined && reply.code !== code) {
            throw new Error(`expected ${code}, got: ${reply.lines.join(' | ')}`);
          }
          return reply;
        }
        if (closed) {
          throw new Error(
            `connection closed before a full reply${code ? ` (expected ${code})` : ''}` +
              (buffer ? `; partial: ${JSON.stringify(buffer)}` : '') +
              (lastError ? `; ${lastError.message}` : ''),
          );
        }
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(`no full reply within ${timeoutMs} ms${code ? ` (expected ${code})` : ''}` + (buffer ? `; partial: ${JSON.stringify(buffer)}` : ''));
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    },
    send(line) {
      socket.write(`${line}\r\n`);
    },
    sendRaw(data) {
      socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
    },
    async startTls(o = {}) {
      const plain = socket;
      plain.removeAllListeners('data');
      const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({
          socket: plain,
          ca: o.ca,
          servername: o.servername ?? 'localhost',
          rejectUnauthorized: o.rejectUnauthorized ?? true,
        });
        s.once('secureConnect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      });
      buffer = '';
      socket = secure;
      attach(secure);
      return secure;
    },
    waitClosed(timeoutMs = defaultTimeout) {
      if (closed) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
        closeWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
    close() {
      socket.destroy();
    },
  };
  return talk;
}

/** Connects, says EHLO, gives one envelope and DATA, and returns at the 354: the caller writes the body. */
export async function openData(port: number, opts: { from: string; to?: string; helo?: string; timeoutMs?: number }): Promise<SmtpTalk> {
  return envelopeAndData(await smtpTalk(port, '127.0.0.1', opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }), opts);
}

/**
 * On a connection made some other way (a PROXY header first, another local address): the
 * greeting, EHLO, one envelope and DATA, up to the 354.
 */
export async function envelopeAndData(c: SmtpTalk, opts: { from: string; to?: string; helo?: string }): Promise<SmtpTalk> {
  await c.expect(220);
  c.send(`EHLO ${opts.helo ?? 'client.test'}`);
  await c.expect(250);
  c.send(`MAIL FROM:<${opts.from}>`);
  await c.expect(250);
  c.send(`RCPT TO:<${opts.to ?? 'rcpt@upstream.test'}>`);
  await c.expect(250);
  c.send('DATA');
  await c.expect(354);
  return c;
}

/** `AUTH PLAIN <base64>` for `username` and `password`. */
export function authPlain(username: string, password: string): string {
  return `AUTH PLAIN ${Buffer.from(`\0${username}\0${password}`).toString('base64')}`;
}

/** One AUTH PLAIN on a new connection from `from` (a loopback address acting as a client machine); the reply. */
export async function tryAuth(port: number, from: string, username: string, password: string): Promise<TalkReply> {
  const c = await smtpTalk(port, '127.0.0.1', { localAddress: from, timeoutMs: 10_000 });
  try {
    await c.expect(220);
    c.send('EHLO client.test');
    await c.expect(250);
    c.send(authPlain(username, password));
    return await c.expect();
  } finally {
    c.close();
  }
}

/** The whole message on such a connection: `raw` (dot-stuffed already), the 250 (its text returned), QUIT. */
export async function sendOver(c: SmtpTalk, opts: { from: string; to: string; raw: Buffer }): Promise<string> {
  await envelopeAndData(c, opts);
  c.sendRaw(Buffer.concat([opts.raw, Buffer.from('.\r\n')]));
  const done = await c.expect(250);
  c.send('QUIT');
  await c.expect(221);
  await c.waitClosed();
  return done.text;
}

export interface SendMessageOptions {
  port: number;
  host?: string;
  /** MAIL FROM; '' for the null sender. */
  from: string;
  to: string[];
  raw: Buffer | string;
  /** CA to trust for STARTTLS / implicit TLS. */
  ca?: string | Buffer;
  /** SNI / name to verify. Default 'localhost'. */
  servername?: string;
  auth?: { user: string; pass: string };
  /** true: STARTTLS required (requireTLS); false: never upgrade (ignoreTLS); unset: upgrade if offered. */
  startTls?: boolean;
  /** Implicit TLS. */
  secure?: boolean;
  /** Send BODY=8BITMIME. */
  use8BitMime?: boolean;
  /** Declared SIZE= for MAIL FROM. */
  size?: number;
  /** EHLO name. Default 'client.test'. */
  name?: string;
  /** Connection, greeting and socket timeout (ms). Default 10 000. */
  timeoutMs?: number;
}

export type SendResult =
  | {
      ok: true;
      code: number;
      response: string;
      accepted: string[];
      rejected: string[];
    }
  | {
      ok: false;
      /** The reply code the client got, null if there was no reply (refused, dropped, timed out). */
      code: number | null;
      response: string | null;
      /** nodemailer's error code: ECONNECTION, ESOCKET, ETIMEDOUT, EENVELOPE, EMESSAGE, EAUTH, ... */
      errorCode: string | null;
      /** The command that failed ('CONN', 'MAIL FROM', 'RCPT TO', 'DATA', 'AUTH PLAIN', ...). */
      command: string | null;
      error: Error;
    };

/**
 * Sends one raw message with a fresh (non-pooled) nodemailer transport. Never throws for SMTP or
 * network failures: the result says what the client saw.
 *
 * @example
 * const r = await sendMessage({ port: relay.port, from: 'a@x.test', to: ['b@y.test'], raw, ca: pki.ca, startTls: true });
 * expect(r.ok).toBe(true);
 */
export async function sendMessage(opts: SendMessageOptions): Promise<SendResult> {
  const timeout = opts.timeoutMs ?? 10_000;
  const transport = nodemailer.createTransport({
    host: opts.host ?? '127.0.0.1',
    port: opts.port,
    secure: !!opts.secure,
    ...(opts.startTls === true ? { requireTLS: true } : {}),
    ...(opts.startTls === false ? { ignoreTLS: true } : {}),
    ...(opts.auth ? { auth: { user: opts.auth.user, pass: opts.auth.pass } } : {}),
    name: opts.name ?? 'client.test',
    tls: { ca: opts.ca, servername: opts.servername ?? 'localhost' },
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
  });
  try {
    const info = await transport.sendMail({
      envelope: {
        from: opts.from,
        to: opts.to,
        ...(opts.use8BitMime ? { use8BitMime: true } : {}),
        ...(opts.size !== undefined ? { size: opts.size } : {}),
      },
      raw: opts.raw,
    });
    const response = String(info.response ?? '');
    return {
      ok: true,
      code: Number.parseInt(response.slice(0, 3), 10),
      response,
      accepted: (info.accepted ?? []).map(String),
      rejected: (info.rejected ?? []).map(String),
    };
  } catch (err) {
    const e = err as Error & { responseCode?: number; response?: string; code?: string; command?: string };
    return {
      ok: false,
      code: typeof e.responseCode === 'number' ? e.responseCode : null,
      response: typeof e.response === 'string' ? e.response : null,
      errorCode: typeof e.code === 'string' ? e.code : null,
      command: typeof e.command === 'string' ? e.command : null,
      error: e,
    };
  } finally {
    transport.close();
  }
}
