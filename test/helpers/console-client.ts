/**
 * A client of the console's JSON API over real HTTP, as the browser uses it: logs in, keeps the
 * session cookie and the CSRF token, sends the Origin a page of the server would send.
 */
import { request } from 'node:http';
import { hashPassword } from '../../src/auth/password.js';
import { startRelay, type RelaySpec, type RunningRelay, type UpstreamSpec } from './relay-harness.js';

/** The HTTP token of the console's test relays (scripts' bearer token). */
export const CONSOLE_TOKEN = 'console-test-token-0123456789';

/**
 * A relay with the console on, as the console's tests use it: SMTP users `billing` and `news`
 * (passwords `<name>-pass-1`), console users `admin` (a scrypt hash of `admin-pass-1`, every user's
 * mail) and `ana` (`ana-pass-1`, limited to the mail of `billing`).
 */
export async function startConsoleRelay(upstreams: UpstreamSpec[], over: Partial<RelaySpec> = {}): Promise<RunningRelay> {
  return startRelay({
    upstreams,
    http: { port: 0, token: CONSOLE_TOKEN },
    clients: {
      users: ['billing', 'news'].map((username) => ({ username, password: `${username}-pass-1`, passwordHash: null, allowedSenders: [], mode: null })),
      allowInsecureAuth: true,
    },
    console: {
      enabled: true,
      users: [
        { username: 'admin', password: null, passwordHash: await hashPassword('admin-pass-1'), scope: null },
        { username: 'ana', password: 'ana-pass-1', passwordHash: null, scope: { users: ['billing'] } },
      ],
    },
    ...over,
  });
}

export interface ApiAnswer<T = unknown> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: T;
}

export class ConsoleClient {
  readonly base: string;
  cookie: string | null = null;
  csrf: string | null = null;

  constructor(base: string) {
    this.base = base;
  }

  async login(password: string, username?: string): Promise<ApiAnswer<{ user: string; csrf: string; error?: { code: string } }>> {
    const answer = await this.post<{ user: string; csrf: string; error?: { code: string } }>(
      '/api/v1/login',
      username === undefined ? { password } : { username, password },
    );
    const set = answer.headers.get('set-cookie');
    if (set) this.cookie = set.split(';', 1)[0]!;
    if (answer.status === 200) this.csrf = answer.body.csrf;
    return answer;
  }

  async get<T = Record<string, unknown>>(path: string, headers: Record<string, string> = {}): Promise<ApiAnswer<T>> {
    const res = await fetch(`${this.base}${path}`, { headers: { ...this.#auth(), ...headers } });
    return { status: res.status, headers: res.headers, body: (await res.json()) as T };
  }

  async post<T = Record<string, unknown>>(path: string, body: unknown, headers: Record<string, string> = {}): Promise<ApiAnswer<T>> {
    const res = await fetch(`${this.base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: this.base, ...this.#auth(), ...(this.csrf ? { 'x-csrf-token': this.csrf } : {}), ...headers },
      body: JSON.stringify(body),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as T };
  }

  /** Opens the live stream and collects its events until `close()`. */
  async stream(): Promise<{ events: { event: string; data: unknown }[]; next(timeoutMs: number): Promise<{ event: string; data: unknown }>; close(): void }> {
    const controller = new AbortController();
    const res = await fetch(`${this.base}/api/v1/stream`, { headers: this.#auth(), signal: controller.signal });
    if (res.status !== 200 || !res.body) throw new Error(`stream answered ${res.status}`);
    const events: { event: string; data: unknown }[] = [];
    const waiters: (() => void)[] = [];
    let consumed = 0;
    void (async () => {
      let text = '';
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          text += Buffer.from(chunk).toString('utf8');
          let end: number;
          while ((end = text.indexOf('\n\n')) !== -1) {
            const block = text.slice(0, end);
            text = text.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (event && data) {
              events.push({ event, data: JSON.parse(data) as unknown });
              for (const w of waiters.splice(0)) w();
            }
          }
        }
      } catch {
        // closed
      }
    })();
    return {
      events,
      next: async (timeoutMs) => {
        const until = Date.now() + timeoutMs;
        while (events.length <= consumed) {
          const left = until - Date.now();
          if (left <= 0) throw new Error('no event in time');
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, left);
            waiters.push(() => {
              clearTimeout(t);
              resolve();
            });
          });
        }
        return events[consumed++]!;
      },
      close: () => controller.abort(),
    };
  }

  #auth(): Record<string, string> {
    return this.cookie ? { cookie: this.cookie } : {};
  }
}

/** A GET with a Host header of our choosing (fetch does not let one set it). */
export function getWithHost(base: string, path: string, host: string): Promise<{ status: number; body: string }> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname + url.search, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Polls `check` until it returns a value (not undefined), or throws after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 20_000, what = 'the condition'): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
