/**
 * A real HTTP server on 127.0.0.1 that records webhook deliveries, for alerting tests.
 *
 * `mode`: `ok` answers 204; a number answers that status; `hang` reads the request and never
 * answers (a dead receiver); a function chooses one of these per request (numbered from 1). Change
 * it at any time. `json` is typed for the alert webhooks; name another body type as `J`.
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

export interface AlertHookJson {
  text: string;
  alert: { state: string; rule: string; upstream: string; class: string | null; message: string; id: string };
}

export interface ReceivedHook<J = AlertHookJson> {
  readonly at: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly json: J;
}

type Answer = 'ok' | 'hang' | number;

export interface WebhookReceiver<J = AlertHookJson> {
  readonly url: string;
  readonly received: ReceivedHook<J>[];
  /** Requests that arrived, answered or not. */
  readonly requests: number;
  /** Requests whose connection is still open: being answered, or hanging. */
  readonly open: number;
  mode: Answer | ((request: number) => Answer);
  waitFor(predicate: (received: readonly ReceivedHook<J>[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startWebhookReceiver<J = AlertHookJson>(mode: WebhookReceiver<J>['mode'] = 'ok'): Promise<WebhookReceiver<J>> {
  const received: ReceivedHook<J>[] = [];
  const hanging = new Set<ServerResponse>();
  let requests = 0;
  let open = 0;
  const receiver: WebhookReceiver<J> = {
    url: '',
    received,
    get requests() {
      return requests;
    },
    get open() {
      return open;
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
    open += 1;
    res.on('close', () => (open -= 1));
    const answer = typeof receiver.mode === 'function' ? receiver.mode(requests) : receiver.mode;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (answer === 'hang') {
        hanging.add(res);
        return;
      }
      const body = Buffer.concat(chunks);
      if (answer === 'ok') received.push({ at: Date.now(), headers: req.headers, body, json: JSON.parse(body.toString('utf8')) as J });
      res.writeHead(answer === 'ok' ? 204 : answer).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  (receiver as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return receiver;
}
