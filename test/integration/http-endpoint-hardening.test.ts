/**
 * The HTTP endpoint against hostile clients (docs/observability.md, "The HTTP endpoint"): its
 * connections are bounded in number and in how long a request may take to arrive, so that they cannot
 * use up the file descriptors the SMTP listeners, the trail and the spool need; and without a token,
 * on loopback, it answers only to a loopback Host, so a web page cannot read it by DNS rebinding.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_HTTP_CONNECTIONS } from '../../src/observe/http-server.js';
import { getWithHost } from '../helpers/console-client.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

/** A raw TCP connection to the endpoint; resolves once connected, and records when the server closes it. */
function open(port: number): Promise<{ socket: Socket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const closed = new Promise<number>((done) => socket.once('close', () => done(Date.now())));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, closed }));
    socket.once('error', reject);
  });
}

describe('HTTP endpoint connection limits', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let port: number;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({ upstreams: [{ port: upstream.port }], http: { port: 0 } });
    port = Number(new URL(relay.httpUrl!).port);
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('closes a request whose headers trickle in for longer than the headers timeout', async () => {
    const { socket, closed } = await open(port);
    const started = Date.now();
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const trickle = setInterval(() => socket.write('X-Slow: 1\r\n'), 500);
    try {
      // headersTimeout is 5 s; without a prompt check of it the connection lived on for 30 s more.
      const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(0), 12_000))]);
      expect(at).toBeGreaterThan(0);
      expect(at - started).toBeLessThan(9_000);
    } finally {
      clearInterval(trickle);
      socket.destroy();
    }
  }, 20_000);

  it(`holds at most ${MAX_HTTP_CONNECTIONS} connections and still relays mail while they are held`, async () => {
    const held = await Promise.all(Array.from({ length: MAX_HTTP_CONNECTIONS + 20 }, () => open(port)));
    try {
      const refusedSoon = await Promise.all(
        held.map(({ closed }) => Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2_000))])),
      );
      expect(refusedSoon.filter(Boolean).length).toBeGreaterThanOrEqual(20);
      const result = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
      expect(result.code).toBe(250);
    } finally {
      for (const { socket } of held) socket.destroy();
    }
  }, 20_000);
});

describe('HTTP endpoint without a token on loopback', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({ upstreams: [{ port: upstream.port }], http: { port: 0 } });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('refuses every path but /healthz to a Host that is not a loopback name (a page that rebinds its name to 127.0.0.1)', async () => {
    for (const path of ['/api/errors', '/api/transactions?messageId=x', '/metrics', '/readyz']) {
      const answer = await getWithHost(relay.httpUrl!, path, 'attacker.example:8025');
      expect([path, answer.status]).toEqual([path, 403]);
      expect(JSON.parse(answer.body)).toMatchObject({ error: expect.stringMatching(/loopback host name/) });
    }
    expect((await getWithHost(relay.httpUrl!, '/healthz', 'attacker.example:8025')).status).toBe(200);
  });

  it('answers the loopback names: 127.0.0.1, localhost and [::1], with any port', async () => {
    for (const host of ['127.0.0.1:8025', 'localhost', 'localhost:9', '[::1]:8025']) {
      expect([host, (await getWithHost(relay.httpUrl!, '/api/errors', host)).status]).toEqual([host, 200]);
    }
  });
});
