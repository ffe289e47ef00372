/**
 * Who is asking, and whether a request may change anything (docs/console.md, "Login and safety"):
 *
 * - `Authorization: Bearer <http.token>`: a script, with every permission and no CSRF token (a bearer
 *   header is never sent by a browser on its own, so it cannot be forged across sites);
 * - the `mailtrail_session` cookie: a console session; a POST must carry `X-CSRF-Token` with the
 *   session's token and an `Origin` of this very server;
 * - neither, on an endpoint bound to loopback with no console users and no token: the local user, as
 *   the rest of the endpoint is open there; only with a loopback `Host` (a page of another site that
 *   rebinds its name to 127.0.0.1 is refused) and, for a POST, the process's CSRF token and Origin.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { isLoopbackHostHeader } from '../observe/http-server.js';
import type { Scope } from './search/sql-query.js';
import type { SessionStore } from './sessions.js';

export const SESSION_COOKIE = 'mailtrail_session';
/** The name the local user (no login) is shown as. */
export const LOCAL_USER = 'local';

export interface Caller {
  readonly user: string;
  readonly scope: Scope;
  readonly via: 'session' | 'bearer' | 'local';
  /** The token state-changing requests must send (null for bearer callers, who need none). */
  readonly csrf: string | null;
  /** For logout and the live stream: the session id from the cookie. */
  readonly sessionId: string | null;
}

/** Why a request was refused: status and stable code. */
export class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

export class Access {
  readonly #sessions: SessionStore;
  readonly #token: Buffer | null;
  readonly #open: boolean;
  readonly #secureCookies: boolean;
  /** The local user's CSRF token, for this process's life. */
  readonly #localCsrf = randomBytes(32).toString('base64url');

  /** `open`: no login at all (loopback, no console users, no token). */
  constructor(sessions: SessionStore, token: string | null, open: boolean, secureCookies: boolean) {
    this.#sessions = sessions;
    this.#token = token === null ? null : digest(token);
    this.#open = open;
    this.#secureCookies = secureCookies;
  }

  get open(): boolean {
    return this.#open;
  }

  /** The caller, or null when the request carries no (valid) credentials. Throws a Refusal for a bad bearer token or Host. */
  identify(req: IncomingMessage, touch = true): Caller | null {
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
      // Digests have equal length, so timingSafeEqual compares without leaking the token's length.
      if (m && this.#token !== null && timingSafeEqual(digest(m[1]!), this.#token)) {
        return { user: 'token', scope: null, via: 'bearer', csrf: null, sessionId: null };
      }
      throw new Refusal(401, 'unauthenticated', 'the bearer token is not the HTTP token', { 'www-authenticate': 'Bearer realm="mailtrail"' });
    }
    const id = cookie(req, SESSION_COOKIE);
    if (id !== null) {
      const session = this.#sessions.get(id, touch);
      if (session) return { user: session.user, scope: session.scope, via: 'session', csrf: session.csrf, sessionId: id };
    }
    if (this.#open) {
      if (!isLoopbackHostHeader(req.headers.host))
        throw new Refusal(403, 'host', 'without a login the console answers only to a loopback host name (127.0.0.1, localhost, [::1])');
      return { user: LOCAL_USER, scope: null, via: 'local', csrf: this.#localCsrf, sessionId: null };
    }
    return null;
  }

  /** A state-changing request from a browser must come from this server's own page. */
  checkChange(req: IncomingMessage, caller: Caller): void {
    if (caller.via === 'bearer') return;
    this.checkOrigin(req);
    const sent = req.headers['x-csrf-token'];
    if (typeof sent !== 'string' || caller.csrf === null || !safeEqual(sent, caller.csrf)) {
      throw new Refusal(403, 'csrf', "X-CSRF-Token is missing or is not the session's (GET /api/v1/session gives it)");
    }
  }

  /** The Origin (or, without one, Sec-Fetch-Site) says the request came from a page of this server. */
  checkOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    if (origin === undefined) {
      if (req.headers['sec-fetch-site'] === 'same-origin') return;
      throw new Refusal(403, 'origin', "a request that changes something must come from the console's own page (no Origin header)");
    }
    const expected = `${this.#tls(req) ? 'https' : 'http'}://${req.headers.host ?? ''}`;
    // Behind a TLS proxy the page is https while this listener sees http: either scheme of our Host.
    const alternatives = [expected, expected.replace(/^http:/, 'https:')];
    if (!alternatives.includes(origin.toLowerCase())) throw new Refusal(403, 'origin', 'the request comes from another site (Origin)');
  }

  /** `Set-Cookie` for a new session. */
  sessionCookie(req: IncomingMessage, id: string): string {
    return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict${this.#secure(req) ? '; Secure' : ''}`;
  }

  /** `Set-Cookie` that removes the session cookie. */
  clearedCookie(req: IncomingMessage): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${this.#secure(req) ? '; Secure' : ''}`;
  }

  #secure(req: IncomingMessage): boolean {
    return this.#secureCookies || this.#tls(req);
  }

  #tls(req: IncomingMessage): boolean {
    return (req.socket as Partial<TLSSocket>).encrypted === true;
  }
}

/** The value of cookie `name`, or null. */
function cookie(req: IncomingMessage, name: string): string | null {
  const header = req.headers.cookie;
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || null;
  }
  return null;
}

function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
