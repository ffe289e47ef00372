import { createHmac } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { WebhookSinkConfig } from '../../config/types.js';
import { PermanentSinkError, type AlertSink } from './delivery-queue.js';
import { webhookBody, type AlertNotification } from './notification.js';

/** Enough of a reply body to quote in the log; the rest is discarded. */
const MAX_REPLY_BYTES = 2_048;

/**
 * POSTs the notice as JSON. With a secret, `X-Mailtrail-Signature: sha256=<hex>` is the HMAC-SHA256
 * of the exact body bytes under that secret (as GitHub's webhooks do), so a receiver can check that
 * mailtrail sent it. `X-Mailtrail-Delivery` is the alert record's id: the same on every retry, so a
 * receiver can drop duplicates. Any 2xx is success; 408, 429 and 5xx are retried, other answers not.
 */
export class WebhookSink implements AlertSink {
  readonly name: string;
  #config: WebhookSinkConfig;

  constructor(config: WebhookSinkConfig) {
    this.name = config.name;
    this.#config = config;
  }

  send(notification: AlertNotification, signal: AbortSignal): Promise<void> {
    const body = Buffer.from(JSON.stringify(webhookBody(notification)));
    const url = new URL(this.#config.url);
    const headers: Record<string, string> = {
      ...this.#config.headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(body.length),
      'user-agent': 'mailtrail',
      'x-mailtrail-event': notification.state,
      'x-mailtrail-delivery': notification.id,
    };
    if (this.#config.secret !== null) headers['x-mailtrail-signature'] = `sha256=${signature(this.#config.secret, body)}`;
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<void>((resolve, reject) => {
      // agent: false = a fresh connection per notice; nothing lingers to hold up shutdown.
      const req = request(url, { method: 'POST', headers, signal, agent: false }, (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (size < MAX_REPLY_BYTES) chunks.push(chunk);
          size += chunk.length;
        });
        res.on('error', reject);
        res.on('end', () => {
          if (status >= 200 && status < 300) return resolve();
          const text = Buffer.concat(chunks).toString('utf8').slice(0, 200).replace(/\s+/g, ' ').trim();
          const message = `webhook answered ${status}${text ? `: ${text}` : ''}`;
          reject(status === 408 || status === 429 || status >= 500 ? new Error(message) : new PermanentSinkError(message));
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  }
}

export function signature(secret: string, body: Buffer): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}
