import type { ClientRejectClass } from '../relay/failure-class.js';
import type { SmtpReply } from '../relay/upstream-facts.js';

/**
 * smtp-server refuses some things itself (syntax errors, bad sequence, declared SIZE too large, too
 * many recipients, idle timeout) and offers no hook for them; its logger is the only place they
 * show. This adapter watches the logger's "S:" lines and the client's commands, so each such
 * refusal becomes a `reject` record too (AUDIT-SCHEMA.md: none go unrecorded).
 */
export interface ProtocolObserver {
  /** The client sent a command (verb only, credentials never reach us: smtp-server redacts AUTH). */
  command(sessionId: string, verb: string): void;
  /** smtp-server sent a 4xx/5xx reply. */
  refusal(sessionId: string, reply: SmtpReply): void;
  /** smtp-server logged an error (client socket or TLS trouble). */
  error(entry: Record<string, unknown>, message: string): void;
}

/** Classification of smtp-server's own refusals, by reply code first, then by its fixed texts. */
const PROTOCOL_RULES: readonly { code: number; text?: RegExp; class: ClientRejectClass | null }[] = [
  { code: 421, text: /shutting down/i, class: null }, // our own shutdown, not a refusal of the client
  { code: 421, text: /timeout/i, class: 'client_timeout' }, // "Timeout - closing connection"
  { code: 421, text: /too many/i, class: 'too_many_connections' },
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

/** A bunyan-style logger for smtp-server that feeds the observer and drops the chatter. */
export function protocolLogger(observer: ProtocolObserver): Record<string, (...args: unknown[]) => void> {
  const ignore = (): void => undefined;
  return {
    trace: ignore,
    info: ignore,
    warn: ignore,
    fatal: ignore,
    debug: (entry: unknown, _msg: unknown, line: unknown) => {
      const e = entry as { tnx?: string; cid?: string; command?: string };
      if (!e.cid) return;
      if (e.tnx === 'command' && e.command) observer.command(e.cid, e.command);
      else if (e.tnx === 'send' && typeof line === 'string' && (line[0] === '4' || line[0] === '5')) {
        observer.refusal(e.cid, parseWireReply(line));
      }
    },
    error: (entry: unknown, msg: unknown) => observer.error((entry ?? {}) as Record<string, unknown>, String(msg ?? '')),
  };
}

function parseWireReply(line: string): SmtpReply {
  const first = line.split('\r\n')[0] ?? line;
  const code = Number(first.slice(0, 3));
  const rest = first.slice(4);
  const m = /^(\d\.\d{1,3}\.\d{1,3}) (.*)$/.exec(rest);
  return m ? { code, enhanced: m[1]!, text: m[2]! } : { code, enhanced: null, text: rest };
}
