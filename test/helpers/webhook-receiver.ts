/**
 * A real HTTP server on 127.0.0.1 that records webhook deliveries, for alerting tests.
 *
 * `mode`: `ok` answers 204; a number answers that status; `hang` reads the request and never
 * answers (a dead receiver). Change it at any time.
 *
 * @example
 * const hook = await startWebhookReceiver();
 * // alerts.sinks: [{ kind: 'webhook', name: 'ops', url: hook.url, secret: 's', headers: {} }]
 * await hook.waitFor((r) => r.length === 1);
 * expect(hook.received[0]!.json.alert.state).toBe('fired');
 * await hook.close();
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitFor } from './fake-upstream.js';

export interface ReceivedHook {
  readonly at: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly json: { text: string; alert: { state: string; rule: string; upstream: string; class: string | null; message: string; id: string } };
}

export interface WebhookReceiver {
  readonly url: string;
  readonly received: ReceivedHook[];
  /** Requests that arrived, answered or not. */
  readonly requests: number;
  mode: 'ok' | 'hang' | number;
  waitFor(predicate: (received: readonly ReceivedHook[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(mode: WebhookReceiver['mode'] = 'ok'): Promise<WebhookReceiver> {
  const received: ReceivedHook[] = [];
  const hanging = new Set<ServerResponse>();
  let requests = 0;
  const receiver: WebhookReceiver = {
    url: '',
    received,
    get requests() {
      return requests;
    },
    mode,
    waitFor: (predicate, timeoutMs = 10_000) => waitFor(() => predicate(received), timeoutMs),
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer((req, res) => {
    requests += 1;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (receiver.mode === 'hang') {
        hanging.add(res);
        return;
      }
      const body = Buffer.concat(chunks);
      if (receiver.mode === 'ok') received.push({ at: Date.now(), headers: req.headers, body, json: JSON.parse(body.toString('utf8')) });
      res.writeHead(receiver.mode === 'ok' ? 204 : receiver.mode).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  (receiver as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return receiver;
}
