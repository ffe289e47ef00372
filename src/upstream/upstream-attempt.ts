import type { UpstreamConfig } from '../config/types.js';
import type { ConnectionPool, Lease } from './connection-pool.js';
import type { StopSignal } from './deadline.js';
import { parseResponseLine } from '../smtp/reply-text.js';
import { TrackedBody, type BeforeFinalDot, type ReplayableBody } from './tracked-body.js';
import { DirectBody, passesUnchanged } from './direct-body.js';
import type { AttemptPhase, RecipientFact, ReplyPhase, UpstreamFacts } from '../classify/upstream-facts.js';
import type { SendInfo, UpstreamEnvelope, UpstreamTls, NodemailerError } from './upstream-connection.js';

/** Everything one try at one upstream produced: facts for the classifier, and what the record shows. */
export interface AttemptResult {
  readonly upstream: UpstreamConfig;
  readonly facts: UpstreamFacts;
  readonly startedAt: Date;
  readonly ms: number;
  readonly tls: UpstreamTls | null;
  readonly reusedConnection: boolean | null;
  readonly timing: { readonly waitMs: number; readonly connectMs: number; readonly envelopeMs: number; readonly dataMs: number };
}

/** How long an RSET may take before we give up on reusing a connection. */
const RESET_TIMEOUT_MS = 5_000;

/**
 * One try at one upstream: lease a connection, send the envelope and body, give the connection back
 * in the right state. Never throws: every failure becomes facts. A reused connection that turns out
 * to be dead before the body started is replaced once (the server closed it while idle; nothing of
 * this message reached it, so trying again cannot duplicate it).
 *
 * `beforeFinalDot` (deliveries from the spool only; pass-through never passes it) is awaited after
 * the last body byte and before the final dot (docs/spool.md, "Before the final dot").
 */
export async function runAttempt(
  pool: ConnectionPool,
  envelope: UpstreamEnvelope,
  body: ReplayableBody,
  signal: StopSignal,
  poolWaitMs = Number.POSITIVE_INFINITY,
  beforeFinalDot: BeforeFinalDot | null = null,
): Promise<AttemptResult> {
  const startedAt = new Date();
  const t0 = performance.now();
  let lease: Lease;
  try {
    lease = await pool.acquire(signal, poolWaitMs);
  } catch (err) {
    const facts = failureFacts(err as NodemailerError, 'connecting');
    return result(pool, facts, startedAt, t0, null, { waitMs: 0, connectMs: performance.now() - t0, envelopeMs: 0, dataMs: 0 });
  }
  let { connection, connectMs } = lease;
  let reused = lease.reused;
  let sent = await sendOnce(lease.connection, envelope, body, signal, beforeFinalDot);
  if (sent.error && reused && sent.tracked.phase === 'envelope' && isStaleConnection(sent.error)) {
    connection.close();
    try {
      const fresh = await pool.reopen(connection, signal);
      ({ connection, connectMs } = fresh);
      reused = false;
      sent = await sendOnce(connection, envelope, body, signal, beforeFinalDot);
    } catch (err) {
      pool.release(connection, false);
      const facts = failureFacts(err as NodemailerError, 'connecting');
      return result(pool, facts, startedAt, t0, null, { waitMs: lease.waitMs, connectMs, envelopeMs: 0, dataMs: 0 });
    }
  }
  const tls = connection.tls();
  await giveBack(pool, connection, sent.error);
  const facts = sent.error ? failureFacts(sent.error, sent.tracked.phase) : successFacts(sent.info!);
  return result(
    pool,
    facts,
    startedAt,
    t0,
    tls,
    {
      waitMs: lease.waitMs,
      connectMs,
      envelopeMs: sent.envelopeMs,
      dataMs: sent.dataMs,
    },
    reused,
  );
}

interface SendOutcome {
  readonly tracked: TrackedBody | DirectBody;
  readonly info: SendInfo | null;
  readonly error: NodemailerError | null;
  readonly envelopeMs: number;
  readonly dataMs: number;
}

async function sendOnce(
  connection: Lease['connection'],
  envelope: UpstreamEnvelope,
  body: ReplayableBody,
  signal: StopSignal,
  beforeFinalDot: BeforeFinalDot | null,
): Promise<SendOutcome> {
  // Most bodies need no dot-stuffing: they go to the socket as they are (direct-body.ts).
  const tracked = Buffer.isBuffer(body) && passesUnchanged(body) ? new DirectBody(body, beforeFinalDot) : new TrackedBody(body, beforeFinalDot);
  const start = performance.now();
  let info: SendInfo | null = null;
  let error: NodemailerError | null = null;
  try {
    info = await connection.send(envelope, tracked, signal);
  } catch (err) {
    error = err as NodemailerError;
    tracked.destroy();
  }
  const end = performance.now();
  const bodyStart = tracked.bodyStartedAt ?? end;
  return { tracked, info, error, envelopeMs: bodyStart - start, dataMs: end - bodyStart };
}

/** A reused connection the server had already closed: no reply at all, a socket-level error. */
function isStaleConnection(err: NodemailerError): boolean {
  return err.responseCode === undefined && (err.code === 'ECONNECTION' || err.code === 'ESOCKET');
}

/** After a refused envelope/message the session is still good once RSET succeeds; anything else closes it. */
async function giveBack(pool: ConnectionPool, connection: Lease['connection'], error: NodemailerError | null): Promise<void> {
  if (!error) return pool.release(connection, true);
  const replyRefusal = error.responseCode !== undefined && error.responseCode !== 421 && (error.code === 'EENVELOPE' || error.code === 'EMESSAGE');
  if (replyRefusal && connection.alive && (await connection.reset(RESET_TIMEOUT_MS))) return pool.release(connection, true);
  pool.release(connection, false);
}

function result(
  pool: ConnectionPool,
  facts: UpstreamFacts,
  startedAt: Date,
  t0: number,
  tls: UpstreamTls | null,
  timing: AttemptResult['timing'],
  reusedConnection: boolean | null = null,
): AttemptResult {
  const ms = performance.now() - t0;
  return { upstream: pool.upstream, facts, startedAt, ms, tls, reusedConnection, timing };
}

/** The facts of a send nodemailer resolved: its final reply and the recipients it took or refused. */
export function successFacts(info: SendInfo): UpstreamFacts {
  return {
    ok: true,
    phase: 'done',
    reply: parseResponseLine(String(info.response ?? '')),
    replyPhase: 'data',
    errorCode: null,
    cause: null,
    timeoutType: null,
    syscall: null,
    message: null,
    accepted: (info.accepted ?? []).map(String),
    rejected: recipientFacts(info.rejectedErrors),
  };
}

export function failureFacts(err: NodemailerError, phase: AttemptPhase): UpstreamFacts {
  const e = err as NodemailerError & {
    response?: string;
    originalCode?: string;
    timeoutType?: string;
    syscall?: string | null;
    accepted?: string[];
    rejectedErrors?: NodemailerError[];
    cause?: { code?: string };
  };
  const reply = e.responseCode !== undefined && e.response ? parseResponseLine(e.response) : null;
  return {
    ok: false,
    phase,
    reply,
    replyPhase: reply ? replyPhaseOf(e.code, e.command, phase) : null,
    command: e.command ?? null,
    errorCode: e.code ?? null,
    cause: e.originalCode ?? e.cause?.code ?? null,
    timeoutType: e.timeoutType ?? null,
    syscall: e.syscall ?? null,
    message: e.message ?? null,
    accepted: [],
    rejected: recipientFacts(e.rejectedErrors),
  };
}

function recipientFacts(errors: NodemailerError[] | undefined): RecipientFact[] {
  return (errors ?? []).map((e) => {
    const r = e as NodemailerError & { recipient?: string; response?: string };
    return { recipient: String(r.recipient ?? ''), reply: r.response ? parseResponseLine(r.response) : null };
  });
}

/** nodemailer names the command that got the reply; EMESSAGE at DATA is the reply to the final dot. */
function replyPhaseOf(code: string | undefined, command: string | undefined, phase: AttemptPhase): ReplyPhase | null {
  if (!command) return null;
  if (command === 'DATA') return code === 'EMESSAGE' ? 'data' : 'data-command';
  if (command === 'MAIL FROM') return 'mail';
  if (command === 'RCPT TO') return 'rcpt';
  if (command === 'STARTTLS') return 'starttls';
  if (command.startsWith('AUTH')) return 'auth';
  if (command === 'EHLO' || command === 'HELO' || command === 'LHLO') return 'ehlo';
  // nodemailer reports any 421 as command CONN (10.1+): it is the greeting only while connecting.
  if (command === 'CONN') return phase === 'connecting' ? 'greeting' : null;
  return null;
}
