import type { Recorder } from '../audit/recorder.js';
import { AUDIT_SCHEMA_VERSION, type Built, type ClientFacts, type RejectRecord } from '../audit/records.js';
import type { IdGenerator } from '../ids.js';
import type { EventPublisher } from '../event-bus.js';
import type { ListenerEvents } from './listener-events.js';
import type { Logger } from '../logger.js';
import type { ClientRejectClass } from '../classify/failure-class.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';
import type { RefusedWindow } from '../admission/connection-rate.js';
import type { ErrorLimits } from './error-limits.js';
import type { WireReply } from './protocol-refusals.js';
import { CLIENT_REPLIES, wireText, withId, connectionRateReply } from '../reply/client-replies.js';
import type { SessionState } from './session-state.js';

/**
 * What a refused client wrote into a `reject` record is kept to this many characters. smtp-server
 * holds an address to 253 (RFC 5321 §4.5.3.1.3 caps a path at 256 octets), but not an AUTH username,
 * which may fill its 16 KiB command line; so one record stays small whatever the client sends.
 */
const MAX_CLIENT_TEXT = 256;

export interface RefusalRecorderDeps {
  readonly recorder: Recorder;
  readonly bus: EventPublisher<ListenerEvents>;
  readonly ids: IdGenerator;
  readonly log: Logger;
  readonly errorLimits: ErrorLimits;
  /** `limits.recordedRefusals`: refusals of one connection with a `reject` record of their own. */
  readonly recordedRefusals: number;
}

/** The facts of a refusal that only its caller knows. */
export type RefusalFacts = Partial<Pick<RejectRecord, 'from' | 'to' | 'authUser'>>;

/**
 * Every refusal of a client goes through here, mailtrail's own and smtp-server's alike: it is
 * published (the metrics count every one), counted as an error of its connection (error-limits.ts),
 * counted by class for the connection's `session` record, and written as a `reject` record when it
 * is one of the connection's first `recordedRefusals` (refusal-tally.ts). The id it returns is the one
 * the reply carries: its own record's, or the session record's, which counts it.
 */
export class RefusalRecorder {
  #deps: RefusalRecorderDeps;

  constructor(deps: RefusalRecorderDeps) {
    this.#deps = deps;
  }

  /** A refusal of `state`'s connection; `always`: it gets its record whatever the count. */
  refused(
    state: SessionState,
    cls: ClientRejectClass,
    reply: SmtpReply,
    command: string,
    source: RejectRecord['source'],
    facts: RefusalFacts = {},
    always = false,
  ): string {
    this.#deps.bus.publish('refusal', { class: cls });
    state.rejected += 1;
    state.errors += 1;
    // A 421 closes the connection anyway; the cut-off is for a client that could go on.
    if (reply.code !== 421 && this.#deps.errorLimits.reached(state.errors)) state.cutOff = true;
    if (!state.refusals.add(cls, this.#deps.recordedRefusals, always)) return state.recordId;
    const id = this.#deps.ids.next();
    this.#write({
      id,
      session: { id: state.id, txn: state.transactions },
      client: state.client(),
      command,
      from: clipped(facts.from ?? null),
      to: clipped(facts.to ?? null),
      authUser: clipped(facts.authUser ?? null),
      class: cls,
      // What the client saw: the text ends with this record's id (protocol-refusals.ts adds it to
      // smtp-server's own replies).
      clientReply: withId(reply, id),
      source,
      count: 1,
    });
    return id;
  }

  /**
   * The connection reached `limits.hardErrorLimit`: `421 4.7.0 Error: too many errors`, always
   * recorded, since the record says why the connection ended.
   */
  cutOff(state: SessionState, command: string): WireReply {
    state.cutOff = false;
    const reply = CLIENT_REPLIES.too_many_errors;
    this.#deps.log.info({ session: state.id, ip: state.ip, errors: state.errors }, 'client cut off after too many errors (limits.hardErrorLimit)');
    const id = this.refused(state, 'too_many_errors', reply, command, 'policy', {}, true);
    return { code: reply.code, text: wireText(reply, id) };
  }

  /**
   * A connection refused before its SMTP session started (listener/proxy-gate.ts): no session state,
   * so no session record; its own `reject` record. Returns the record's id.
   */
  beforeSession(sessionId: string, client: ClientFacts, cls: ClientRejectClass, reply: SmtpReply): string {
    this.#deps.bus.publish('refusal', { class: cls });
    const id = this.#deps.ids.next();
    this.#write({
      id,
      session: { id: sessionId, txn: 0 },
      client,
      command: 'CONNECT',
      from: null,
      to: null,
      authUser: null,
      class: cls,
      clientReply: withId(reply, id),
      source: 'policy',
      count: 1,
    });
    return id;
  }

  /** A connection refused by the connection rate: counted now, recorded with its window (window()). */
  overRate(): void {
    this.#deps.bus.publish('refusal', { class: 'connection_rate' });
  }

  /** The connection-rate refusals of one address in one window (connection-rate.ts): one record. */
  window(window: RefusedWindow): void {
    const { client } = window.first;
    this.#deps.log.warn({ ip: client.ip, refused: window.refused }, 'connections refused over limits.connectionRatePerIp in the last minute');
    this.#write({
      id: window.id,
      session: { id: window.first.sessionId, txn: 0 },
      client,
      command: 'CONNECT',
      from: null,
      to: null,
      authUser: null,
      class: 'connection_rate',
      clientReply: withId(connectionRateReply(client.ip), window.id),
      source: 'policy',
      count: window.refused,
    });
  }

  #write(fields: Omit<Built<RejectRecord>, 'v' | 'type' | 'time'>): void {
    this.#deps.recorder.reject({ v: AUDIT_SCHEMA_VERSION, type: 'reject', time: new Date().toISOString(), ...fields });
  }
}

/** `text` cut to MAX_CLIENT_TEXT characters, "…" marking the cut. */
function clipped(text: string | null): string | null {
  return text !== null && text.length > MAX_CLIENT_TEXT ? `${text.slice(0, MAX_CLIENT_TEXT)}…` : text;
}
