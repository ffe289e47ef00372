/**
 * `mailtrail check-upstream NAME [--config FILE]` (docs/oauth2.md, "Checking an upstream"): what the
 * health probe does, once and out loud. For an OAuth2 upstream it fetches a token through the token
 * cache the relay uses and shows what the token says about itself (never the token); then it logs in
 * to the mail server step by step (smtp-check.ts) and names the usual mistakes behind what it saw
 * (login-findings.ts), with what to do about each.
 *
 * A failed token request does not end the check: the mail server is still greeted (AUTH is then
 * skipped), so one run tells a wrong secret and an unreachable server apart.
 *
 * Exit 0 when every step worked, 1 when the identity provider or the mail server refused or could not
 * be reached (or the config does not load), 2 for bad usage (command-args.ts).
 */
import { classify } from '../classify/classify.js';
import { loadConfig } from '../config/load.js';
import type { Config, UpstreamConfig } from '../config/types.js';
import { CredentialFileError, readServiceAccountKey, type OAuth2Auth } from '../config/upstream-auth.js';
import { Deadline, stopReason } from '../upstream/deadline.js';
import { TokenError } from '../upstream/oauth2/token-error.js';
import { failureFacts } from '../upstream/upstream-attempt.js';
import type { NodemailerError } from '../upstream/upstream-connection.js';
import { upstreamLogin, type UpstreamLogin } from '../upstream/upstream-login.js';
import { closest, explainUsage, readCommandLine, shellWord } from './command-args.js';
import { reportConfigError } from './config-report.js';
import { loginFindings, type LoginFacts, type LoginFinding } from './login-findings.js';
import { checkSmtp, type SmtpCheck, type SmtpStep } from './smtp-check.js';
import { terminalText } from './terminal-text.js';
import { tokenShape, type TokenShape } from './token-claims.js';
import { EXIT } from './tool-io.js';

export const CHECK_UPSTREAM = {
  name: 'check-upstream',
  usage:
    'usage: mailtrail check-upstream NAME [--config FILE]   log in to upstream NAME once (OAuth2 token, EHLO, STARTTLS, AUTH, QUIT), ' +
    'step by step, naming what to fix; exit 1 when refused, 0 when it all worked',
  options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
  args: { max: 1, meant: 'config' },
} as const;

export interface CheckUpstreamIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

/** The token step of an OAuth2 upstream. */
export interface TokenStep {
  readonly ok: boolean;
  /** The token endpoint's host (and port), as the messages name it. */
  readonly endpoint: string;
  readonly ms: number;
  /** What the token says about itself; null when none was issued. */
  readonly shape: TokenShape | null;
  /** When the token expires (epoch ms), as the identity provider said (`expires_in`). */
  readonly expiresAt: number | null;
  /** Why no token was had: the identity provider's refusal, the network's error, a credential file gone. */
  readonly error: { readonly cause: string; readonly message: string } | null;
  /** The failure itself, for the classifier; null when it was not a token request that failed. */
  readonly tokenError: TokenError | null;
}

export interface UpstreamCheck {
  readonly upstream: UpstreamConfig;
  /** null for an upstream that logs in with a password, or not at all. */
  readonly token: TokenStep | null;
  readonly smtp: SmtpCheck;
  readonly findings: readonly LoginFinding[];
  /** How the relay itself would file the failure (docs/failures.md), with its advice; null when all worked. */
  readonly verdict: { readonly class: string; readonly rule: string; readonly hint: string | null } | null;
  readonly ok: boolean;
}

export async function checkUpstreamCommand(args: readonly string[], io: CheckUpstreamIo): Promise<number> {
  const parsed = readCommandLine(CHECK_UPSTREAM, args, io.stdout, io.stderr);
  if (typeof parsed === 'number') return parsed;
  let config: Config;
  try {
    config = loadConfig({ file: parsed.values.config ?? null, env: io.env, cwd: io.cwd });
  } catch (err) {
    return reportConfigError(err, io.stderr);
  }
  const names = config.upstreams.map((u) => u.name);
  const name = parsed.positionals[0];
  if (name === undefined) return usage(io, `name the upstream to check (${listOf(names)})`);
  const upstream = config.upstreams.find((u) => u.name === name);
  if (upstream === undefined) {
    const guess = closest(name, names);
    return usage(io, `no upstream named ${shellWord(name)} in the config` + (guess ? `; did you mean ${guess}?` : ` (${listOf(names)})`));
  }
  io.stdout.write(`${header(upstream)}\n\n`);
  const check = await checkUpstream(upstream, config.hostname);
  io.stdout.write(render(check));
  return check.ok ? EXIT.ok : EXIT.failed;
}

function usage(io: CheckUpstreamIo, problem: string): number {
  return explainUsage(io.stderr, CHECK_UPSTREAM.name, problem, CHECK_UPSTREAM.usage);
}

function listOf(names: readonly string[]): string {
  return names.length === 0 ? 'the config has no upstreams' : `the config has: ${names.join(', ')}`;
}

/** Runs the check of one upstream; never throws for what the identity provider, the network or the server do. */
export async function checkUpstream(upstream: UpstreamConfig, hostname: string): Promise<UpstreamCheck> {
  const auth = upstream.auth;
  let login: UpstreamLogin | null = null;
  let token: TokenStep | null = null;
  let accessToken: string | null = null;
  try {
    login = upstreamLogin(upstream);
  } catch (err) {
    if (!(err instanceof CredentialFileError)) throw err;
    token = {
      ok: false,
      endpoint: auth?.type === 'oauth2' ? hostOf(auth.tokenUrl) : '',
      ms: 0,
      shape: null,
      expiresAt: null,
      error: credentialProblem(err),
      tokenError: null,
    };
  }
  try {
    if (login?.kind === 'xoauth2' && auth?.type === 'oauth2') {
      const fetched = await fetchToken(login, auth);
      token = fetched.step;
      accessToken = fetched.token;
    }
    const smtp = await checkSmtp({
      upstream,
      ehloName: hostname,
      login: login?.kind === 'xoauth2' && accessToken === null ? null : login,
      token: accessToken,
      authSkipped: token !== null && !token.ok ? 'not tried: there is no token (see the token step)' : null,
      timeoutMs: upstream.probe.timeout,
    });
    const facts = loginFacts(upstream, token, smtp);
    const findings = loginFindings(facts);
    const failedStep = smtp.steps.some((s) => s.status === 'failed');
    const ok = (token === null || token.ok) && !failedStep;
    return { upstream, token, smtp, findings, verdict: ok ? null : verdictOf(token, smtp), ok };
  } finally {
    if (login?.kind === 'xoauth2') login.tokens.close();
  }
}

/** One token request through the relay's token cache, timed; the token itself stays here. */
async function fetchToken(login: Extract<UpstreamLogin, { kind: 'xoauth2' }>, auth: OAuth2Auth): Promise<{ step: TokenStep; token: string | null }> {
  const endpoint = hostOf(auth.tokenUrl);
  // The transport stops after auth.timeout; this only guards against a library that never settles.
  const limit = Deadline.after(auth.timeout + 5_000, () => stopReason(`no token within ${auth.timeout} ms`, 'ETIMEDOUT'));
  const started = performance.now();
  try {
    const token = await login.tokens.token(limit);
    const ms = Math.round(performance.now() - started);
    return { step: { ok: true, endpoint, ms, shape: tokenShape(token), expiresAt: login.tokens.expiresAt, error: null, tokenError: null }, token };
  } catch (err) {
    const ms = Math.round(performance.now() - started);
    const e = err as Error & { code?: string; originalCode?: string };
    const tokenError = err instanceof TokenError ? err : null;
    const error = { cause: tokenError?.originalCode ?? e.code ?? 'error', message: e.message };
    return { step: { ok: false, endpoint, ms, shape: null, expiresAt: null, error, tokenError }, token: null };
  } finally {
    limit.dispose();
  }
}

function credentialProblem(err: CredentialFileError): TokenStep['error'] {
  return { cause: 'credential-file', message: `auth.${err.key}: ${err.message}` };
}

/** What the findings read (login-findings.ts). */
function loginFacts(upstream: UpstreamConfig, token: TokenStep | null, smtp: SmtpCheck): LoginFacts {
  const auth = upstream.auth;
  const oauth2 = auth?.type === 'oauth2' ? auth : null;
  const claims = token?.shape?.kind === 'jwt' ? token.shape.claims : null;
  return {
    login: auth === null ? null : auth.type === 'oauth2' ? 'oauth2' : 'password',
    provider: oauth2?.provider ?? null,
    host: upstream.host,
    user: auth?.user ?? null,
    tenantId: oauth2?.tenantId ?? null,
    clientId: oauth2?.clientId ?? (oauth2?.serviceAccountKeyFile ? serviceAccountClientId(oauth2.serviceAccountKeyFile) : null),
    tokenError: token?.error ?? null,
    token: token?.shape?.kind ?? null,
    claims,
    offered: smtp.offered,
    authReply: smtp.authReply,
    challenge: smtp.challenge,
    now: Date.now(),
  };
}

/** The numeric client ID domain-wide delegation lists, from the key file; null when it cannot be read. */
function serviceAccountClientId(file: string): string | null {
  try {
    return readServiceAccountKey(file).clientId;
  } catch {
    return null;
  }
}

/** The relay's classifier on the failure (the same class, rule and hint a message would get). */
function verdictOf(token: TokenStep | null, smtp: SmtpCheck): UpstreamCheck['verdict'] {
  const err: NodemailerError | null = token?.tokenError ?? smtp.error;
  if (err === null) return null;
  const failure = classify(failureFacts(err, 'connecting')).failure;
  return failure === null ? null : { class: failure.class, rule: failure.rule, hint: failure.hint ?? null };
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

// --- Output: one line per step, then the findings, then the verdict in one sentence.

const PROVIDERS: Record<OAuth2Auth['provider'], string> = { microsoft: 'Microsoft 365', google: 'Google Workspace', generic: 'OAuth2' };
const GRANTS: Record<OAuth2Auth['grant'], string> = {
  client_credentials: 'client credentials',
  refresh_token: 'refresh token',
  jwt_bearer: 'service account, JWT bearer',
};

/** The upstream and how it logs in, without a credential (the URL is rebuilt: its user info may hold a password). */
function header(u: UpstreamConfig): string {
  const url = `${u.implicitTls ? 'smtps' : 'smtp'}://${u.host.includes(':') ? `[${u.host}]` : u.host}:${u.port}`;
  const tls = u.implicitTls ? 'implicit TLS' : `tls.mode ${u.tls.mode}`;
  const auth = u.auth;
  const how =
    auth === null
      ? 'no login (no auth)'
      : auth.type === 'oauth2'
        ? `logs in with OAuth2 (XOAUTH2) as ${auth.user}: ${PROVIDERS[auth.provider]}, ${GRANTS[auth.grant]}, token from ${hostOf(auth.tokenUrl)}`
        : `logs in with a password (AUTH PLAIN or LOGIN) as ${auth.user}`;
  return terminalText(`mailtrail check-upstream ${u.name}: ${url} (${tls}), ${how}`);
}

const STATUS: Record<SmtpStep['status'], string> = { ok: 'ok', failed: 'FAILED', retried: 'retried', skipped: 'skipped' };
const INDENT = ' '.repeat(22);

function line(status: string, name: string, detail: string): string {
  return `  ${status.padEnd(8)} ${name.padEnd(10)} ${terminalText(detail)}\n`;
}

function render(check: UpstreamCheck): string {
  let out = '';
  if (check.token !== null) out += tokenLines(check.token);
  for (const step of check.smtp.steps) out += line(STATUS[step.status], step.name, step.detail);
  const problems = check.findings.filter((f) => f.severity === 'problem');
  for (const f of check.findings) {
    out += `\n${f.severity === 'problem' ? 'problem' : 'warning'}: ${terminalText(f.says)}\n`;
    out += `  what to do: ${terminalText(f.fix)}\n`;
    out += `  see: ${terminalText(f.docs)}\n`;
  }
  const v = check.verdict;
  if (v !== null && problems.length === 0 && v.hint !== null) out += `\nwhat to do: ${terminalText(v.hint)}\n`;
  if (v !== null) out += `\nmailtrail files this failure as class ${v.class} (rule ${v.rule}; docs/failures.md).\n`;
  out += `\n${conclusion(check)}\n`;
  return out;
}

function tokenLines(t: TokenStep): string {
  if (!t.ok) return line('FAILED', 'token', t.error?.message ?? 'no token');
  const shape = t.shape;
  let out = line('ok', 'token', `${t.endpoint} issued a ${shape?.kind === 'jwt' ? 'JWT' : 'token'} in ${t.ms} ms${expiry(t.expiresAt)}`);
  if (shape?.kind === 'opaque') {
    out += `${INDENT}${terminalText('an opaque token (as Google issues them): only the mail server can tell what it allows')}\n`;
  } else if (shape?.kind === 'jwt') {
    const c = shape.claims;
    const facts = [
      `audience ${c.audiences.join(', ') || '(none)'}`,
      c.tenant !== null ? `tenant ${c.tenant}` : null,
      c.appId !== null || c.appName !== null
        ? `application ${c.appName !== null && c.appId !== null ? `${c.appName} (${c.appId})` : (c.appName ?? c.appId)}`
        : null,
      c.appOnly ? `app-only${c.objectId !== null ? `, service principal object ID ${c.objectId}` : ''}` : c.user !== null ? `user ${c.user}` : null,
      c.roles.length > 0 ? `roles ${c.roles.join(' ')}` : c.appOnly && c.tenant !== null ? 'roles none' : null,
      c.scopes.length > 0 ? `scopes ${c.scopes.join(' ')}` : null,
    ].filter((f): f is string => f !== null);
    for (const f of facts) out += `${INDENT}${terminalText(f)}\n`;
  }
  return out;
}

function expiry(expiresAt: number | null): string {
  if (expiresAt === null) return '';
  const minutes = Math.round((expiresAt - Date.now()) / 60_000);
  return `, valid until ${new Date(expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z')} (${minutes >= 1 ? `${minutes} min` : 'under a minute'})`;
}

function conclusion(check: UpstreamCheck): string {
  const name = terminalText(check.upstream.name);
  if (check.ok) {
    const retried = check.smtp.steps.some((s) => s.status === 'retried');
    return `OK: mailtrail can log in to ${name}${retried ? ' (after replacing a refused token, as the relay does)' : ''}.`;
  }
  const failed = check.token !== null && !check.token.ok ? 'the token request' : (check.smtp.steps.find((s) => s.status === 'failed')?.name ?? 'a step');
  return `NOT OK: ${failed} failed: mailtrail cannot relay through ${name} until this is fixed. Fix what is named above, then run mailtrail check-upstream ${name} again.`;
}
