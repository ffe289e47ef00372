/**
 * The console's HTTP side (docs/console.md, docs/api.md): its pages, and the JSON API under
 * `/api/v1/`, served by the observability endpoint (observe/http-server.ts hands over every path it
 * `serves`). Every endpoint checks who is asking (access.ts) and shows a console user limited to some
 * SMTP users only the mail of those users.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../logger.js';
import type { ReadinessReport } from '../observe/readiness.js';
import { addressNeedles, type LookupPrivacy } from '../tools/address-forms.js';
import { Access, Refusal, type Caller } from './access.js';
import type { LiveStream } from './live-stream.js';
import type { ConsoleLogin } from './login.js';
import { parseQuery, QueryError, type Query } from './query.js';
import { QUEUE_ACTIONS, type QueueAction, type SpoolControl } from './queue.js';
import type { ScopedErrors } from './scoped-errors.js';
import { IndexError, type SearchIndex } from './search/search-index.js';
import type { Scope } from './search/sql-query.js';
import type { SessionStore } from './sessions.js';
import { upstreamActivity, type LiveStats } from './stats.js';
import type { StaticFiles } from './static-files.js';
import type { TokenStates } from './token-states.js';
import type { RelayBus } from '../observe/relay-events.js';

export interface ConsoleParts {
  readonly access: Access;
  readonly sessions: SessionStore;
  readonly login: ConsoleLogin;
  /** null when the trail goes to standard output (no file to index). */
  readonly index: SearchIndex | null;
  readonly stats: LiveStats;
  readonly stream: LiveStream;
  readonly errors: ScopedErrors;
  readonly readiness: () => ReadinessReport;
  readonly upstreams: readonly string[];
  /** The OAuth2 upstreams' token states (token-states.ts). */
  readonly tokens: TokenStates;
  /** The spool, when one is configured (asked per request: the spool may come up after the endpoint). */
  readonly spool: () => SpoolControl | null;
  readonly privacy: LookupPrivacy | null;
  readonly files: StaticFiles;
  readonly bus: RelayBus;
  readonly log: Logger;
}

interface JsonReply {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 500;
const MAX_BODY = 16 * 1024;
/** Records in one story, at most (the most recent are kept). */
const STORY_LIMIT = 1_000;
/**
 * Searches and stories of one console user waiting on the index at once, at most. The index answers
 * one request at a time, and one that the API gave up on (index_timeout) still runs there: a user
 * firing requests in parallel would otherwise queue minutes of work ahead of everybody else's.
 */
export const MAX_INDEX_REQUESTS_PER_USER = 4;

export class ConsoleApi {
  readonly #p: ConsoleParts;
  /** The last breaker change of each upstream, with its reason. */
  readonly #breakers = new Map<string, { state: string; reason: string; since: string }>();
  readonly #unsubscribe: () => void;
  /** Index requests in flight per console user. */
  readonly #asking = new Map<string, number>();

  constructor(parts: ConsoleParts) {
    this.#p = parts;
    this.#unsubscribe = parts.bus.subscribe('upstream-state', (e) =>
      this.#breakers.set(e.upstream, { state: e.state, reason: e.reason, since: new Date().toISOString() }),
    );
  }

  close(): void {
    this.#unsubscribe();
  }

  /** Whether `path` is the console's (its pages or the v1 API). */
  serves(path: string): boolean {
    return path === '/api/v1' || path.startsWith('/api/v1/') || this.#p.files.serves(path);
  }

  /** Answers a request for one of the console's paths; never throws. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname;
    try {
      if (!path.startsWith('/api/v1')) return await this.#page(req, res, path);
      const reply = await this.#api(req, res, url);
      if (reply) sendJson(req, res, reply);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof Refusal) return sendJson(req, res, { status: err.status, body: problem(err.code, err.message), headers: err.headers });
      if (err instanceof QueryError) return sendJson(req, res, { status: 400, body: problem(err.code, err.message) });
      if (err instanceof IndexError) return sendJson(req, res, { status: 503, body: problem(err.code, err.message) });
      this.#p.log.error({ err, path }, 'console request failed');
      sendJson(req, res, { status: 500, body: problem('internal', 'internal error') });
    }
  }

  async #page(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new Refusal(405, 'method_not_allowed', 'GET only', { allow: 'GET, HEAD' });
    // The pages themselves hold no data: the app asks the API, which checks the login.
    const reply = await this.#p.files.reply(path);
    res.writeHead(reply.status, { ...reply.headers, 'content-length': reply.body.length });
    res.end(req.method === 'HEAD' ? undefined : reply.body);
  }

  /** The JSON answer, or null when the response was written here (the live stream). */
  async #api(req: IncomingMessage, res: ServerResponse, url: URL): Promise<JsonReply | null> {
    const path = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    const get = method === 'GET' || method === 'HEAD';
    if (path === '/api/v1/login') {
      expectMethod(method, 'POST');
      return this.#login(req);
    }
    const caller = this.#p.access.identify(req);
    if (path === '/api/v1/session') {
      expectMethod(method, 'GET');
      if (caller === null) return unauthenticated(this.#p.login.usernames);
      return { status: 200, body: { user: caller.user, scope: caller.scope, csrf: caller.csrf, via: caller.via } };
    }
    if (caller === null) return unauthenticated(this.#p.login.usernames);
    if (!get) {
      expectMethod(method, 'POST');
      this.#p.access.checkChange(req, caller);
    }
    if (path === '/api/v1/logout') {
      expectMethod(method, 'POST');
      if (caller.sessionId !== null) this.#p.sessions.end(caller.sessionId);
      return { status: 200, body: { ok: true }, headers: { 'set-cookie': this.#p.access.clearedCookie(req) } };
    }
    if (path === '/api/v1/transactions') return this.#transactions(method, url, caller);
    const message = /^\/api\/v1\/messages\/(.{1,1000})$/.exec(path);
    if (message) {
      expectMethod(method, 'GET');
      return this.#story(decoded(message[1]!), caller);
    }
    if (path === '/api/v1/stream') {
      if (method !== 'GET') throw new Refusal(405, 'method_not_allowed', 'GET only', { allow: 'GET' });
      return this.#streamOpen(req, res, caller);
    }
    if (path === '/api/v1/upstreams') {
      expectMethod(method, 'GET');
      return this.#upstreams(caller);
    }
    if (path === '/api/v1/errors') {
      expectMethod(method, 'GET');
      return { status: 200, body: { groups: this.#p.errors.list(caller.scope) } };
    }
    if (path === '/api/v1/stats') {
      expectMethod(method, 'GET');
      const range = url.searchParams.get('range') ?? '1h';
      if (range !== '1h' && range !== '24h') throw new Refusal(400, 'bad_request', 'range is 1h or 24h');
      return { status: 200, body: this.#p.stats.view(range, caller.scope) };
    }
    if (path === '/api/v1/queue' || path.startsWith('/api/v1/queue/')) return this.#queue(req, method, path, url, caller);
    throw new Refusal(404, 'not_found', 'no such endpoint (docs/api.md lists them)');
  }

  async #login(req: IncomingMessage): Promise<JsonReply> {
    const { access, login, sessions } = this.#p;
    access.checkOrigin(req);
    if (access.open) {
      const caller = access.identify(req)!;
      return { status: 200, body: { user: caller.user, scope: null, csrf: caller.csrf } };
    }
    const body = await readJson(req);
    const password = typeof body.password === 'string' ? body.password : null;
    const username = typeof body.username === 'string' ? body.username : '';
    if (password === null || password.length > 1024 || username.length > 200) throw new Refusal(400, 'bad_request', 'give { "username"?, "password" }');
    const address = req.socket.remoteAddress ?? 'unknown';
    const result = await login.attempt(address, username, password);
    if (result.kind === 'locked') {
      this.#p.log.warn({ address }, 'console login refused: locked after repeated failures');
      throw new Refusal(429, 'locked', 'too many failed logins from this address or for this user: try again later', { 'retry-after': '300' });
    }
    if (result.kind === 'failed') {
      this.#p.log.info({ address }, 'console login failed');
      throw new Refusal(401, 'bad_credentials', login.usernames ? 'wrong username or password' : 'wrong token');
    }
    const { id, session } = sessions.create(result.user, result.scope);
    this.#p.log.info({ user: result.user, address }, 'console login');
    return {
      status: 200,
      body: { user: session.user, scope: session.scope, csrf: session.csrf },
      headers: { 'set-cookie': access.sessionCookie(req, id) },
    };
  }

  async #transactions(method: string, url: URL, caller: Caller): Promise<JsonReply> {
    expectMethod(method, 'GET');
    const query = this.#withPrivacy(parseQuery(url.searchParams.get('q') ?? '', Date.now()));
    const page = pageOf(url);
    const [result, status] = await this.#ask(caller, (index) => Promise.all([index.search(query, caller.scope, page), index.status()]));
    // The count spans every user's mail: a scoped user watching it grow would learn the others' volume.
    return { status: 200, body: { ...result, index: caller.scope === null ? status : { ...status, records: null } } };
  }

  async #story(key: string, caller: Caller): Promise<JsonReply> {
    const story = await this.#ask(caller, (index) => index.story(key.trim(), caller.scope, STORY_LIMIT));
    if (story === null) throw new Refusal(404, 'not_found', 'no transaction you may see has this id');
    return { status: 200, body: story };
  }

  #streamOpen(req: IncomingMessage, res: ServerResponse, caller: Caller): JsonReply | null {
    // The stream does not keep the session alive: a console left open still logs out when idle.
    const alive = caller.sessionId === null ? () => true : () => this.#p.sessions.get(caller.sessionId!, false) !== null;
    if (!this.#p.stream.open(res, caller.user, caller.scope, alive))
      throw new Refusal(503, 'too_many_streams', 'too many live streams are open (in all, or of this user)', { 'retry-after': '10' });
    req.socket.setTimeout(0);
    return null;
  }

  #upstreams(caller: Caller): JsonReply {
    const report = this.#p.readiness();
    const activity = upstreamActivity(this.#p.stats.buckets, caller.scope, Date.now());
    const parked = caller.scope === null ? (this.#p.spool()?.parked() ?? null) : null;
    const items = this.#p.upstreams.map((name) => {
      const r = report.upstreams.find((u) => u.name === name);
      const breaker = this.#breakers.get(name);
      const a = activity.get(name);
      return {
        name,
        probe: r?.probe ?? null,
        usable: r?.usable ?? null,
        breaker: { state: breaker?.state ?? r?.breaker ?? 'closed', reason: breaker?.reason ?? null, since: breaker?.since ?? null },
        sendRate: { perMinute: a?.perMinute ?? 0, window: '5m' },
        latency: { p50: a?.p50 ?? null, p95: a?.p95 ?? null, window: '15m' },
        token: this.#p.tokens.view(name),
        parked: parked === null ? null : (parked.get(name) ?? 0),
      };
    });
    return { status: 200, body: { upstreams: items } };
  }

  async #queue(req: IncomingMessage, method: string, path: string, url: URL, caller: Caller): Promise<JsonReply> {
    const spool = this.#p.spool();
    if (spool === null) throw new Refusal(404, 'no_spool', 'no spool is configured: mailtrail holds no messages');
    const users = caller.scope?.users ?? null;
    if (path === '/api/v1/queue') {
      expectMethod(method, 'GET');
      const state = url.searchParams.get('state');
      const q = url.searchParams.get('q');
      return { status: 200, body: await spool.list({ state: state || null, q: q || null, users }, pageOf(url)) };
    }
    if (path === '/api/v1/queue/actions') {
      expectMethod(method, 'POST');
      const body = await readJson(req);
      const action = body.action;
      const ids = body.ids;
      if (typeof action !== 'string' || !(QUEUE_ACTIONS as readonly string[]).includes(action)) {
        throw new Refusal(400, 'bad_request', `action is one of ${QUEUE_ACTIONS.join(', ')}`);
      }
      if (!Array.isArray(ids) || ids.length === 0 || ids.length > 1000 || !ids.every((id) => typeof id === 'string' && id.length <= 200)) {
        throw new Refusal(400, 'bad_request', 'ids is a list of 1 to 1000 queue ids');
      }
      const wanted = [...new Set(ids as string[])];
      // A scoped user acts only on the entries of their users; the others are "not found" to them.
      const allowed: string[] = [];
      const refused: { id: string; ok: false; code: string }[] = [];
      for (const id of wanted) {
        const entry = users === null ? true : await spool.show(id);
        if (entry === true || (entry !== null && entry.user !== null && users!.includes(entry.user))) allowed.push(id);
        else refused.push({ id, ok: false, code: 'not_found' });
      }
      const by = {
        channel: caller.via === 'bearer' ? ('api' as const) : ('console' as const),
        user: caller.user,
        address: req.socket.remoteAddress ?? 'unknown',
      };
      const done = allowed.length === 0 ? [] : await spool.act(action as QueueAction, allowed, by);
      return { status: 200, body: { action, results: [...done, ...refused] } };
    }
    const one = /^\/api\/v1\/queue\/([^/]{1,200})$/.exec(path);
    if (one) {
      expectMethod(method, 'GET');
      const entry = await spool.show(decoded(one[1]!));
      if (entry === null || (users !== null && (entry.user === null || !users.includes(entry.user))))
        throw new Refusal(404, 'not_found', 'no such queue entry');
      return { status: 200, body: entry };
    }
    throw new Refusal(404, 'not_found', 'no such endpoint (docs/api.md lists them)');
  }

  /** `question` put to the index, counted as one of the caller's requests in flight. */
  async #ask<T>(caller: Caller, question: (index: SearchIndex) => Promise<T>): Promise<T> {
    const index = this.#p.index;
    if (index === null) throw new Refusal(503, 'no_index', 'the trail goes to standard output (audit.file "-"): there is nothing to search');
    const asking = this.#asking.get(caller.user) ?? 0;
    if (asking >= MAX_INDEX_REQUESTS_PER_USER) {
      throw new Refusal(503, 'index_busy', `${MAX_INDEX_REQUESTS_PER_USER} searches of this user are already waiting for the index`, { 'retry-after': '1' });
    }
    this.#asking.set(caller.user, asking + 1);
    try {
      return await question(index);
    } finally {
      const left = (this.#asking.get(caller.user) ?? 1) - 1;
      if (left === 0) this.#asking.delete(caller.user);
      else this.#asking.set(caller.user, left);
    }
  }

  /** On a pseudonymized trail, a full address in from:/to: is looked for masked too (as lookup does). */
  #withPrivacy(query: Query): Query {
    const privacy = this.#p.privacy;
    if (!privacy || privacy.mode === 'clear') return query;
    return {
      ...query,
      terms: query.terms.map((t) =>
        t.key === 'from' || t.key === 'to' ? { ...t, values: [...new Set(t.values.flatMap((v) => addressNeedles(v, privacy)))] } : t,
      ),
    };
  }
}

export type { Scope };

function pageOf(url: URL): { limit: number; cursor: string | null } {
  const limitText = url.searchParams.get('limit');
  const limit = limitText === null ? DEFAULT_LIMIT : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new Refusal(400, 'bad_request', `limit is 1 to ${MAX_LIMIT}`);
  const cursor = url.searchParams.get('cursor');
  if (cursor !== null && cursor.length > 200) throw new Refusal(400, 'bad_request', 'not a cursor this server gave');
  return { limit, cursor: cursor || null };
}

/** A path segment, percent-decoded; a malformed escape is the caller's mistake, not ours. */
function decoded(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new Refusal(400, 'bad_request', 'the path is not valid percent-encoding');
  }
}

function expectMethod(method: string, wanted: 'GET' | 'POST'): void {
  const ok = wanted === 'GET' ? method === 'GET' || method === 'HEAD' : method === 'POST';
  if (!ok) throw new Refusal(405, 'method_not_allowed', `${wanted} only`, { allow: wanted === 'GET' ? 'GET, HEAD' : 'POST' });
}

function unauthenticated(usernames: boolean): JsonReply {
  return { status: 401, body: { error: { code: 'unauthenticated', message: 'log in first (POST /api/v1/login)', login: usernames ? 'username' : 'token' } } };
}

function problem(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type)) throw new Refusal(415, 'unsupported_media_type', 'send JSON (Content-Type: application/json)');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Refusal(413, 'payload_too_large', `the body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new Refusal(400, 'bad_request', 'the body is not JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Refusal(400, 'bad_request', 'the body is not a JSON object');
  return value as Record<string, unknown>;
}

function sendJson(req: IncomingMessage, res: ServerResponse, reply: JsonReply): void {
  const body = Buffer.from(`${JSON.stringify(reply.body)}\n`);
  res.writeHead(reply.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': body.length,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...reply.headers,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
