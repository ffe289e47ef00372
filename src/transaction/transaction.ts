import type { Readable } from 'node:stream';
import type { SMTPServerSession } from 'smtp-server';
import type { Config } from '../config/types.js';
import type { IdGenerator } from '../ids.js';
import type { Logger } from '../logger.js';
import type { DuplicateLinks } from './duplicate-tracker.js';
import { auditRefusalText } from '../audit/audit-refusal.js';
import type { Recorder } from '../audit/recorder.js';
import type { Built, MessageFacts, RelayRecord } from '../audit/records.js';
import { localFailure, queuedRecord, relayedRecord, unrelayedRecord, type RelayRecordInput } from './relay-record.js';
import { receiveMessage, type BufferedMessage } from '../buffer/data-buffer.js';
import { CLIENT_REPLIES, queuedReply, withId } from '../reply/client-replies.js';
import { DeliveryModes } from './delivery-mode.js';
import type { SpoolStore } from '../spool/spool-store.js';
import type { QueueManager } from '../spool/queue-manager.js';
import type { RelayDecision } from '../routing/relay-decision.js';
import type { RouteKey } from '../routing/route-table.js';
import type { SpoolAcceptance } from '../audit/records.js';
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
  /** The spool, when some listener or user is in spool or hybrid mode; null otherwise (docs/spool.md). */
  readonly spool?: SpoolStore | null;
  /** Delivery from the spool: hybrid mode hands it the attempts it spooled before they ended. */
  readonly queue?: QueueManager | null;
}

/** What a transaction in spool mode needs besides the record's input: the message and its envelope. */
interface SpoolInput {
  /** The transaction's id: the entry's, and the record's. */
  readonly id: string;
  readonly input: (message: MessageFacts, clientReply: SmtpReply, receiveMs: number) => RelayRecordInput;
  readonly facts: MessageFacts;
  readonly message: BufferedMessage;
  readonly receiveMs: number;
  readonly from: string;
  readonly to: readonly string[];
  readonly use8BitMime: boolean;
  /** Who sent it: the route of deliveries from the spool is chosen by them, as in pass-through. */
  readonly clientIp: string;
  readonly clientUser: string | null;
}

/**
 * One SMTP transaction from DATA to the reply: buffer the body, relay it, write exactly one `relay`
 * record, and only then hand back the reply (every 250 has its record first). Never throws.
 */
export class TransactionProcessor {
  #deps: TransactionDeps;
  #modes: DeliveryModes;
  #inFlight = 0;

  constructor(deps: TransactionDeps) {
    this.#deps = deps;
    this.#modes = new DeliveryModes(deps.config.clients.users);
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
    /** Hybrid mode's relay still in flight after the reply keeps the body until it ends (it disposes of it). */
    let bodyInUse = false;
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
      const mode = this.#modes.of(state);
      if (mode === 'spool') {
        const use8BitMime = envelope.bodyType === '8bitmime';
        return await this.#spool({ id, input, facts, message, receiveMs, from, to, use8BitMime, clientIp: state.ip, clientUser: state.client().user }, state);
      }
      if (mode === 'hybrid' && this.#deps.spool && this.#deps.queue) {
        const use8BitMime = envelope.bodyType === '8bitmime';
        const hybrid = await this.#hybrid(
          { id, input, facts, message, receiveMs, from, to, use8BitMime, clientIp: state.ip, clientUser: state.client().user },
          { user: state.client().user, from, ip: state.ip },
          state,
          this.#deps.spool,
          this.#deps.queue,
        );
        bodyInUse = hybrid.bodyInUse;
        return hybrid.reply;
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
      if (!bodyInUse) await message.dispose();
    }
  }

  /**
   * Spool mode (docs/spool.md): the message is written to the spool durably, its acceptance record
   * (outcome `queued`) is written, and only then the client gets `250 2.0.0 Ok: queued as <id>`. A
   * spool below `spool.minFreeSpace` answers 452 4.3.1, a spool that cannot be written 451: recorded
   * like every refusal after DATA, nothing queued.
   */
  async #spool(m: SpoolInput, state: ClientSession): Promise<TransactionReply> {
    const spool = this.#deps.spool;
    if (!spool) throw new Error('spool mode without a spool');
    const acceptance = { mode: 'spool' as const, reason: 'spool mode' };
    const queued = await this.#intoSpool(spool, m, acceptance, null);
    if (queued === 'full') {
      const failure = localFailure('internal', true, ERR.SPOOL_FULL, 'the spool folder is below spool.minFreeSpace: not queued');
      return this.#finish(unrelayedRecord(m.input(m.facts, CLIENT_REPLIES.spool_full, m.receiveMs), 'deferred', failure), state);
    }
    if (queued !== 'ok') {
      const failure = localFailure('internal', true, ERR.SPOOL_WRITE, queued.message);
      return this.#finish(unrelayedRecord(m.input(m.facts, CLIENT_REPLIES.spool_failed, m.receiveMs), 'deferred', failure), state);
    }
    return await this.#recordQueued(spool, m, acceptance, null, state);
  }

  /**
   * Hybrid mode (docs/spool.md, "Hybrid mode"): relayed at once, as pass-through, with a
   * `spool.hybridWait` timer. A verdict in time that delivered, partly delivered or refused for good
   * is the client's answer, as in pass-through; any other verdict in time (a 4xx, an unknown outcome)
   * and no verdict in time spool the message, and the client gets 250 queued. A message spooled
   * while its relay is in flight is `delivering`: the queue never tries it too, and when the relay
   * ends the queue takes its result as the first delivery (QueueManager.adopt). Its final dot is
   * covered like every attempt from the spool: sent before the entry exists, the entry is created
   * with the dot mark set; sent after, it waits for the durable mark. When the spool cannot take the
   * message, the client waits for the upstream's verdict as in pass-through.
   */
  async #hybrid(
    m: SpoolInput,
    key: RouteKey,
    state: ClientSession,
    spool: SpoolStore,
    queue: QueueManager,
  ): Promise<{ readonly reply: TransactionReply; readonly bodyInUse: boolean }> {
    const { engine, config } = this.#deps;
    const started = performance.now();
    let spooled: Promise<boolean> | null = null;
    let dotSentTo: string | null = null;
    const relaying = engine.relay({ from: m.from, to: m.to, use8BitMime: m.use8BitMime, size: m.message.size }, m.message.body(), queue.stopSignal, key, {
      beforeFinalDot: async (upstream) => {
        dotSentTo = upstream.name;
        if (spooled !== null && (await spooled)) await spool.markDotPending(m.id, upstream.name);
      },
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), config.spool.hybridWait)));
    const first = await Promise.race([relaying, late]);
    clearTimeout(timer);
    const passThrough = (decision: RelayDecision): TransactionReply => {
      const { verdict, result } = decision.deciding;
      const reply = relayReply(verdict, result.facts, config);
      return this.#finish(relayedRecord(m.input(m.facts, reply, m.receiveMs), decision, verdict.outcome, verdict), state);
    };
    if (first !== null) {
      const outcome = first.deciding.verdict.outcome;
      if (outcome === 'delivered' || outcome === 'partial' || outcome === 'rejected') return { reply: passThrough(first), bodyInUse: false };
      // A 4xx or an unknown outcome: the spool takes it from here, the dot mark set if the dot went out.
      const acceptance = { mode: 'hybrid' as const, reason: `hybrid: ${first.deciding.verdict.failure?.class ?? outcome}` };
      if ((await this.#intoSpool(spool, m, acceptance, { dotSentTo })) !== 'ok') return { reply: passThrough(first), bodyInUse: false };
      const reply = await this.#recordQueued(spool, m, acceptance, first, state);
      queue.adopt(m.id, Promise.resolve({ decision: first, ms: performance.now() - started }));
      return { reply, bodyInUse: false };
    }
    const acceptance = { mode: 'hybrid' as const, reason: `hybrid: no verdict within ${formatWait(config.spool.hybridWait)}` };
    const into = this.#intoSpool(spool, m, acceptance, { dotSentTo });
    spooled = into.then((r) => r === 'ok');
    if (!(await spooled)) return { reply: passThrough(await relaying), bodyInUse: false };
    const reply = await this.#recordQueued(spool, m, acceptance, null, state);
    queue.adopt(
      m.id,
      relaying.then((decision) => ({ decision, ms: performance.now() - started })),
    );
    // The relay still reads the body: it is released when the relay ends.
    void relaying.finally(() => m.message.dispose()).catch(() => undefined);
    return { reply, bodyInUse: true };
  }

  /** The message written into the spool durably ('ok'), or why not: below spool.minFreeSpace, or the error. */
  async #intoSpool(
    spool: SpoolStore,
    m: SpoolInput,
    acceptance: SpoolAcceptance,
    inFlight: { readonly dotSentTo: string | null } | null,
  ): Promise<'ok' | 'full' | Error> {
    if (!spool.hasRoom()) return 'full';
    try {
      await spool.accept({
        id: m.id,
        acceptance,
        from: m.from,
        to: m.to,
        use8BitMime: m.use8BitMime,
        message: { size: m.facts.size, sha256: m.facts.sha256, messageId: m.facts.messageId, headerFrom: m.message.headers.from },
        client: { ip: m.clientIp, user: m.clientUser },
        body: m.message.body(),
        inFlight,
      });
      return 'ok';
    } catch (err) {
      this.#deps.log.error({ err, id: m.id }, 'could not queue a message in the spool');
      return err as Error;
    }
  }

  /** The acceptance record, then 250 queued; a record that cannot be written takes the message back out (451). */
  async #recordQueued(
    spool: SpoolStore,
    m: SpoolInput,
    acceptance: SpoolAcceptance,
    tried: RelayDecision | null,
    state: ClientSession,
  ): Promise<TransactionReply> {
    const record = queuedRecord(m.input(m.facts, queuedReply(m.id), m.receiveMs), acceptance, tried);
    let written: boolean;
    try {
      written = this.#deps.recorder.relay(record);
    } catch {
      // No 250 without its record: the entry goes again, and the client, told 451, sends it again.
      return this.#unqueue(spool, record.id, state);
    }
    if (written) {
      // Not awaited: the mark only spares a restart a redundant `recovered` record (spool-store.ts).
      spool.markRecorded(record.id).catch((err: unknown) => this.#deps.log.warn({ err, id: record.id }, 'could not mark a spool entry recorded'));
    }
    this.#deps.duplicates?.written(record);
    state.accepted += 1;
    return { id: record.id, reply: record.clientReply };
  }

  /** A queued message whose acceptance record failed: removed from the spool, the client told 451. */
  async #unqueue(spool: SpoolStore, id: string, state: ClientSession): Promise<TransactionReply> {
    state.rejected += 1;
    try {
      await spool.remove(id);
      return { id, reply: withId(CLIENT_REPLIES.audit_failed, id) };
    } catch (err) {
      // Still queued, so it will be delivered, and the client will send it again: say so.
      this.#deps.log.error({ err, id }, 'could not take back from the spool a message whose acceptance record failed; it stays queued');
      return { id, reply: withId(CLIENT_REPLIES.audit_failed_after_queue, id) };
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

  #finish(record: Built<RelayRecord>, state: ClientSession): TransactionReply {
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

/** "10s", "1500ms": spool.hybridWait in the acceptance's reason. */
function formatWait(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
