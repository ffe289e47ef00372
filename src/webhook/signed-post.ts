import { createHmac } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/**
 * The one way mailtrail POSTs JSON to a webhook, shared by the alert webhooks (observe/alerts) and
 * the spool's delivery events (spool/delivery-events.ts), so both are signed and checked the same way
 * (docs/observability.md, "Webhook"; docs/spool.md, "Delivery events").
 */

/** Enough of a reply body to quote in the log; the rest is discarded. */
const MAX_REPLY_BYTES = 2_048;
/** How much of the reply body an answer keeps (whitespace collapsed). */
const MAX_REPLY_TEXT = 200;

/** HMAC-SHA256 of the exact body bytes under `secret`, hex: the value of `X-Mailtrail-Signature` after `sha256=`. */
export function signature(secret: string, body: Buffer): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}

/** What the receiver answered: its status and the start of its body, for the log. */
export interface WebhookAnswer {
  readonly status: number;
  readonly text: string;
}

export interface SignedPost {
  readonly url: URL;
  /** The exact bytes sent and signed. */
  readonly body: Buffer;
  /** With a secret, `X-Mailtrail-Signature: sha256=<hex>` is added (as GitHub's webhooks do); null sends unsigned. */
  readonly secret: string | null;
  /** Headers of the caller (event name, delivery id, configured extras); the content and signature headers win. */
  readonly headers: Readonly<Record<string, string>>;
  /** Aborts the request (timeout, shutdown); the promise rejects with the signal's reason. */
  readonly signal: AbortSignal;
  /** A keep-alive agent of the caller's; without one each POST gets a fresh connection and nothing lingers. */
  readonly agent?: HttpAgent | HttpsAgent;
}

/** 2xx: the receiver took it. */
export function isSuccess(answer: WebhookAnswer): boolean {
  return answer.status >= 200 && answer.status < 300;
}

/** `webhook answered 503: busy`: an answer as a log line (the reply body is the receiver's, never ours). */
export function describeAnswer(answer: WebhookAnswer): string {
  return `webhook answered ${answer.status}${answer.text ? `: ${answer.text}` : ''}`;
}

/** A POST that got no answer, for the log: `ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:8080`. */
export function describePostError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as Error & { code?: string }).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/**
 * POSTs `body` as JSON. Resolves with any HTTP answer (the caller decides what is success and what
 * is worth retrying); rejects on network errors, TLS errors and when `signal` fires.
 */
export function postSigned(post: SignedPost): Promise<WebhookAnswer> {
  const headers: Record<string, string> = {
    ...post.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(post.body.length),
    'user-agent': 'mailtrail',
  };
  if (post.secret !== null) headers['x-mailtrail-signature'] = `sha256=${signature(post.secret, post.body)}`;
  const request = post.url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<WebhookAnswer>((resolve, reject) => {
    // The signal also covers a receiver that sent its headers and then stalls in the body.
    const onAbort = (): void => reject(post.signal.reason instanceof Error ? post.signal.reason : new Error('aborted'));
    if (post.signal.aborted) return onAbort();
    post.signal.addEventListener('abort', onAbort, { once: true });
    const settle = (): void => post.signal.removeEventListener('abort', onAbort);
    const req = request(post.url, { method: 'POST', headers, signal: post.signal, agent: post.agent ?? false }, (res) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        if (size < MAX_REPLY_BYTES) chunks.push(chunk);
        size += chunk.length;
      });
      res.on('error', (err) => {
        settle();
        reject(err);
      });
      res.on('end', () => {
        settle();
        const text = Buffer.concat(chunks).toString('utf8').slice(0, MAX_REPLY_TEXT).replace(/\s+/g, ' ').trim();
        resolve({ status, text });
      });
    });
    req.on('error', (err) => {
      settle();
      reject(err);
    });
    req.end(post.body);
  });
}
