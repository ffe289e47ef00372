import type { SMTPServerSession } from 'smtp-server';
import type { ClientFacts, ProxyFacts, TlsFacts } from '../audit/records.js';
import type { DeliveryMode } from '../config/fields.js';
import { RefusalTally } from './refusal-tally.js';

/**
 * What mailtrail keeps per client connection, beyond smtp-server's session: counters for the
 * `session` record and the facts every record of this connection repeats.
 */
export class SessionState {
  readonly id: string;
  readonly ip: string;
  readonly port: number;
  readonly startedAt = performance.now();
  readonly trusted: boolean;
  readonly listenerMode: DeliveryMode;
  /** The load balancer the connection came through (proxy-gate.ts); null when direct. */
  readonly proxy: ProxyFacts | null;
  transactions = 0;
  accepted = 0;
  rejected = 0;
  bytes = 0;
  /** Set when our own handler is about to refuse: the protocol-refusal capture must not record it twice. */
  ownRefusalPending = false;
  /** Counted toward the per-IP limit (so the close decrements only what was incremented). */
  counted = false;
  /**
   * The id of this connection's `session` record, chosen at connect so that replies can name the
   * record before it is written (a summarised refusal, the 421 at shutdown).
   */
  recordId = '';
  /** Refusals by class, and which got a record of their own (refusal-tally.ts). */
  readonly refusals = new RefusalTally();
  /** Errors since the last delivered message, for the error limits (error-limits.ts). */
  errors = 0;
  /** The error limit was reached: the reply going out now is followed by the 421 that ends it. */
  cutOff = false;

  /** smtp-server mutates its session object as the dialogue goes on (HELO, AUTH, STARTTLS). */
  readonly #session: SMTPServerSession;

  constructor(session: SMTPServerSession, trusted: boolean, proxy: ProxyFacts | null = null, listenerMode: DeliveryMode = 'passthrough') {
    this.#session = session;
    this.proxy = proxy;
    this.id = session.id;
    this.ip = session.remoteAddress;
    this.port = session.remotePort;
    this.trusted = trusted;
    this.listenerMode = listenerMode;
  }

  client(): ClientFacts {
    const session = this.#session;
    const user = session.user as unknown;
    return {
      ip: this.ip,
      port: this.port,
      helo: session.hostNameAppearsAs || null,
      user: typeof user === 'string' ? user : null,
      tls: tlsFacts(session),
      proxy: this.proxy,
    };
  }
}

function tlsFacts(session: SMTPServerSession): TlsFacts | null {
  if (!session.secure) return null;
  const cipher = (session as unknown as { tlsOptions?: { name?: string; version?: string } | false }).tlsOptions;
  if (!cipher) return { protocol: null, cipher: null };
  return { protocol: cipher.version ?? null, cipher: cipher.name ?? null };
}
