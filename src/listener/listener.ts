import { setTimeout as sleep } from 'node:timers/promises';
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Config, ListenerConfig } from '../config/types.js';
import type { Recorder } from '../audit/recorder.js';
import { AUDIT_SCHEMA_VERSION } from '../audit/records.js';
import { verifyNoSuchUser, verifyPassword } from '../auth/password.js';
import type { IdGenerator } from '../ids.js';
import type { Logger } from '../logger.js';
import type { TransactionProcessor } from '../transaction/transaction.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';
import type { Admission } from '../admission/admission.js';
import { describeLimit, type ClientRateLimits } from '../admission/client-rate-limits.js';
import type { AuthLockout } from '../admission/auth-lockout.js';
import { ClientDeadlines } from './client-deadlines.js';
import { removeGreetingDelay, type ConnectionInternals } from './fast-greeting.js';
import { classifyProtocolRefusal, observeProtocol, type WireReply } from './protocol-refusals.js';
import { CLIENT_REPLIES, REPLY_CLASS, connectionRateReply, rateLimitedReply, smtpError, wireText } from '../reply/client-replies.js';
import type { EventPublisher } from '../event-bus.js';
import type { ListenerEvents } from './listener-events.js';
import { ConnectionRate } from '../admission/connection-rate.js';
import type { TokenBuckets } from '../admission/token-buckets.js';
import { ErrorLimits } from './error-limits.js';
import { RefusalRecorder, type RefusalFacts } from './refusal-recorder.js';
import { SessionState } from './session-state.js';
import { installProxyGate, proxyFactsOf, type ProxyRefusal } from './proxy-gate.js';
import { CidrList } from '../admission/cidr-list.js';
import type { ClientFacts, ProxyFacts } from '../audit/records.js';

export interface ListenerDeps {
  readonly config: Config;
  readonly admission: Admission;
  /** Per-user and per-address message and recipient rates (clients.rateLimits). */
  readonly clientLimits: ClientRateLimits;
  /** Where the per-address connection-rate buckets live (limits.connectionRatePerIp); default this process. */
  readonly connectionBuckets?: TokenBuckets;
  /** Failed AUTH per address and per username (clients.authLockout). */
  readonly authLockout: AuthLockout;
  readonly processor: TransactionProcessor;
  readonly recorder: Recorder;
  /** Every refusal is published (`refusal`), recorded or summarised: the metrics count them all. */
  readonly bus: EventPublisher<ListenerEvents>;
  readonly ids: IdGenerator;
  readonly log: Logger;
  readonly tls: { readonly key: string | Buffer; readonly cert: string | Buffer };
}

/**
 * When a refused AUTH is answered, counted from the moment the credentials arrived: slows password
 * guessing without holding much, and makes every refusal take the same time (docs/config.md).
 */
const AUTH_FAILURE_DELAY_MS = 500;
/** At shutdown, how long finish() waits for smtp-server to report the connections it closed. */
const SESSION_CLOSE_WAIT_MS = 2_000;

/**
 * The SMTP side of mailtrail: one smtp-server per configured listener, sharing the session table,
 * the admission rules and the connection limits. Each refusal is a named reply whose text carries
 * the id of the record that tells about it: its own `reject` record, or, past
 * `limits.recordedRefusals` of one connection, the connection's `session` record, which counts it.
 * smtp-server's own refusals are captured at its reply writer (protocol-refusals.ts). Every connection
 * gets its `session` record, also at shutdown (finish()); only connections refused by the connection
 * rate do not: one record per address and window counts them (connection-rate.ts).
 */
export class SmtpListeners {
  #deps: ListenerDeps;
  #servers: SMTPServer[] = [];
  /** Connections admitted and not closed yet (`maxConnections` counts these). */
  #admitted = 0;
  #sessions = new Map<string, SessionState>();
  #perIp = new Map<string, number>();
  #lastCommand = new Map<string, string>();
  /** The load balancer each proxied connection came through (proxy-gate.ts), by its smtp-server session. */
  #proxies = new WeakMap<SMTPServerSession, ProxyFacts>();
  #bound: { host: string; port: number; implicitTls: boolean; mode: ListenerConfig['mode'] }[] = [];
  #errorLimits: ErrorLimits;
  #connectionRate: ConnectionRate;
  #refusals: RefusalRecorder;
  /** Set while finish() waits for the last sessions to close. */
  #allClosed: (() => void) | null = null;

  #deadlines: ClientDeadlines;

  constructor(deps: ListenerDeps) {
    this.#deps = deps;
    this.#deadlines = new ClientDeadlines(deps.config.timeouts, (session, name, command, reply) => this.#refuse(session, name, command, {}, reply).message);
    const { limits, clients } = deps.config;
    this.#errorLimits = new ErrorLimits(limits);
    const { recorder, bus, ids, log } = deps;
    this.#refusals = new RefusalRecorder({ recorder, bus, ids, log, errorLimits: this.#errorLimits, recordedRefusals: limits.recordedRefusals });
    this.#connectionRate = new ConnectionRate({
      perMinute: limits.connectionRatePerIp,
      exempt: limits.connectionRateExempt,
      maxTracked: clients.rateLimits.maxTracked,
      ids,
      onWindowEnd: (window) => this.#refusals.window(window),
      ...(deps.connectionBuckets ? { buckets: deps.connectionBuckets } : {}),
    });
  }

  /** Addresses actually bound (port 0 resolved), in config order. */
  get addresses(): readonly { host: string; port: number; implicitTls: boolean; mode: ListenerConfig['mode'] }[] {
    return this.#bound;
  }

  get activeSessions(): number {
    return this.#sessions.size;
  }

  async start(): Promise<void> {
    for (const [index, listener] of this.#deps.config.listen.entries()) {
      const server = this.#createServer(listener, index);
      this.#servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.server.once('error', reject);
        server.listen(listener.port, listener.host, () => {
          server.server.off('error', reject);
          resolve();
        });
      });
      const addr = server.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : listener.port;
      this.#bound.push({ host: listener.host, port, implicitTls: listener.implicitTls, mode: listener.mode });
    }
  }

  /** Stop accepting; sessions in DATA finish (their relay has its own deadline); idle ones get 421. */
  async stop(): Promise<void> {
    await Promise.all(this.#servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  /**
   * After in-flight transactions are done, tell idle sessions we are going (421, RFC 5321 §3.8) and
   * close them, instead of waiting for smtp-server's closeTimeout. The 421 names the connection's
   * session record (added on the way out, #onReply).
   */
  closeIdleSessions(): void {
    for (const server of this.#servers) {
      const connections = (server as unknown as { connections: Set<{ send(c: number, t: string): void; close(): void }> }).connections;
      for (const connection of connections) {
        connection.send(CLIENT_REPLIES.shutting_down.code, wireText(CLIENT_REPLIES.shutting_down, null));
        connection.close();
      }
    }
  }

  /**
   * At shutdown, once stop() resolved (every connection closed): writes what the trail still owes
   * before it closes. smtp-server reports a closed connection on a later turn of the event loop, so
   * this waits for those reports (briefly), writes the session record of any connection still not
   * reported, and the record of every open connection-rate window.
   */
  async finish(): Promise<void> {
    if (this.#sessions.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, SESSION_CLOSE_WAIT_MS);
        this.#allClosed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#allClosed = null;
    }
    for (const state of [...this.#sessions.values()]) this.#endSession(state);
    this.#connectionRate.flush();
  }

  #createServer(listener: ListenerConfig, index: number): SMTPServer {
    const { config } = this.#deps;
    const server = new SMTPServer({
      secure: listener.implicitTls,
      key: this.#deps.tls.key,
      cert: this.#deps.tls.cert,
      minVersion: 'TLSv1.2',
      name: config.hostname,
      banner: 'mailtrail',
      size: config.limits.maxMessageSize,
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true,
      // AUTH only over TLS unless explicitly allowed: #guardAuth answers 538 at the AUTH command
      // itself; smtp-server's own check stays on as a second line.
      allowInsecureAuth: config.clients.allowInsecureAuth,
      disabledCommands: this.#deps.admission.hasUsers ? [] : ['AUTH'],
      disableReverseLookup: true,
      socketTimeout: config.timeouts.clientIdle,
      // Longer than the relay deadline: smtp-server sends 421 at closeTimeout to sessions still waiting
      // on onData, and a client told 421 after the upstream accepted would send the message twice.
      closeTimeout: config.timeouts.relay + config.timeouts.shutdown,
      // Refusals smtp-server makes itself are captured per connection (observeProtocol), not through
      // its logger, which would format an entry for every command and reply.
      logger: false,
      onConnect: (session, cb) => this.#answer(cb, this.#onConnect(session, listener)),
      onAuth: (auth, session, cb) => {
        this.#onAuth(auth, session).then(
          (r) => cb(r.err, r.ok),
          (err: Error) => cb(err),
        );
      },
      onMailFrom: (address, session, cb) => this.#answer(cb, this.#onMailFrom(address.address, session)),
      onRcptTo: (address, session, cb) => this.#answer(cb, this.#onRcptTo(address.address, session)),
      onData: (stream, session, cb) => this.#onData(stream, session, listener, cb),
      onClose: (session) => this.#onClose(session),
    });
    removeGreetingDelay(server, (connection, socketOptions) => {
      const proxy = proxyFactsOf(socketOptions);
      if (proxy !== null) this.#proxies.set(connection.session, proxy);
      this.#guardAuth(connection);
      this.#errorLimits.slowDown(connection, () => this.#sessions.get(connection.id)?.errors ?? null);
      observeProtocol(connection, {
        command: (cid, verb) => this.#lastCommand.set(cid, verb),
        refusal: (cid, reply) => this.#onReply(cid, reply),
      });
      this.#deadlines.watch(connection);
    });
    if (listener.proxyProtocol) {
      installProxyGate(server, {
        trusted: new CidrList(listener.trustedProxies),
        timeoutMs: config.timeouts.proxyHeader,
        refuse: (refusal) => this.#refuseBeforeSession(refusal, `listen[${index}]`),
      });
    }
    // Without a listener, one client's TLS garbage would crash the process (smtp-server re-emits client socket and TLS errors on the server; an unheard 'error' event throws).
    server.on('error', (err) => this.#deps.log.debug({ err }, 'client connection error'));
    return server;
  }

  /**
   * RFC 4954 §4 (no plaintext password mechanism without a protected session): on a plaintext
   * channel AUTH is not advertised in the EHLO reply at all, as Postfix does with
   * smtpd_tls_auth_only, so a well-behaved client never sends its credentials; advertising it and
   * refusing later is not enough, since AUTH PLAIN carries the password in the command itself. A
   * client that sends AUTH anyway gets 538 at the command (ours, not smtp-server's identical check,
   * so the refusal is a named reply with an id and a record).
   */
  #guardAuth(connection: ConnectionInternals): void {
    const plaintextAuthRefused = (): boolean => !connection.secure && !this.#deps.config.clients.allowInsecureAuth;
    const ehlo = connection.handler_EHLO;
    const isSupported = connection._isSupported;
    let inEhlo = false;
    connection._isSupported = (command) => !(inEhlo && command === 'AUTH') && isSupported.call(connection, command);
    connection.handler_EHLO = (command, callback) => {
      // handler_EHLO builds its feature list synchronously (checked at start-up, fast-greeting.ts).
      inEhlo = plaintextAuthRefused();
      try {
        ehlo.call(connection, command, callback);
      } finally {
        inEhlo = false;
      }
    };
    const handler = connection.handler_AUTH;
    connection.handler_AUTH = (command, callback) => {
      if (!plaintextAuthRefused()) return handler.call(connection, command, callback);
      const err = this.#refuse(connection.session, 'tls_required_auth', 'AUTH');
      connection.send(538, err.message, false);
      callback();
    };
  }

  /**
   * Answers a command once its check is done: at once when it needed nothing but this process, after
   * the shared limits (Redis) answered otherwise. A check that throws (it should not) is answered 451.
   */
  #answer(cb: (err?: Error | null) => void, verdict: Error | null | Promise<Error | null>): void {
    if (!(verdict instanceof Promise)) return cb(verdict);
    verdict.then(cb, (err: unknown) => {
      this.#deps.log.error({ err }, 'client command check failed unexpectedly');
      cb(smtpError(CLIENT_REPLIES.internal, null));
    });
  }

  async #onConnect(session: SMTPServerSession, listener: ListenerConfig): Promise<Error | null> {
    const { admission, config } = this.#deps;
    const overRate = await this.#connectionRate.admit(session.remoteAddress, () => ({
      sessionId: session.id,
      client: this.#newState(session, false).client(),
    }));
    if (overRate !== null) {
      // No session state, so no session record: the window's one record counts this connection.
      this.#refusals.overRate();
      return smtpError(connectionRateReply(session.remoteAddress), overRate);
    }
    const state = this.#newState(session, admission.isTrustedNetwork(session.remoteAddress), listener.mode);
    state.recordId = this.#deps.ids.next();
    this.#sessions.set(session.id, state);
    const perIp = this.#perIp.get(state.ip) ?? 0;
    // Only admitted connections count: a burst of refused ones, not closed yet, must not refuse the next client.
    if (this.#admitted >= config.limits.maxConnections || perIp >= config.limits.maxConnectionsPerIp) {
      return this.#refuse(session, 'too_many_connections', 'CONNECT');
    }
    state.counted = true;
    this.#admitted += 1;
    this.#perIp.set(state.ip, perIp + 1);
    return null;
  }

  async #onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<{ err: Error | null; ok?: { user: string } }> {
    const started = performance.now();
    const username = auth.username ?? '';
    const verdict = await this.#deps.authLockout.attempt(session.remoteAddress, username, () => this.#checkPassword(username, auth.password ?? ''));
    if (verdict.kind === 'accepted') {
      // A client that logs in gives back its connection-rate token (admission/connection-rate.ts).
      this.#connectionRate.refund(session.remoteAddress);
      return { err: null, ok: { user: username } };
    }
    // Whatever the refusal and whatever it took (a hash, the decoy, a lock lookup), the same moment.
    await sleep(Math.max(0, AUTH_FAILURE_DELAY_MS - (performance.now() - started)));
    const facts = { from: null, to: null, authUser: username };
    if (verdict.kind === 'failed') return { err: this.#refuse(session, 'auth_failed', 'AUTH', facts) };
    if (verdict.started.length > 0) return { err: this.#refuse(session, 'auth_locked', 'AUTH', facts) };
    // Refused unheard while locked: one record per lockout (the one above), not one per guess.
    return { err: this.#refuseUnrecorded(session, CLIENT_REPLIES.auth_locked) };
  }

  /** An unknown username costs the same scrypt work as a hashed password (password.ts). */
  #checkPassword(username: string, password: string): Promise<boolean> {
    const user = this.#deps.admission.user(username);
    return user === undefined ? verifyNoSuchUser(password) : verifyPassword(password, user);
  }

  #onMailFrom(from: string, session: SMTPServerSession): Error | null | Promise<Error | null> {
    const { admission } = this.#deps;
    const state = this.#sessions.get(session.id);
    const ip = session.remoteAddress;
    if (admission.tlsRequired(ip) && !session.secure) return this.#refuse(session, 'tls_required', 'MAIL', { from });
    const userName = typeof session.user === 'string' ? session.user : null;
    if (userName !== null) {
      const user = admission.user(userName);
      if (!user || !admission.senderAllowed(user, from)) return this.#refuse(session, 'sender_denied', 'MAIL', { from });
      return this.#messageRate(session, userName, from);
    }
    if (state?.trusted) return this.#messageRate(session, null, from);
    return this.#refuse(session, admission.hasUsers ? 'auth_required' : 'relay_denied', 'MAIL', { from });
  }

  /** Our own limit (not smtp-server's maxRecipients) so the reply carries 4.5.3 and the record its class. */
  #onRcptTo(to: string, session: SMTPServerSession): Error | null | Promise<Error | null> {
    const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : null;
    if (session.envelope.rcptTo.length >= this.#deps.config.limits.maxRecipients) {
      return this.#refuse(session, 'too_many_recipients', 'RCPT', { from, to });
    }
    const user = typeof session.user === 'string' ? session.user : null;
    return this.#deps.clientLimits
      .admitRecipient(user, session.remoteAddress)
      .then((over) => (over === null ? null : this.#refuse(session, 'rate_limited', 'RCPT', { from, to }, rateLimitedReply(describeLimit(over)))));
  }

  /** Counted only once the client may relay at all, so refused attempts never use up its allowance. */
  async #messageRate(session: SMTPServerSession, user: string | null, from: string): Promise<Error | null> {
    const over = await this.#deps.clientLimits.admitMessage(user, session.remoteAddress);
    return over === null ? null : this.#refuse(session, 'rate_limited', 'MAIL', { from }, rateLimitedReply(describeLimit(over)));
  }

  #onData(stream: SMTPServerDataStream, session: SMTPServerSession, listener: ListenerConfig, cb: (err?: Error | null, message?: string) => void): void {
    const state = this.#sessions.get(session.id) ?? this.#newState(session, false, listener.mode);
    this.#deadlines.receiving(session.id, stream);
    // The processor's reply text already carries the transaction id.
    this.#deps.processor
      .process(stream, session, state)
      .then(({ id, reply }) => {
        if (reply.code >= 200 && reply.code < 300) {
          // A delivered message forgives the errors before it (error-limits.ts); a refused one is the
          // upstream's verdict or our own trouble, never the client's error.
          state.errors = 0;
          return cb(null, wireText(reply, null));
        }
        state.ownRefusalPending = true;
        // code 0: the client vanished; smtp-server will not write to a closed socket anyway.
        cb(reply.code === 0 ? smtpError(CLIENT_REPLIES.internal, id) : smtpError(reply, null));
      })
      .catch((err: unknown) => {
        // The processor never throws by design; should it ever, the client still gets an answer (451)
        // instead of waiting for its timeout, and the log says why.
        this.#deps.log.error({ err }, 'transaction failed unexpectedly');
        state.ownRefusalPending = true;
        cb(smtpError(CLIENT_REPLIES.internal, null));
      });
  }

  #onClose(session: SMTPServerSession): void {
    this.#deadlines.forget(session.id);
    const state = this.#sessions.get(session.id);
    if (state) this.#endSession(state);
  }

  /** The connection is gone: its session record, and it no longer counts toward the limits. */
  #endSession(state: SessionState): void {
    this.#sessions.delete(state.id);
    this.#lastCommand.delete(state.id);
    if (state.counted) {
      this.#admitted -= 1;
      const n = (this.#perIp.get(state.ip) ?? 1) - 1;
      if (n <= 0) this.#perIp.delete(state.ip);
      else this.#perIp.set(state.ip, n);
    }
    this.#deps.recorder.session({
      v: AUDIT_SCHEMA_VERSION,
      type: 'session',
      time: new Date().toISOString(),
      id: state.recordId,
      session: { id: state.id },
      client: state.client(),
      transactions: state.transactions,
      accepted: state.accepted,
      rejected: state.rejected,
      bytes: state.bytes,
      durationMs: Math.round(performance.now() - state.startedAt),
      refusals: state.refusals.byClass,
      refusalsSummarised: state.refusals.summarised,
    });
    if (this.#sessions.size === 0) this.#allClosed?.();
  }

  /** Records a refusal of ours (refusal-recorder.ts) and returns the error smtp-server turns into the reply. */
  #refuse(
    session: SMTPServerSession,
    name: keyof typeof CLIENT_REPLIES,
    command: string,
    extra: RefusalFacts = {},
    reply: SmtpReply = CLIENT_REPLIES[name],
  ): Error {
    const state = this.#sessions.get(session.id) ?? this.#detachedState(session);
    const id = this.#refusals.refused(state, REPLY_CLASS[name] ?? 'protocol_violation', reply, command, 'policy', extra);
    state.ownRefusalPending = true;
    return smtpError(reply, id);
  }

  /** A refusal of ours that writes no record (the protocol capture must not record it either). */
  #refuseUnrecorded(session: SMTPServerSession, reply: SmtpReply): Error {
    const state = this.#sessions.get(session.id);
    if (state) {
      state.ownRefusalPending = true;
      state.rejected += 1;
    }
    return smtpError(reply, null);
  }

  /**
   * A 4xx/5xx reply is going out on connection `cid` (protocol-refusals.ts). Ours carry their id
   * already; smtp-server's own refusals are recorded here and get the id of the record that tells
   * about them; a 421 that refuses nothing (our shutdown) names the session record. When the reply
   * reached the hard error limit, the 421 that ends the connection follows it.
   */
  #onReply(cid: string, reply: SmtpReply): { id: string | null; then: WireReply | null } {
    const state = this.#sessions.get(cid);
    if (!state) return { id: null, then: null };
    let id: string | null = null;
    if (state.ownRefusalPending) {
      state.ownRefusalPending = false;
    } else {
      const cls = classifyProtocolRefusal(reply);
      const command = cls === 'client_timeout' ? 'IDLE' : (this.#lastCommand.get(cid) ?? 'UNKNOWN');
      id = cls === null ? state.recordId : this.#refusals.refused(state, cls, reply, command, 'protocol');
    }
    return { id, then: state.cutOff ? this.#refusals.cutOff(state, this.#lastCommand.get(cid) ?? 'UNKNOWN') : null };
  }

  #newState(session: SMTPServerSession, trusted: boolean, mode: ListenerConfig['mode'] = 'passthrough'): SessionState {
    return new SessionState(session, trusted, this.#proxies.get(session) ?? null, mode);
  }

  /**
   * A connection to a proxyProtocol listener refused before its session (proxy-gate.ts): recorded
   * (a stranger's connections count against the connection rate first, so a flood writes one record
   * per address and window), logged, and answered with the line the gate writes before closing.
   */
  async #refuseBeforeSession(refusal: ProxyRefusal, listener: string): Promise<string> {
    const { peer, sessionId } = refusal;
    const untrusted = refusal.kind === 'untrusted';
    const client: ClientFacts = {
      ip: peer.ip,
      port: peer.port,
      helo: null,
      user: null,
      tls: null,
      proxy: untrusted ? null : { ip: peer.ip, port: peer.port, version: refusal.version, command: null },
    };
    if (untrusted) {
      const overRate = await this.#connectionRate.admit(peer.ip, () => ({ sessionId, client }));
      if (overRate !== null) {
        this.#refusals.overRate();
        const reply = connectionRateReply(peer.ip);
        return `${reply.code} ${wireText(reply, overRate)}`;
      }
    }
    const name = untrusted ? 'proxy_untrusted' : 'proxy_invalid';
    const reply = CLIENT_REPLIES[name];
    const id = this.#refusals.beforeSession(sessionId, client, name, reply);
    this.#deps.log.warn(
      { listener, peer: peer.ip, reason: refusal.reason, recordId: id },
      untrusted
        ? `connection refused: ${peer.ip} is not in ${listener}.trustedProxies (a PROXY protocol listener takes its load balancers' connections only)`
        : `connection refused: the load balancer at ${peer.ip} sent no valid PROXY protocol header (${refusal.reason})`,
    );
    return `${reply.code} ${wireText(reply, id)}`;
  }

  /**
   * A session no longer in the table (an AUTH refused after the client left): its refusal is still
   * recorded, with a session record id of its own that no reply will name.
   */
  #detachedState(session: SMTPServerSession): SessionState {
    const state = this.#newState(session, false);
    state.recordId = this.#deps.ids.next();
    return state;
  }
}
