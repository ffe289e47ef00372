import type { Readable } from 'node:stream';
import type { SMTPServerSession } from 'smtp-server';
import type { Config } from '../config/types.js';
import type { IdGenerator } from '../ids.js';
import type { Logger } from '../logger.js';
import type { DuplicateLinks } from './duplicate-tracker.js';
import { auditRefusalText } from '../audit/audit-refusal.js';
import type { Recorder } from '../audit/recorder.js';
import type { MessageFacts, RelayRecord } from '../audit/records.js';
import { localFailure, relayedRecord, unrelayedRecord, type RelayRecordInput } from './relay-record.js';
import { receiveMessage, type BufferedMessage } from '../buffer/data-buffer.js';
import { CLIENT_REPLIES, withId } from '../reply/client-replies.js';
import { relayReply } from '../reply/relay-reply.js';
import type { ClientSession } from './client-session.js';
import type { StopSignal } from '../upstream/deadline.js';
import type { RelayEngine } from '../routing/relay-engine.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';
import { spillDir } from '../buffer/temp-files.js';
import { ERR } from '../error-codes.js';

export interface TransactionReply {
  readonly id: string;
  readonly reply: SmtpReply;
}

export interface TransactionDeps {
  readonly config: Config;
  readonly engine: RelayEngine;
  readonly recorder: Recorder;
  /** Links a retry of an unknown/deferred message to the earlier record (`duplicateOf`). */
  readonly duplicates?: DuplicateLinks;
  readonly ids: IdGenerator;
  readonly log: Logger;
  /** Fires at shutdown when in-flight relays must give up (their deadline is the other bound). */
  readonly shutdownSignal: StopSignal;
}

/**
 * One SMTP transaction from DATA to the reply: buffer the body, relay it, write exactly one `relay`
 * record, and only then hand back the reply (every 250 has its record first). Never throws.
 */
export class TransactionProcessor {
  #deps: TransactionDeps;
  #inFlight = 0;

  constructor(deps: TransactionDeps) {
    this.#deps = deps;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  async process(stream: Readable, session: SMTPServerSession, state: ClientSession): Promise<TransactionReply> {
    this.#inFlight += 1;
    try {
      return await this.#process(stream, session, state);
    } finally {
      this.#inFlight -= 1;
    }
  }

  async #process(stream: Readable, session: SMTPServerSession, state: ClientSession): Promise<TransactionReply> {
    const { config, ids } = this.#deps;
    const t0 = performance.now();
    const id = ids.next();
    state.transactions += 1;
    const envelope = session.envelope;
    const from = envelope.mailFrom ? envelope.mailFrom.address : '';
    const to = envelope.rcptTo.map((r) => r.address);
    const input = (message: MessageFacts, clientReply: SmtpReply, receiveMs: number, duplicateOf: string | null = null): RelayRecordInput => ({
      id,
      session: { id: state.id, txn: state.transactions },
      client: state.client(),
      from,
      to,
      message,
      // The record holds exactly what the client was told, id included.
      clientReply: withId(clientReply, id),
      receiveMs,
      totalMs: performance.now() - t0,
      duplicateOf,
    });

    let message: BufferedMessage;
    try {
      message = await receiveMessage(stream, {
        memoryLimit: config.limits.memoryBufferSize,
        maxSize: config.limits.maxMessageSize,
        tempDir: spillDir(config.dataDir),
      });
    } catch (err) {
      return this.#receiveFailed(err as Error & { code?: string }, input, t0, state);
    }
    const receiveMs = performance.now() - t0;
    state.bytes += message.size;
    const facts = messageFacts(message, config.audit.subject);
    // Looked up while the message is relayed: with the fleet's Redis it costs no time of its own.
    const duplicateOf = this.#deps.duplicates?.earlier(facts.sha256, from, to) ?? null;
    try {
      if (message.oversize) {
        const reply = CLIENT_REPLIES.too_large;
        const failure = localFailure('too_large', false, null, `message exceeds limits.maxMessageSize (${config.limits.maxMessageSize} bytes)`);
        return this.#finish(unrelayedRecord(input(facts, reply, receiveMs, await duplicateOf), 'rejected', failure), state);
      }
      const refusal = this.#deps.recorder.refusal();
      if (refusal !== null) {
        // The trail cannot be written, or is nearly full: refuse before relaying. Relaying first would
        // deliver the message and still answer 451, so every retry of the client would deliver again.
        const failure = localFailure('internal', true, ERR.AUDIT_WRITE, `${auditRefusalText(refusal)}: not relayed`);
        return this.#finish(unrelayedRecord(input(facts, CLIENT_REPLIES.audit_failed, receiveMs, await duplicateOf), 'deferred', failure), state);
      }
      const decision = await this.#deps.engine.relay(
        { from, to, use8BitMime: envelope.bodyType === '8bitmime', size: message.size },
        message.body(),
        this.#deps.shutdownSignal,
        // The route is chosen by who sends, as whom, from where (config `routes`).
        { user: state.client().user, from, ip: state.ip },
      );
      const { verdict, result } = decision.deciding;
      const reply = relayReply(verdict, result.facts, config);
      return this.#finish(relayedRecord(input(facts, reply, receiveMs, await duplicateOf), decision, verdict.outcome, verdict), state);
    } finally {
      await message.dispose();
    }
  }

  #receiveFailed(
    err: Error & { code?: string },
    input: (m: MessageFacts, r: SmtpReply, ms: number) => RelayRecordInput,
    t0: number,
    state: ClientSession,
  ): TransactionReply {
    const receiveMs = performance.now() - t0;
    const empty: MessageFacts = { size: 0, sha256: '', messageId: null, subject: null, headerFrom: null };
    const slow = slowClient(err);
    if (slow) {
      // Cut for sending under timeouts.dataMinRate (listener/client-deadlines.ts): the client is told so, and will retry.
      const failure = localFailure('client_too_slow', true, slow.code, slow.message);
      return this.#finish(unrelayedRecord(input(empty, slow.reply, receiveMs), 'deferred', failure), state);
    }
    if (err.code === ERR.CLIENT_ABORT) {
      // Nobody is left to read a reply; the record still says the transaction existed.
      const reply = { code: 0, enhanced: null, text: 'client disconnected during DATA, no reply sent' };
      const failure = localFailure('client_aborted', true, err.code, err.message);
      return this.#finish(unrelayedRecord(input(empty, reply, receiveMs), 'aborted', failure), state);
    }
    this.#deps.log.error({ err }, 'receiving message failed');
    const reply = CLIENT_REPLIES.internal;
    const failure = localFailure('internal', true, err.code ?? null, err.message);
    return this.#finish(unrelayedRecord(input(empty, reply, receiveMs), 'deferred', failure), state);
  }

  #finish(record: RelayRecord, state: ClientSession): TransactionReply {
    try {
      this.#deps.recorder.relay(record);
    } catch {
      state.rejected += 1;
      // Never 250 without a record. When the upstream may already have the message, say so: the
      // client's retry may deliver it twice (a duplicate beats a loss), and the operational log
      // holds the record (recorder.ts).
      const mayHaveIt = record.outcome === 'delivered' || record.outcome === 'partial' || record.outcome === 'unknown';
      return { id: record.id, reply: withId(mayHaveIt ? CLIENT_REPLIES.audit_failed_after_relay : CLIENT_REPLIES.audit_failed, record.id) };
    }
    this.#deps.duplicates?.written(record);
    if (record.clientReply.code >= 200 && record.clientReply.code < 300) state.accepted += 1;
    else state.rejected += 1;
    return { id: record.id, reply: record.clientReply };
  }
}

function messageFacts(message: BufferedMessage, withSubject: boolean): MessageFacts {
  return {
    size: message.size,
    sha256: message.sha256,
    messageId: message.headers.messageId,
    subject: withSubject ? message.headers.subject : null,
    headerFrom: message.headers.from,
  };
}

/** The data stream was ended for a client under timeouts.dataMinRate: the cause carries the reply to give. */
function slowClient(err: Error & { code?: string }): { code: string; message: string; reply: SmtpReply } | null {
  const cause = err.cause as { code?: unknown; message?: unknown; reply?: SmtpReply } | undefined;
  if (err.code !== ERR.CLIENT_ABORT || cause?.code !== ERR.CLIENT_SLOW || !cause.reply) return null;
  return { code: ERR.CLIENT_SLOW, message: String(cause.message), reply: cause.reply };
}
