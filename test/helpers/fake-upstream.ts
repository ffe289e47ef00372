/**
 * A scriptable fake upstream provider for integration tests, built on smtp-server.
 *
 * It listens on 127.0.0.1, port 0, records every message it receives, and has fault knobs for
 * each failure class in docs/failures.md: connection refused, greeting hang/421/554, AUTH failure,
 * MAIL FROM/RCPT/DATA replies, slow replies, and the four ways a DATA phase can die (before the
 * 354, mid-body, after the final dot without a reply, no reply at all). Knobs are read when each
 * command arrives, so they can be changed while a relay keeps a pooled connection open.
 *
 * For byte-level misbehaviour (garbage greetings, lenient DATA terminators) use raw-upstream.ts.
 *
 * @example
 * const upstream = await startFakeUpstream({ auth: { user: 'u', pass: 'p' } });
 * upstream.setFaults({ data: { code: 554, text: '5.7.1 spam' } });
 * // ... point the relay at upstream.url() ...
 * expect(upstream.allData).toHaveLength(1);
 * expect(upstream.messages).toHaveLength(0);
 * await upstream.close();
 */
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';

/**
 * An SMTP reply. Put the enhanced status code at the start of `text` ("5.7.1 ..."), as real servers
 * do. A 421 anywhere also closes the connection (smtp-server does that, like real servers).
 */
export interface Reply {
  code: number;
  text: string;
}

/** `ok`: normal 220. `hang`: accept TCP, never greet. `421`/`554`/a Reply: refuse with that greeting and close. */
export type GreetingFault = 'ok' | 'hang' | '421' | '554' | Reply;

/**
 * What happens at DATA:
 * - a Reply: the body is read to the final dot, then this reply is sent (e.g. 554 5.7.1).
 * - `drop-before-reply`: the connection is closed right after the DATA command, before the 354.
 *   No body byte was sent (a `connection_lost` case).
 * - `reset-mid-data`: a TCP reset after the first chunk of body arrives. Use a body bigger than a
 *   few hundred KB, or the client may already have written the final dot.
 * - `drop-after-dot`: the whole body is read, then the connection is closed with no reply
 *   (`unknown_outcome`: the upstream got the message, the client doesn't know).
 * - `hang-after-dot`: the whole body is read, then nothing is ever sent.
 */
export type DataFault = Reply | 'drop-before-reply' | 'reset-mid-data' | 'drop-after-dot' | 'hang-after-dot';

/** The knobs. A plain object: mutate `upstream.faults` directly or call `setFaults`. */
export interface FakeUpstreamFaults {
  /** Reflects refuse()/accept(). Setting it through `setFaults` calls them; assigning it does nothing. */
  refuse: boolean;
  greeting: GreetingFault;
  /** When set, every AUTH fails with this reply (e.g. `{ code: 535, text: '5.7.8 Authentication failed' }`). */
  authReply?: Reply | undefined;
  /** A reply to every MAIL FROM, or `drop` to close the connection without a reply. */
  mailFrom?: Reply | 'drop' | undefined;
  /** Per recipient: a reply to refuse it, null to accept. */
  rcpt?: ((address: string) => Reply | null) | undefined;
  data?: DataFault | undefined;
  /**
   * With `xoauth2`: every AUTH XOAUTH2 is refused with this reply, whatever the token (e.g. Microsoft's
   * `535 5.7.139 ... SmtpClientAuthentication is disabled for the Mailbox`).
   */
  xoauth2Reply?: Reply | undefined;
  /** With `xoauth2`: refuse this many more valid tokens (as if revoked), in the provider's own way. */
  refuseTokens?: number | undefined;
  /** Wait this long before answering (`data`: before the reply after the final dot). */
  delayMs: { mailFrom?: number; rcpt?: number; data?: number };
  /**
   * The 250 after DATA. Return a bare id (`ABC123` → `250 Ok: queued as ABC123`) or a whole text with a
   * space in it (`2.0.0 OK id=1a2b3c` → `250 2.0.0 OK id=1a2b3c`). Default: `Ok: queued as <10 hex>`.
   */
  queueId?: (() => string) | undefined;
}

export interface FakeUpstreamOptions {
  /** Offer STARTTLS with this key/cert (PEM). Without it STARTTLS is disabled. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Implicit TLS from the first byte (port 465 style). Needs `tls`. */
  implicitTls?: boolean;
  /** Require AUTH (PLAIN/LOGIN) with these credentials. Without it AUTH is disabled. */
  auth?: { user: string; pass: string };
  /**
   * Offer AUTH XOAUTH2 (alone, or beside PLAIN/LOGIN with `auth`): `verify` says whether an access token is
   * good for the user (test/helpers/oauth-server.ts verifies the issuer's signature and expiry). A bad
   * token is refused as the provider does: `microsoft` with `535 5.7.3 Authentication unsuccessful` at
   * once, `google` with a 334 challenge carrying the error as base64 JSON, then 535 after the client's
   * empty line (RFC 7628 §3.2.3).
   */
  xoauth2?: { verify: (token: string, user: string) => Promise<boolean>; style: 'microsoft' | 'google' };
  /** With `auth`: offer AUTH but let unauthenticated clients send too. */
  authOptional?: boolean;
  /** With `auth`: refuse AUTH before STARTTLS (538), like real providers. Default false. */
  authRequiresTls?: boolean;
  /** Advertised SIZE. A larger declared SIZE= is refused at MAIL FROM, a larger body gets 552 5.3.4. */
  size?: number;
  /** Hostname in the greeting and EHLO. Default `fake-upstream.test`. */
  name?: string;
  /** smtp-server's closeTimeout; sockets still open after it are destroyed. Default 200 ms. */
  closeTimeoutMs?: number;
  /** Initial knob values. */
  faults?: Partial<FakeUpstreamFaults>;
}

/** The final outcome of a complete DATA as the upstream saw it. */
export type DataVerdict = Reply | 'drop-after-dot' | 'hang-after-dot';

export interface ReceivedMessage {
  /** MAIL FROM address; '' for the null sender. */
  from: string;
  to: string[];
  /** MAIL FROM parameters (upper-case keys), e.g. `{ BODY: '8BITMIME', SIZE: '1234' }`. */
  mailFromArgs: Record<string, string>;
  /** The message after dot-unstuffing, exactly as received. */
  raw: Buffer;
  sha256: string;
  secure: boolean;
  /** The AUTH user, null if the client did not authenticate. */
  user: string | null;
  /** '7bit' or '8bitmime'. */
  bodyType: string;
  smtpUtf8: boolean;
  sessionId: string;
  /** What the upstream answered (or did instead of answering) after the final dot. */
  verdict: DataVerdict;
  receivedAt: Date;
}

/** One AUTH XOAUTH2 the fake upstream answered. */
export interface Xoauth2Login {
  readonly user: string;
  readonly token: string;
  /** The token verified (before `refuseTokens` or `xoauth2Reply` had their say). */
  readonly valid: boolean;
  readonly accepted: boolean;
}

export interface FakeUpstream {
  readonly host: '127.0.0.1';
  /** Every AUTH XOAUTH2, in order. */
  readonly xoauth2Logins: Xoauth2Login[];
  readonly port: number;
  /** The live knobs (read when each command arrives). */
  readonly faults: FakeUpstreamFaults;
  /** Messages whose DATA completed and were answered 250. */
  readonly messages: ReceivedMessage[];
  /** Every complete DATA (final dot received), whatever the answer: 250, an error, a drop or a hang. */
  readonly allData: ReceivedMessage[];
  /** TCP connections accepted. */
  readonly connections: number;
  /** MAIL FROM commands received (accepted or not). */
  readonly transactions: number;
  /** Server-side socket/TLS errors (smtp-server 'error' events). */
  readonly errors: Error[];
  /** The smtp-server instance, for anything the knobs don't cover. */
  readonly server: SMTPServer;
  /** Merges knobs. Await it when `refuse` changes (re-listening is asynchronous). */
  setFaults(partial: Partial<FakeUpstreamFaults>): Promise<void>;
  /** Back to a healthy upstream (also accepts connections again). */
  resetFaults(): Promise<void>;
  /** Stop listening: new connections get ECONNREFUSED. Open connections stay. */
  refuse(): Promise<void>;
  /** Listen again on the same port. */
  accept(): Promise<void>;
  /** Destroy every open connection now (e.g. to kill a relay's pooled connections). */
  dropConnections(): void;
  /** Forget recorded messages and zero the counters. */
  clearRecords(): void;
  /** Resolves once `predicate()` is true; rejects after `timeoutMs` (default 2000). */
  waitFor(predicate: () => boolean, timeoutMs?: number): Promise<void>;
  /** `smtp://user:pass@127.0.0.1:PORT`. Credentials default to `auth`; pass `user: ''` for none. Scheme defaults to smtps with implicitTls. */
  url(opts?: { user?: string; pass?: string; scheme?: string }): string;
  close(): Promise<void>;
}

const HOST = '127.0.0.1' as const;

function healthyFaults(): FakeUpstreamFaults {
  return { refuse: false, greeting: 'ok', delayMs: {} };
}

function smtpError(reply: Reply): Error & { responseCode: number } {
  return Object.assign(new Error(reply.text), { responseCode: reply.code });
}

/**
 * Polls `predicate` every 10 ms until it returns true.
 *
 * @example
 * await waitFor(() => upstream.messages.length === 1, 2000);
 */
export async function waitFor(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`waitFor: condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Starts a fake upstream on 127.0.0.1 with a random port.
 *
 * @example
 * const up = await startFakeUpstream({ tls: { key: pki.server.key, cert: pki.server.cert } });
 * up.faults.greeting = '421';
 */
export async function startFakeUpstream(opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  if (opts.implicitTls && !opts.tls) throw new Error('startFakeUpstream: implicitTls needs tls { key, cert }');

  const faults: FakeUpstreamFaults = { ...healthyFaults(), ...opts.faults, delayMs: { ...opts.faults?.delayMs }, refuse: false };
  const messages: ReceivedMessage[] = [];
  const allData: ReceivedMessage[] = [];
  const errors: Error[] = [];
  const counters = { connections: 0, transactions: 0 };
  /** Raw TCP sockets by remote port, to kill a session from a handler whatever TLS sits on top. */
  const rawSockets = new Map<number, net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let port = 0;
  let closed = false;

  const sleep = (ms: number | undefined) =>
    !ms
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            timers.delete(t);
            resolve();
          }, ms);
          timers.add(t);
        });

  const disabledCommands: string[] = [];
  if (!opts.tls || opts.implicitTls) disabledCommands.push('STARTTLS');
  if (!opts.auth && !opts.xoauth2) disabledCommands.push('AUTH');
  const xoauth2Logins: Xoauth2Login[] = [];

  const server: SMTPServer = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    closeTimeout: opts.closeTimeoutMs ?? 200,
    name: opts.name ?? 'fake-upstream.test',
    secure: !!opts.implicitTls,
    ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : {}),
    ...(opts.size !== undefined ? { size: opts.size } : {}),
    disabledCommands,
    authOptional: (!opts.auth && !opts.xoauth2) || !!opts.authOptional,
    allowInsecureAuth: !opts.authRequiresTls,
    authMethods: opts.xoauth2 ? [...(opts.auth ? ['PLAIN', 'LOGIN'] : []), 'XOAUTH2'] : ['PLAIN', 'LOGIN'],

    onConnect(_session, cb) {
      const g = faults.greeting;
      if (g === 'ok') return cb();
      if (g === 'hang') return; // never greet
      if (g === '421') return cb(smtpError({ code: 421, text: '4.3.2 Service not available, closing transmission channel' }));
      if (g === '554') return cb(smtpError({ code: 554, text: '5.3.2 No SMTP service here' }));
      return cb(smtpError(g));
    },

    onAuth(auth, _session, cb) {
      if (auth.method === 'XOAUTH2' && opts.xoauth2) {
        const xo = opts.xoauth2;
        const token = auth.accessToken ?? '';
        void xo.verify(token, auth.username ?? '').then((valid) => {
          let accepted = valid && !faults.xoauth2Reply;
          if (accepted && (faults.refuseTokens ?? 0) > 0) {
            faults.refuseTokens = (faults.refuseTokens ?? 0) - 1;
            accepted = false;
          }
          xoauth2Logins.push({ user: auth.username ?? '', token, valid, accepted });
          if (faults.xoauth2Reply) return cb(smtpError(faults.xoauth2Reply));
          if (accepted) return cb(null, { user: auth.username });
          // Gmail: the 334 error challenge (developers.google.com/workspace/gmail/imap/xoauth2-protocol).
          if (xo.style === 'google') return cb(null, { data: { status: '401', schemes: 'bearer', scope: 'https://mail.google.com/' } });
          cb(smtpError({ code: 535, text: '5.7.3 Authentication unsuccessful [SN4PR0601CA0002.namprd06.prod.outlook.com]' }));
        });
        return;
      }
      if (faults.authReply) return cb(null, { message: faults.authReply.text, responseCode: faults.authReply.code });
      const ok = opts.auth && auth.username === opts.auth.user && auth.password === opts.auth.pass;
      if (!ok) return cb(null, { message: '5.7.8 Authentication credentials invalid', responseCode: 535 });
      cb(null, { user: auth.username });
    },

    onMailFrom(_address, session, cb) {
      counters.transactions++;
      void sleep(faults.delayMs?.mailFrom).then(() => {
        const f = faults.mailFrom;
        if (f === 'drop') return killSession(session, 'destroy');
        if (f) return cb(smtpError(f));
        cb();
      });
    },

    onRcptTo(address, _session, cb) {
      void sleep(faults.delayMs?.rcpt).then(() => {
        const reply = faults.rcpt?.(address.address) ?? null;
        cb(reply ? smtpError(reply) : undefined);
      });
    },

    onData(stream, session, cb) {
      handleData(stream, session, cb);
    },
  });

  server.on('error', (err: Error) => {
    errors.push(err);
  });
  server.server.on('connection', (socket: net.Socket) => {
    counters.connections++;
    const key = socket.remotePort ?? -1;
    rawSockets.set(key, socket);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      if (rawSockets.get(key) === socket) rawSockets.delete(key);
    });
  });

  /** Destroys every socket, topmost first: tearing a TLS socket down from below mid-handshake crashes Node. */
  function destroyAll(): void {
    for (const conn of server.connections) conn._socket.destroy();
    for (const top of server._pendingSockets.values()) top.destroy();
    for (const s of rawSockets.values()) s.destroy();
  }

  function killSession(session: SMTPServerSession, how: 'destroy' | 'reset'): void {
    for (const conn of server.connections) {
      if (conn.id === session.id) {
        conn._socket.on('error', () => undefined);
        if (how === 'destroy') conn._socket.destroy();
      }
    }
    const raw = rawSockets.get(session.remotePort);
    if (raw && !raw.destroyed) {
      if (how === 'reset') raw.resetAndDestroy();
      else raw.destroy();
    }
  }

  function handleData(stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): void {
    const fault = faults.data;
    stream.on('error', () => undefined); // the client (or we) may cut the connection mid-body
    if (fault === 'drop-before-reply') {
      // onData runs before smtp-server writes the 354: killing the socket here means no 354 at all
      killSession(session, 'destroy');
      stream.resume();
      return;
    }
    if (fault === 'reset-mid-data') {
      stream.once('data', () => killSession(session, 'reset'));
      stream.resume();
      return;
    }

    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    stream.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      hash.update(chunk);
    });
    stream.once('end', () => {
      const env = session.envelope;
      const args = env.mailFrom && env.mailFrom.args ? env.mailFrom.args : {};
      const base = {
        from: env.mailFrom ? env.mailFrom.address : '',
        to: env.rcptTo.map((r) => r.address),
        mailFromArgs: Object.fromEntries(Object.entries(args).map(([k, v]) => [k, String(v)])),
        raw: Buffer.concat(chunks),
        sha256: hash.digest('hex'),
        secure: !!session.secure,
        user: typeof session.user === 'string' ? session.user : null,
        bodyType: env.bodyType ?? '7bit',
        smtpUtf8: !!env.smtpUtf8,
        sessionId: session.id,
        receivedAt: new Date(),
      };
      const record = (verdict: DataVerdict): ReceivedMessage => {
        const m = { ...base, verdict };
        allData.push(m);
        return m;
      };

      if (stream.sizeExceeded) {
        const reply = { code: 552, text: `5.3.4 Message size exceeds fixed maximum message size ${opts.size}` };
        record(reply);
        return cb(smtpError(reply));
      }
      if (fault === 'drop-after-dot') {
        record('drop-after-dot');
        return killSession(session, 'destroy');
      }
      if (fault === 'hang-after-dot') {
        record('hang-after-dot');
        return;
      }
      void sleep(faults.delayMs?.data).then(() => {
        if (fault) {
          record(fault);
          return cb(smtpError(fault));
        }
        const id = faults.queueId ? faults.queueId() : randomBytes(5).toString('hex').toUpperCase();
        const text = /\s/.test(id) ? id : `Ok: queued as ${id}`;
        messages.push(record({ code: 250, text }));
        cb(null, text);
      });
    });
  }

  const listen = (p: number) =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.server.once('error', onError);
      server.server.listen(p, HOST, () => {
        server.server.off('error', onError);
        port = (server.server.address() as net.AddressInfo).port;
        resolve();
      });
    });

  const refuse = async () => {
    if (faults.refuse || closed) return;
    faults.refuse = true;
    // closes the listening handle at once; accepted connections live on
    server.server.close();
  };
  const accept = async () => {
    if (!faults.refuse || closed) return;
    await listen(port);
    faults.refuse = false;
  };

  await listen(0);
  if (opts.faults?.refuse) await refuse();

  const upstream: FakeUpstream = {
    host: HOST,
    get port() {
      return port;
    },
    faults,
    messages,
    allData,
    xoauth2Logins,
    get connections() {
      return counters.connections;
    },
    get transactions() {
      return counters.transactions;
    },
    errors,
    server,
    async setFaults(partial) {
      const { refuse: wantRefuse, ...rest } = partial;
      Object.assign(faults, rest);
      if (wantRefuse === true) await refuse();
      if (wantRefuse === false) await accept();
    },
    async resetFaults() {
      for (const k of Object.keys(faults) as (keyof FakeUpstreamFaults)[]) {
        if (k !== 'refuse') delete faults[k];
      }
      const { refuse: _r, ...healthy } = healthyFaults();
      Object.assign(faults, healthy);
      await accept();
    },
    refuse,
    accept,
    dropConnections: destroyAll,
    clearRecords() {
      messages.length = 0;
      xoauth2Logins.length = 0;
      allData.length = 0;
      counters.connections = 0;
      counters.transactions = 0;
    },
    waitFor,
    url(o = {}) {
      const scheme = o.scheme ?? (opts.implicitTls ? 'smtps' : 'smtp');
      const user = o.user ?? opts.auth?.user ?? '';
      const pass = o.pass ?? (o.user === undefined ? opts.auth?.pass : undefined);
      const cred = user ? `${encodeURIComponent(user)}${pass !== undefined ? `:${encodeURIComponent(pass)}` : ''}@` : '';
      return `${scheme}://${cred}${HOST}:${port}`;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const wasRefused = faults.refuse;
      await new Promise<void>((resolve) => {
        // smtp-server sends 421 to open sessions after closeTimeout; then make sure nothing lingers
        const force = setTimeout(destroyAll, (opts.closeTimeoutMs ?? 200) + 50);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        // not listening: nothing to wait for gracefully, and net.Server reports 'close' only once drained
        if (wasRefused) destroyAll();
      });
    },
  };
  return upstream;
}
