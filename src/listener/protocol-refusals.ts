import type { ClientRejectClass } from '../classify/failure-class.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';

/**
 * smtp-server refuses some things itself (syntax errors, bad sequence, declared SIZE too large, too
 * many recipients, idle timeout) and offers no hook for them; the connection's own reply writer is
 * the only place they show. observeProtocol() below watches each connection's replies and the
 * client's commands, so each such refusal is counted and told in the trail too (docs/audit-record.md:
 * none go untold), and its text can carry the id of the record that tells it.
 */
export interface ProtocolObserver {
  /** The client sent a command (the verb only, so AUTH credentials never reach us). */
  command(sessionId: string, verb: string): void;
  /**
   * A 4xx/5xx reply is about to be sent. Returns the id to add to its text (null: none, e.g. it has
   * one already) and a reply to send right after it (null: none), such as the 421 of an error limit.
   */
  refusal(sessionId: string, reply: SmtpReply): { readonly id: string | null; readonly then: WireReply | null };
}

/** A reply as it goes out: the code, and the text with its enhanced code first (replies.ts wireText). */
export interface WireReply {
  readonly code: number;
  readonly text: string;
}

/** Classification of smtp-server's own refusals, by reply code first, then by its fixed texts. */
const PROTOCOL_RULES: readonly { code: number; text?: RegExp; class: ClientRejectClass | null }[] = [
  { code: 421, text: /shutting down/i, class: null }, // our own shutdown, not a refusal of the client
  { code: 421, text: /timeout/i, class: 'client_timeout' }, // "Timeout - closing connection"
  // maxClients; "too many unrecognized commands" is the client breaking SMTP (the default below).
  { code: 421, text: /too many connected clients/i, class: 'too_many_connections' },
  { code: 552, class: 'too_large' }, // MAIL FROM SIZE= over the advertised limit
  { code: 452, class: 'too_many_recipients' }, // maxRecipients
  { code: 530, class: 'auth_required' },
  { code: 538, class: 'tls_required' },
];

export function classifyProtocolRefusal(reply: SmtpReply): ClientRejectClass | null {
  for (const rule of PROTOCOL_RULES) {
    if (rule.code === reply.code && (!rule.text || rule.text.test(reply.text))) return rule.class;
  }
  return 'protocol_violation';
}

/** The two smtp-server connection methods observed (checked at start-up by fast-greeting.ts). */
export interface ObservableConnection {
  readonly id: string;
  send(code: number, data?: string | string[], context?: unknown): void;
  _onCommand(command: Buffer | string, callback: () => void): void;
}

/**
 * Watches one client connection: every command verb the client sends and every 4xx/5xx reply the
 * connection writes. This replaces smtp-server's logger as the capture point: with a logger set,
 * smtp-server formats a log entry for every command and reply (about 60 µs per message measured),
 * whereas these two wrappers cost a function call each. Only the verb of a command is kept, so AUTH
 * credentials never reach us.
 */
export function observeProtocol(connection: ObservableConnection, observer: ProtocolObserver): void {
  const onCommand = connection._onCommand;
  connection._onCommand = function observedCommand(command, callback) {
    const line = typeof command === 'string' ? command : command.toString('latin1', 0, Math.min(command.length, 16));
    const space = line.indexOf(' ');
    observer.command(connection.id, (space < 0 ? line : line.slice(0, space)).trim().toUpperCase());
    onCommand.call(connection, command, callback);
  };
  const send = connection.send;
  connection.send = function observedSend(code, data, context) {
    if (code < 400) return send.call(connection, code, data, context);
    const first = Array.isArray(data) ? (data[0] ?? '') : (data ?? '');
    const { id, then } = observer.refusal(connection.id, parseWireReply(`${code} ${first}`));
    send.call(connection, code, id === null ? data : withIdOnLastLine(data, id), context);
    // A 421 closes the connection (smtp-server's send), so `then` goes out last; false: no enhanced
    // code of smtp-server's own, the text has ours.
    if (then !== null) send.call(connection, then.code, then.text, false);
  };
}

/** `(id …)` at the end of the reply text, as replies.ts withId() writes it. */
function withIdOnLastLine(data: string | string[] | undefined, id: string): string | string[] {
  if (!Array.isArray(data)) return data ? `${data} (id ${id})` : `(id ${id})`;
  return data.map((line, i) => (i === data.length - 1 ? `${line} (id ${id})` : line));
}

function parseWireReply(line: string): SmtpReply {
  const first = line.split('\r\n')[0] ?? line;
  const code = Number(first.slice(0, 3));
  const rest = first.slice(4);
  const m = /^(\d\.\d{1,3}\.\d{1,3}) (.*)$/.exec(rest);
  return m ? { code, enhanced: m[1]!, text: m[2]! } : { code, enhanced: null, text: rest };
}
