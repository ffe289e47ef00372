import type { WebhookSinkConfig } from '../../config/types.js';
import { describeAnswer, isSuccess, postSigned } from '../../webhook/signed-post.js';
import { PermanentSinkError, type AlertSink } from './delivery-queue.js';
import { webhookBody, type AlertNotification } from './notification.js';

/**
 * POSTs the notice as JSON. With a secret, `X-Mailtrail-Signature: sha256=<hex>` is the HMAC-SHA256
 * of the exact body bytes under that secret (webhook/signed-post.ts, as GitHub's webhooks do), so a
 * receiver can check that mailtrail sent it. `X-Mailtrail-Delivery` is the alert record's id: the
 * same on every retry, so a receiver can drop duplicates. Any 2xx is success; 408, 429 and 5xx are
 * retried, other answers not.
 */
export class WebhookSink implements AlertSink {
  readonly name: string;
  #config: WebhookSinkConfig;

  constructor(config: WebhookSinkConfig) {
    this.name = config.name;
    this.#config = config;
  }

  async send(notification: AlertNotification, signal: AbortSignal): Promise<void> {
    const answer = await postSigned({
      url: new URL(this.#config.url),
      body: Buffer.from(JSON.stringify(webhookBody(notification))),
      secret: this.#config.secret,
      headers: { ...this.#config.headers, 'x-mailtrail-event': notification.state, 'x-mailtrail-delivery': notification.id },
      signal,
    });
    if (isSuccess(answer)) return;
    const { status } = answer;
    throw status === 408 || status === 429 || status >= 500 ? new Error(describeAnswer(answer)) : new PermanentSinkError(describeAnswer(answer));
  }
}
