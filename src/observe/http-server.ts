import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpConfig } from '../config/types.js';
import type { ErrorGroup } from './error-groups.js';
import type { Logger } from '../logger.js';
import type { ReadinessReport } from './readiness.js';
import type { RecentRecord } from './recent-transactions.js';

/** What the endpoint serves; each part is built in the composition root. */
export interface HttpSources {
  readonly metrics: { readonly contentType: string; render(): Promise<string> } | null;
  /** Each may answer later: a supervisor asks its workers (workers/supervisor.ts). */
  readonly readiness: () => ReadinessReport | Promise<ReadinessReport>;
  readonly transaction: (id: string) => RecentRecord | undefined | Promise<RecentRecord | undefined>;
  readonly byMessageId: (messageId: string) => RecentRecord[] | Promise<RecentRecord[]>;
  readonly errors: () => ErrorGroup[] | Promise<ErrorGroup[]>;
}

interface Reply {
  readonly status: number;
  readonly body: string;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** The endpoint's address, or why a best-effort endpoint did not start. */
export type HttpStart =
  { readonly address: { readonly host: string; readonly port: number }; readonly error: null } | { readonly address: null; readonly error: string };

/**
 * The HTTP side of observability (node:http, no framework): `/metrics`, `/healthz`, `/readyz`,
 * `/api/transactions/:id`, `/api/transactions?messageId=`, `/api/errors`. Read-only: GET and HEAD.
 * With a token, every path except `/healthz` needs `Authorization: Bearer <token>` (RFC 6750); the
 * API shows addresses, so a non-loopback bind without a token is warned about at start-up.
 */
export class ObservabilityServer {
  #config: HttpConfig;
  #sources: HttpSources;
  #log: Logger;
  #server: Server | null = null;
  #tokenDigest: Buffer | null;

  constructor(config: HttpConfig, sources: HttpSources, log: Logger) {
    this.#config = config;
    this.#sources = sources;
    this.#log = log;
    this.#tokenDigest = config.token === null ? null : digest(config.token);
  }

  /**
   * Binds; resolves with the address, or with the bind error's code when a best-effort bind failed
   * (App.start() turns that into a start-up warning).
   */
  async start(): Promise<HttpStart> {
    const server = createServer((req, res) => this.#handle(req, res));
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    server.keepAliveTimeout = 5_000;
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
      const record = await this.#sources.transaction(match[1]!.toUpperCase());
      return record ? json(200, record) : json(404, { error: 'not found among recent transactions' });
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
