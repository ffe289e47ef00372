import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLoopbackHost } from '../config/fields.js';
import type { HttpConfig } from '../config/types.js';
import type { ErrorGroup } from './error-groups.js';
import type { Logger } from '../logger.js';
import type { ReadinessReport } from './readiness.js';
import type { RecentRecord, SpoolFollowUp } from './recent-transactions.js';

/** What the endpoint serves; each part is built in the composition root. */
export interface HttpSources {
  readonly metrics: { readonly contentType: string; render(): Promise<string> } | null;
  /** Each may answer later: a supervisor asks its workers (workers/supervisor.ts). */
  readonly readiness: () => ReadinessReport | Promise<ReadinessReport>;
  readonly transaction: (id: string) => RecentRecord | undefined | Promise<RecentRecord | undefined>;
  readonly byMessageId: (messageId: string) => RecentRecord[] | Promise<RecentRecord[]>;
  /** A spooled message's later records (deliveries, spool events), oldest first. */
  readonly spoolFollowUp: (spoolId: string) => SpoolFollowUp[] | Promise<SpoolFollowUp[]>;
  readonly errors: () => ErrorGroup[] | Promise<ErrorGroup[]>;
  /** The web console (its pages and `/api/v1/`), when on: it answers the paths it serves, itself. */
  readonly console: ConsoleHandler | null;
}

/** What the endpoint needs of the console (src/console/console-api.ts). */
export interface ConsoleHandler {
  serves(path: string): boolean;
  handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void>;
}

interface Reply {
  readonly status: number;
  readonly body: string;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Connections the endpoint holds at once; beyond, a new one is closed at once. Each costs a file
 * descriptor, which the SMTP listeners, the trail and the spool share: connections that only trickle
 * their headers must not be able to use them up. A scraper, scripts and a few dozen console tabs
 * (six connections and a live stream each) stay well below.
 */
export const MAX_HTTP_CONNECTIONS = 256;

/** The endpoint's address, or why a best-effort endpoint did not start. */
export type HttpStart =
  { readonly address: { readonly host: string; readonly port: number }; readonly error: null } | { readonly address: null; readonly error: string };

/**
 * The HTTP side of observability (node:http, no framework): `/metrics`, `/healthz`, `/readyz`,
 * `/api/transactions/:id`, `/api/transactions?messageId=`, `/api/errors`. Read-only: GET and HEAD.
 * With the console on, its paths (`/`, `/messages/...`, `/assets/...`, `/api/v1/...`) are handed to
 * it whole: it has its own login (docs/console.md).
 * With a token, every path except `/healthz` needs `Authorization: Bearer <token>` (RFC 6750); the
 * API shows addresses, so a non-loopback bind without a token is warned about at start-up. Without a
 * token on loopback, it answers (but for `/healthz`) only requests whose `Host` is a loopback name:
 * a web page whose name is made to resolve to 127.0.0.1 (DNS rebinding) is its own origin to the
 * browser, and could otherwise read the API.
 */
export class ObservabilityServer {
  #config: HttpConfig;
  #sources: HttpSources;
  #log: Logger;
  #server: Server | null = null;
  #tokenDigest: Buffer | null;
  /** No token, bound to loopback: only loopback Host names are answered. */
  #loopbackOnly: boolean;

  constructor(config: HttpConfig, sources: HttpSources, log: Logger) {
    this.#config = config;
    this.#sources = sources;
    this.#log = log;
    this.#tokenDigest = config.token === null ? null : digest(config.token);
    this.#loopbackOnly = config.token === null && isLoopbackHost(config.host);
  }

  /**
   * Binds; resolves with the address, or with the bind error's code when a best-effort bind failed
   * (App.start() turns that into a start-up warning).
   */
  async start(): Promise<HttpStart> {
    // The two timeouts are checked every connectionsCheckingInterval (30 s by default, which let a
    // request trickling its headers live on for half a minute more): every second instead.
    const server = createServer({ connectionsCheckingInterval: 1_000 }, (req, res) => this.#handle(req, res));
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    server.keepAliveTimeout = 5_000;
    server.maxConnections = MAX_HTTP_CONNECTIONS;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.#config.port, this.#config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      if (!this.#config.bestEffort) throw err;
      return { address: null, error: (err as NodeJS.ErrnoException).code ?? String(err) };
    }
    server.on('error', (err) => this.#log.error({ err }, 'HTTP endpoint error'));
    this.#server = server;
    const address = server.address() as AddressInfo;
    return { address: { host: this.#config.host, port: address.port }, error: null };
  }

  /** Stops at once: idle keep-alive connections (a Prometheus scraper) would otherwise hold close(). */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const console = this.#sources.console;
    if (console) {
      const url = new URL(req.url ?? '/', 'http://mailtrail.invalid');
      if (console.serves(url.pathname)) {
        void console.handle(req, res, url);
        return;
      }
    }
    this.#route(req).then(
      (reply) => send(req, res, reply),
      (err: unknown) => {
        this.#log.error({ err, path: pathOf(req) }, 'HTTP endpoint handler failed');
        send(req, res, json(500, { error: 'internal error' }));
      },
    );
  }

  async #route(req: IncomingMessage): Promise<Reply> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return { ...json(405, { error: 'method not allowed' }), headers: { allow: 'GET, HEAD' } };
    const url = new URL(req.url ?? '/', 'http://mailtrail.invalid');
    const path = url.pathname;
    if (path === '/healthz') return json(200, { status: 'ok' });
    if (this.#loopbackOnly && !isLoopbackHostHeader(req.headers.host)) {
      return json(403, { error: 'without http.token the endpoint answers only to a loopback host name (127.0.0.1, localhost, [::1])' });
    }
    if (!this.#authorised(req)) {
      return { ...json(401, { error: 'a bearer token is required' }), headers: { 'www-authenticate': 'Bearer realm="mailtrail"' } };
    }
    if (path === '/metrics') return this.#metrics();
    if (path === '/readyz') {
      const report = await this.#sources.readiness();
      return json(report.ready ? 200 : 503, report);
    }
    if (path === '/api/errors') return json(200, { groups: await this.#sources.errors() });
    if (path === '/api/transactions') {
      const messageId = url.searchParams.get('messageId');
      if (!messageId) return json(400, { error: 'give ?messageId= or /api/transactions/<id>' });
      return json(200, { transactions: await this.#sources.byMessageId(messageId) });
    }
    const match = /^\/api\/transactions\/([0-9A-Za-z]{1,64})$/.exec(path);
    if (match) {
      const id = match[1]!.toUpperCase();
      const record = await this.#sources.transaction(id);
      if (!record) return json(404, { error: 'not found among recent transactions' });
      // A spooled message: what befell it since its acceptance comes with it (docs/observability.md).
      return json(200, record.type === 'relay' && record.outcome === 'queued' ? { ...record, spoolFollowUp: await this.#sources.spoolFollowUp(id) } : record);
    }
    return json(404, { error: 'not found' });
  }

  async #metrics(): Promise<Reply> {
    const metrics = this.#sources.metrics;
    if (!metrics) return json(404, { error: 'metrics are off' });
    return { status: 200, body: await metrics.render(), contentType: metrics.contentType };
  }

  #authorised(req: IncomingMessage): boolean {
    if (this.#tokenDigest === null) return true;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    // Digests have equal length, so timingSafeEqual compares without leaking the token's length.
    return match !== null && timingSafeEqual(digest(match[1]!), this.#tokenDigest);
  }
}

/** A `Host` header naming this machine only: `127.0.0.1:8025`, `localhost`, `[::1]:8025`. */
export function isLoopbackHostHeader(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(name);
}

function json(status: number, value: unknown): Reply {
  return { status, body: `${JSON.stringify(value, null, 2)}\n`, contentType: JSON_TYPE };
}

function send(req: IncomingMessage, res: ServerResponse, reply: Reply): void {
  const body = Buffer.from(reply.body);
  res.writeHead(reply.status, {
    'content-type': reply.contentType ?? JSON_TYPE,
    'content-length': body.length,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...reply.headers,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function pathOf(req: IncomingMessage): string {
  return (req.url ?? '').split('?', 1)[0] ?? '';
}
