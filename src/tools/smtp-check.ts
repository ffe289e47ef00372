/**
 * One login to an upstream, step by step, for `mailtrail check-upstream` (docs/oauth2.md, "Checking an
 * upstream"): connect, greeting, EHLO, STARTTLS, EHLO, AUTH, QUIT, each with what the server answered.
 *
 * It is the health probe's login (routing/upstream-probe.ts) made visible: the same connection options
 * (`connectionOptions`, so the same TLS settings, EHLO name and timeouts) and the same XOAUTH2 handler
 * with its one retry with a fresh token. What the probe keeps to itself is read from nodemailer's
 * transaction log, which names each command and each reply; nodemailer writes the credentials of an
 * AUTH command there as `/* secret *\/`, and only a command's verb (and AUTH's mechanism) is kept here.
 * Unlike the probe, a failed login is followed by QUIT, so every step the server was asked for is shown.
 */
import { format } from 'node:util';
import type { TLSSocket } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { UpstreamConfig } from '../config/types.js';
import { Deadline, stopReason } from '../upstream/deadline.js';
import { connectionOptions, type NodemailerError } from '../upstream/upstream-connection.js';
import { withXoauth2, xoauth2Auth, xoauth2Handler, type UpstreamLogin } from '../upstream/upstream-login.js';
import { decodeChallenge, replyFacts, type LoginFacts } from './login-findings.js';

export interface SmtpStep {
  /** `connect`, `greeting`, or the command: `EHLO`, `STARTTLS`, `AUTH`, `QUIT`... */
  readonly name: string;
  /**
   * `retried`: an AUTH whose token the server refused, tried once more with a fresh token (the next
   * AUTH step); `skipped`: not tried (an earlier step failed, or nothing to do).
   */
  readonly status: 'ok' | 'failed' | 'retried' | 'skipped';
  /** What happened, in the server's words where it answered; raw, to be escaped by whoever prints it. */
  readonly detail: string;
}

export interface SmtpCheck {
  readonly steps: readonly SmtpStep[];
  /** nodemailer's error (or the time limit's) when a step failed, for the classifier. */
  readonly error: NodemailerError | null;
  /** The AUTH mechanisms of the last EHLO answered; null when none was. */
  readonly offered: readonly string[] | null;
  /** The final answer to the last AUTH. */
  readonly authReply: LoginFacts['authReply'];
  /** An XOAUTH2 error challenge the server sent, decoded. */
  readonly challenge: Record<string, unknown> | null;
}

export interface SmtpCheckOptions {
  readonly upstream: UpstreamConfig;
  /** EHLO name when the upstream has no `ehloName`: the relay's hostname. */
  readonly ehloName: string;
  /** How to log in; null: no AUTH. */
  readonly login: UpstreamLogin | null;
  /** The token an XOAUTH2 login starts with (fetched beforehand, so the check shows it as its own step). */
  readonly token: string | null;
  /** Why AUTH is not tried although the upstream has `auth` (no token could be had); null when it is tried. */
  readonly authSkipped: string | null;
  /** Longest the whole exchange may take. */
  readonly timeoutMs: number;
}

/** One line of nodemailer's transaction log, or an event of the connection. */
type Entry =
  | { readonly kind: 'client' | 'server'; readonly text: string }
  | { readonly kind: 'connected'; readonly remote: string }
  | { readonly kind: 'upgraded' | 'closed' };

/** How long QUIT may wait for its answer. */
const QUIT_WAIT_MS = 3_000;

/** Runs the login once. Never throws for what the server or the network does: that is in the result. */
export async function checkSmtp(o: SmtpCheckOptions): Promise<SmtpCheck> {
  const entries: Entry[] = [];
  const limit = Deadline.after(o.timeoutMs, () => stopReason(`no answer within ${o.timeoutMs} ms`, 'ETIMEDOUT'));
  const options = { ...connectionOptions(o.upstream, o.ehloName), logger: transcript(entries), transactionLog: true };
  const xoauth2 = o.login?.kind === 'xoauth2' ? o.login : null;
  const conn = new SMTPConnection(
    xoauth2
      ? withXoauth2(
          options,
          xoauth2Handler(xoauth2, () => o.token ?? '', limit),
        )
      : options,
  );
  let failure: NodemailerError | null = null;
  let ended = false;
  conn.on('error', (err: NodemailerError) => (failure ??= err));
  conn.on('end', () => (ended = true));
  /** Runs one nodemailer call; settles on its callback, on an error event, or when the time is up. */
  const attempt = (start: (done: (err?: Error | null) => void) => void): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      let settled = false;
      let detach = (): void => undefined;
      const settle = (err?: Error | null): void => {
        if (settled) return;
        settled = true;
        conn.off('error', settle);
        detach();
        if (err) failure ??= err as NodemailerError;
        resolve(!err);
      };
      conn.once('error', settle);
      detach = limit.onStop((reason) => {
        settle(reason);
        conn.close();
      });
      if (!settled) start(settle);
    });
  let tls: string | null = null;
  try {
    const connected = await attempt((done) => conn.connect(() => done()));
    if (connected) tls = tlsFacts(conn._socket as TLSSocket | undefined);
    if (connected && o.login !== null) {
      const login = o.login;
      await attempt((done) => conn.login(login.kind === 'xoauth2' ? xoauth2Auth(login.user) : { user: login.user, pass: login.pass }, (err) => done(err)));
    }
    if (!ended && !limit.stopped) {
      const quitWait = Deadline.after(QUIT_WAIT_MS, () => stopReason('no answer to QUIT', 'ETIMEDOUT'), limit);
      await new Promise<void>((resolve) => {
        const detach = quitWait.onStop(() => resolve());
        conn.once('end', () => {
          detach();
          resolve();
        });
        conn.quit();
      });
      quitWait.dispose();
    }
  } finally {
    limit.dispose();
    conn.close();
  }
  return result(entries, failure, tls, o);
}

/** nodemailer's logger interface (bunyan's), keeping the transaction log and the connection's events. */
function transcript(entries: Entry[]): Record<'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal', (...args: unknown[]) => void> {
  const ignore = (): void => undefined;
  return {
    trace: ignore,
    warn: ignore,
    error: ignore,
    fatal: ignore,
    debug: (data: unknown, message: unknown, ...args: unknown[]) => {
      const tnx = (data as { tnx?: unknown } | undefined)?.tnx;
      if (tnx === 'client' || tnx === 'server') entries.push({ kind: tnx, text: format(String(message), ...args) });
    },
    info: (data: unknown, message: unknown) => {
      const entry = (data ?? {}) as { tnx?: unknown; remoteAddress?: string; remotePort?: number };
      const text = String(message);
      if (entry.tnx === 'network' && entry.remoteAddress !== undefined)
        entries.push({ kind: 'connected', remote: `${entry.remoteAddress}:${entry.remotePort ?? '?'}` });
      else if (text.startsWith('Connection upgraded with STARTTLS')) entries.push({ kind: 'upgraded' });
      else if (text === 'Connection closed') entries.push({ kind: 'closed' });
    },
  };
}

interface Draft {
  name: string;
  /** For AUTH: `AUTH XOAUTH2`; nothing after the mechanism is ever kept. */
  command: string;
  replies: string[];
  upgraded: boolean;
  detail: string | null;
}

/** The steps as the log tells them, the planned ones that did not happen, and the facts the findings read. */
function result(entries: readonly Entry[], failure: NodemailerError | null, tls: string | null, o: SmtpCheckOptions): SmtpCheck {
  const drafts: Draft[] = [];
  let current: Draft | null = null;
  let offered: string[] | null = null;
  for (const e of entries) {
    if (e.kind === 'connected') {
      drafts.push({
        name: 'connect',
        command: 'connect',
        replies: [],
        upgraded: false,
        detail: o.upstream.implicitTls ? `${e.remote}, ${tls ?? 'TLS'}` : e.remote,
      });
    } else if (e.kind === 'server') {
      if (current === null) {
        current = { name: 'greeting', command: 'greeting', replies: [], upgraded: false, detail: null };
        drafts.push(current);
      }
      current.replies.push(e.text);
    } else if (e.kind === 'client') {
      const verb = /^(EHLO|HELO|LHLO|STARTTLS|AUTH|QUIT|RSET|NOOP)\b/i.exec(e.text)?.[1]?.toUpperCase();
      // Anything else is a continuation of AUTH (credentials, masked by nodemailer): never shown.
      if (verb === undefined) continue;
      const mechanism = verb === 'AUTH' ? (/^AUTH\s+([\w-]+)/i.exec(e.text)?.[1]?.toUpperCase() ?? '') : '';
      current = { name: verb, command: mechanism ? `AUTH ${mechanism}` : verb, replies: [], upgraded: false, detail: null };
      drafts.push(current);
    } else if (e.kind === 'upgraded') {
      const starttls = drafts.findLast((d) => d.name === 'STARTTLS');
      if (starttls) starttls.upgraded = true;
    }
  }
  // An AUTH followed by another is a refused token that the XOAUTH2 handler replaced with a fresh one.
  const steps: SmtpStep[] = drafts.map((d, i) => {
    const step = judge(d, tls);
    return d.name === 'AUTH' && drafts.slice(i + 1).some((n) => n.name === 'AUTH')
      ? { ...step, status: 'retried', detail: `${step.detail} (mailtrail fetched a fresh token and tried once more)` }
      : step;
  });
  for (const d of drafts) if (/^(?:EHLO|HELO|LHLO)$/.test(d.name) && d.replies.length > 0) offered = authMechanisms(d.replies.at(-1)!);
  const lastAuth = drafts.findLast((d) => d.name === 'AUTH');
  const authRaw = lastAuth?.replies.at(-1);
  const challenge = lastAuth?.command === 'AUTH XOAUTH2' ? (lastAuth.replies.map(decodeChallenge).find((c) => c !== null) ?? null) : null;
  fillPlan(steps, failure, o, offered);
  return { steps, error: failure, offered, authReply: authRaw === undefined ? null : replyFacts(authRaw), challenge };
}

/** A step's outcome from its replies: the expected code (STARTTLS also needs the TLS upgrade). */
function judge(d: Draft, tls: string | null): SmtpStep {
  if (d.name === 'connect') return { name: 'connect', status: 'ok', detail: d.detail ?? '' };
  const last = d.replies.at(-1);
  const code = last === undefined ? null : Number(last.slice(0, 3));
  const said = d.replies.map((r) => shownReply(r, d.command)).join(', then ');
  const expected: Record<string, number> = { greeting: 220, EHLO: 250, HELO: 250, LHLO: 250, STARTTLS: 220, AUTH: 235, QUIT: 221, RSET: 250, NOOP: 250 };
  if (code === null)
    return { name: d.name, status: d.name === 'QUIT' ? 'ok' : 'failed', detail: d.name === 'QUIT' ? 'the server closed the connection' : 'no answer' };
  if (d.name === 'STARTTLS' && code === 220) {
    return d.upgraded
      ? { name: d.name, status: 'ok', detail: `${said}; ${tls ?? 'TLS'}` }
      : { name: d.name, status: 'failed', detail: `${said}; the TLS handshake failed` };
  }
  const ok = code === expected[d.name];
  return { name: d.name, status: ok ? 'ok' : 'failed', detail: d.command.startsWith('AUTH ') ? `${d.command}: ${said}` : said };
}

/** A reply as shown: an EHLO's extensions listed, an XOAUTH2 error challenge decoded. */
function shownReply(reply: string, command: string): string {
  const lines = reply.split('\n');
  if (/^(?:EHLO|HELO|LHLO)$/.test(command) && lines.length > 1) {
    const first = lines[0]!.slice(4);
    return `${lines[0]!.slice(0, 3)} ${first}; offers ${lines
      .slice(1)
      .map((l) => l.slice(4))
      .join(', ')}`;
  }
  if (command === 'AUTH XOAUTH2') {
    const challenge = decodeChallenge(reply);
    if (challenge !== null) return `334 ${JSON.stringify(challenge)} (the error, decoded from base64)`;
  }
  return reply;
}

function authMechanisms(ehlo: string): string[] {
  const line = ehlo.split('\n').find((l) => /^\d{3}[ -]AUTH[ =]/i.test(l));
  return line === undefined
    ? []
    : line
        .slice(9)
        .trim()
        .split(/[\s=]+/)
        .filter((m) => m !== '')
        .map((m) => m.toUpperCase());
}

/**
 * The planned steps that did not happen: after a failure, `not reached`; STARTTLS with tls.mode
 * opportunistic when the server did not offer it; AUTH when there was nothing to log in with. The
 * failure that no step shows (a greeting that never came) is put on the step it stopped.
 */
function fillPlan(steps: SmtpStep[], error: NodemailerError | null, o: SmtpCheckOptions, offered: readonly string[] | null): void {
  const u = o.upstream;
  const tls = !u.implicitTls && u.tls.mode !== 'none';
  const plan = ['connect', 'greeting', 'EHLO', ...(tls ? ['STARTTLS', 'EHLO'] : []), ...(u.auth !== null ? ['AUTH'] : []), 'QUIT'];
  // Each step's place in the plan; a step the plan has no place of (a second AUTH) takes its predecessor's.
  const slots: number[] = [];
  let next = 0;
  for (const step of steps) {
    const j = plan.indexOf(step.name === 'HELO' || step.name === 'LHLO' ? 'EHLO' : step.name, next);
    if (j >= 0) next = j + 1;
    slots.push(j >= 0 ? j : (slots.at(-1) ?? 0));
  }
  for (let k = 0; k < plan.length; k++) {
    if (slots.includes(k)) continue;
    const at = slots.findIndex((slot) => slot > k);
    const before = at < 0 ? steps.length : at;
    const step = missingStep(plan[k]!, steps.slice(0, before), error, o, offered);
    if (step === null) continue;
    steps.splice(before, 0, step);
    slots.splice(before, 0, k);
  }
}

/** A planned step that did not happen, given the steps before it; null when it is not worth a line (the EHLO after a STARTTLS not offered). */
function missingStep(
  name: string,
  before: readonly SmtpStep[],
  error: NodemailerError | null,
  o: SmtpCheckOptions,
  offered: readonly string[] | null,
): SmtpStep | null {
  if (before.some((s) => s.status === 'failed')) {
    return { name, status: 'skipped', detail: name === 'QUIT' ? 'not sent: the connection is closed' : 'not reached' };
  }
  if (error !== null) return { name, status: 'failed', detail: error.message || String(error.code ?? 'failed') };
  if (name === 'STARTTLS' && o.upstream.tls.mode === 'opportunistic') {
    return { name, status: 'skipped', detail: 'not offered by the server: the session stays unencrypted (tls.mode opportunistic)' };
  }
  if (name === 'AUTH' && o.authSkipped !== null) return { name, status: 'skipped', detail: o.authSkipped };
  if (name === 'AUTH' && offered !== null) {
    return {
      name,
      status: 'failed',
      detail: `not tried: the server offers no AUTH${offered.length > 0 ? ` mechanism mailtrail can use (${offered.join(' ')})` : ''}`,
    };
  }
  return null;
}

/** The TLS of the connection, in words: protocol, cipher, whose certificate and whether it was verified. */
function tlsFacts(socket: TLSSocket | undefined): string | null {
  if (socket === undefined || typeof socket.getProtocol !== 'function') return null;
  const cert = socket.getPeerCertificate();
  const subject = cert?.subject?.CN;
  const issuer = cert?.issuer?.O ?? cert?.issuer?.CN;
  const whose = subject ? `certificate of ${String(subject)}${issuer ? ` issued by ${String(issuer)}` : ''}` : 'certificate';
  const verified = socket.authorized ? 'verified' : `NOT verified (${String(socket.authorizationError ?? 'tls.verify false')})`;
  return `${socket.getProtocol() ?? 'TLS'} ${socket.getCipher()?.name ?? ''}, ${whose}, ${verified}`.replace(/\s+,/g, ',');
}
