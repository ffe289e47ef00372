/**
 * The console's JSON API (docs/api.md) as the pages use it: the session cookie goes by itself
 * (same origin), every POST carries the session's CSRF token, and an answer that says the session
 * ended sends the page back to the login form.
 */
import type { TransactionSummary } from '../../src/console/summary.js';
import type { SmtpReply } from '../../src/smtp/smtp-reply.js';

/** The API's own types (type-only imports: nothing of the server is bundled). */
export type Reply = SmtpReply;
export type Summary = TransactionSummary;

export interface Page<T> {
  readonly items: T[];
  readonly next: string | null;
  readonly index?: { readonly state: string; readonly records: number };
}

export interface Session {
  readonly user: string;
  readonly scope: { readonly users: readonly string[] } | null;
  readonly csrf: string | null;
  readonly via?: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** On 401: what the login form asks for (`username` or `token`). */
  readonly login: string | null;

  constructor(status: number, code: string, message: string, login: string | null) {
    super(message);
    this.status = status;
    this.code = code;
    this.login = login;
  }
}

interface ErrorBody {
  readonly error?: { readonly code?: string; readonly message?: string; readonly login?: string };
}

/** Told when a call finds the session gone (the page then shows the login form). */
type Ended = (login: string | null) => void;

export class Api {
  csrf: string | null = null;
  #ended: Ended = () => undefined;

  onEnded(listener: Ended): void {
    this.#ended = listener;
  }

  get<T>(path: string, params: Record<string, string | number | null | undefined> = {}): Promise<T> {
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') search.set(k, String(v));
    const qs = search.toString();
    return this.#call<T>(qs ? `${path}?${qs}` : path, { method: 'GET' });
  }

  post<T>(path: string, body: unknown): Promise<T> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.csrf !== null) headers['x-csrf-token'] = this.csrf;
    return this.#call<T>(path, { method: 'POST', headers, body: JSON.stringify(body) });
  }

  /** The caller, or null when a login is needed (with what the form asks for). */
  async session(): Promise<{ session: Session } | { login: string }> {
    try {
      const session = await this.#call<Session>('/api/v1/session', { method: 'GET' }, false);
      this.csrf = session.csrf;
      return { session };
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return { login: e.login ?? 'token' };
      throw e;
    }
  }

  async login(password: string, username: string | null): Promise<Session> {
    const session = await this.#call<Session>(
      '/api/v1/login',
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(username === null ? { password } : { username, password }),
      },
      false,
    );
    this.csrf = session.csrf;
    // The login's answer has no `via`: it is a session by definition.
    return { ...session, via: 'session' };
  }

  async logout(): Promise<void> {
    await this.post('/api/v1/logout', {});
    this.csrf = null;
  }

  async #call<T>(path: string, init: RequestInit, notifyEnded = true): Promise<T> {
    const res = await fetch(path, {
      ...init,
      credentials: 'same-origin',
      headers: { accept: 'application/json', ...(init.headers as Record<string, string>) },
    });
    const body = (await res.json().catch(() => ({}))) as unknown;
    if (!res.ok) {
      const error = (body as ErrorBody).error ?? {};
      const failure = new ApiError(res.status, error.code ?? 'http_' + String(res.status), error.message ?? res.statusText, error.login ?? null);
      if (notifyEnded && res.status === 401) this.#ended(failure.login);
      throw failure;
    }
    return body as T;
  }
}

/** A failure as one line for the page. */
export function describe(e: unknown): string {
  if (e instanceof ApiError) return `${e.message} (${e.code})`;
  return e instanceof Error ? e.message : String(e);
}
