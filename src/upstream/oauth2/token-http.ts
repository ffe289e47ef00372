/**
 * The HTTP transport under the OAuth2 libraries: a `fetch` over node:http(s) that each library is given
 * in place of its own (msal-node's `system.networkClient`, oauth4webapi's `customFetch`, gaxios's
 * `fetchImplementation`). The protocol stays the libraries'; this only moves bytes. It exists because
 * the libraries' own transports cannot do three things mailtrail needs:
 *
 * - trust a private CA for the token endpoint (`auth.ca`) without a process-wide NODE_EXTRA_CA_CERTS;
 * - bound every request (`auth.timeout`): msal-node sends POSTs without a timeout;
 * - keep what went wrong: msal-node replaces any transport error by a bare "network_error", and gaxios
 *   wraps it; here the last exchange (the system error, or the HTTP status and body of a refusal) is
 *   kept, so the failure is explained from the wire facts (token-error.ts), the same for every library.
 *
 * One instance per token source, whose requests never overlap (token-cache.ts fetches single-flight).
 */
import http from 'node:http';
import https from 'node:https';

/** What the last request saw: the system error, or the status and body the server answered. */
export interface TokenExchange {
  readonly url: string;
  readonly error: NodeJS.ErrnoException | null;
  readonly status: number | null;
  readonly body: string | null;
}

export interface TokenHttpOptions {
  /** PEM CA(s) to trust instead of the system store; null = the system store. */
  readonly ca: Buffer | null;
  readonly timeoutMs: number;
  /** Sends a request for `from` to `to` instead (a library whose endpoint is a constant). */
  readonly redirect?: { readonly from: string; readonly to: string } | null;
}

/** A token response is a small JSON object; anything past this is not one. */
const MAX_BODY_BYTES = 256 * 1024;

export class TokenHttp {
  #options: TokenHttpOptions;
  #last: TokenExchange | null = null;

  constructor(options: TokenHttpOptions) {
    this.#options = options;
  }

  /** The last exchange since `forget()`, or null. */
  get last(): TokenExchange | null {
    return this.#last;
  }

  forget(): void {
    this.#last = null;
  }

  /** A `fetch` as the WHATWG API defines it, enough of it for the token requests the libraries make. */
  readonly fetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    let url: string;
    let request: Request | null = null;
    if (typeof input === 'string') url = input;
    else if (input instanceof URL) url = input.href;
    else {
      request = input;
      url = input.url;
    }
    const redirect = this.#options.redirect;
    if (redirect && url.split('?')[0] === redirect.from) url = redirect.to + url.slice(redirect.from.length);
    const method = (init.method ?? request?.method ?? 'GET').toUpperCase();
    const headers = new Headers(init.headers ?? request?.headers);
    const body = await bodyBytes(init.body ?? (request ? await request.arrayBuffer() : null));
    // As fetch does for a form (the WHATWG "extract a body" steps).
    if (init.body instanceof URLSearchParams && !headers.has('content-type')) headers.set('content-type', 'application/x-www-form-urlencoded;charset=UTF-8');
    if (body !== null && !headers.has('content-length')) headers.set('content-length', String(body.length));
    try {
      const { status, responseHeaders, text } = await this.#send(url, method, headers, body, init.signal ?? null);
      this.#last = { url, error: null, status, body: text };
      return new Response(status === 204 || status === 304 ? null : text, { status, headers: responseHeaders });
    } catch (err) {
      this.#last = { url, error: err as NodeJS.ErrnoException, status: null, body: null };
      throw err;
    }
  };

  #send(
    url: string,
    method: string,
    headers: Headers,
    body: Buffer | null,
    signal: AbortSignal | null,
  ): Promise<{ status: number; responseHeaders: Headers; text: string }> {
    const target = new URL(url);
    const secure = target.protocol === 'https:';
    const options: https.RequestOptions = {
      method,
      headers: Object.fromEntries(headers.entries()),
      ...(secure ? { ca: this.#options.ca ?? undefined, minVersion: 'TLSv1.2' as const } : {}),
      // No connection reuse: a token request every few minutes at most, and no socket left to keep a process alive.
      agent: false,
    };
    return new Promise((resolve, reject) => {
      const req = (secure ? https : http).request(target, options, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) req.destroy(errnoError('token response too large', 'EMSGSIZE'));
          else chunks.push(chunk);
        });
        res.on('end', () => {
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (typeof value === 'string') responseHeaders.set(name, value);
            else if (Array.isArray(value)) for (const v of value) responseHeaders.append(name, v);
          }
          resolve({ status: res.statusCode ?? 0, responseHeaders, text: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
      });
      const timer = setTimeout(
        () => req.destroy(errnoError(`token request timed out after ${this.#options.timeoutMs} ms`, 'ETIMEDOUT')),
        this.#options.timeoutMs,
      );
      const onAbort = (): void => void req.destroy(errnoError('token request aborted', 'ABORT_ERR'));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', reject);
      req.on('close', () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      });
      req.end(body ?? undefined);
    });
  }
}

function errnoError(message: string, code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

async function bodyBytes(body: RequestInit['body'] | ArrayBuffer): Promise<Buffer | null> {
  if (body === null || body === undefined) return null;
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof URLSearchParams) return Buffer.from(body.toString());
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  return Buffer.from(await new Response(body).arrayBuffer());
}
