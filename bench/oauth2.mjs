/**
 * `node bench/oauth2.mjs` (after `npm run build`): what OAuth2 costs an upstream (docs/oauth2.md).
 *
 * mailtrail (dist/, in this process) relays to an smtp-server upstream that takes AUTH XOAUTH2; a token
 * endpoint on loopback counts its requests and issues tokens with a given lifetime, answering after a
 * given delay (the round trip to a real identity provider). The Microsoft 365 flavour is used (msal-node
 * makes the request), `tokenUrl` pointing at the loopback endpoint. Measures:
 *
 * 1. token requests per 1,000 messages with a realistic lifetime (1 h), with pooled connections and
 *    with a new connection per message;
 * 2. the same with a 10-second lifetime, the messages spread over ~50 s;
 * 3. the latency the token request adds to the first message after start, against a later message on
 *    a new connection (cached token), for an identity provider answering at once and one answering in
 *    150 ms; median of 5 fresh starts each.
 *
 * Bounded: about 90 s in all. Every socket is on 127.0.0.1.
 *
 * Measured on the 2-core development machine:
 *
 *   1 h token, pooled connections                                  1,000 messages in  4.0 s: 1 token request
 *   1 h token, a new connection per message                        1,000 messages in 23.7 s: 1 token request
 *   10 s token, 20 messages/s                                      1,000 messages in 50.0 s: 7 token requests
 *   10 s token, 20 messages/s, a new connection per message        1,000 messages in 50.1 s: 7 token requests
 *     (one at start, then one every 8 s: renewed at 80 % of the lifetime, never per message)
 *
 *   first message after start, identity provider answering at once:    109.2 ms against 108.3 ms later (+1.0 ms)
 *   first message after start, identity provider answering in 150 ms:  165.5 ms against 106.2 ms later (+59.3 ms)
 *     (the token request overlaps the upstream's TCP, greeting and EHLO, so it adds less than its own time)
 */
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { SMTPServer } from 'smtp-server';
import { App } from '../dist/app.js';
import { parseConfig } from '../dist/config/load.js';
import { createLogger } from '../dist/logger.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function tokenEndpoint() {
  const state = { requests: 0, lifetime: 3600, delayMs: 0 };
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', async () => {
      state.requests++;
      if (state.delayMs) await sleep(state.delayMs);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token_type: 'Bearer', expires_in: state.lifetime, access_token: randomBytes(24).toString('hex') }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { state, port: server.address().port, close: () => new Promise((r) => server.close(r)) };
}

async function upstream() {
  const server = new SMTPServer({
    logger: false,
    disabledCommands: ['STARTTLS'],
    authMethods: ['XOAUTH2'],
    onAuth: (auth, _s, cb) => cb(null, { user: auth.username }),
    onData: (stream, _s, cb) => {
      stream.resume();
      stream.on('end', () => cb(null, 'Ok'));
    },
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.server.address().port, close: () => new Promise((r) => server.close(r)) };
}

async function relay(idpPort, upPort, pool) {
  const dir = mkdtempSync(join(tmpdir(), 'mailtrail-bench-oauth2-'));
  const config = parseConfig(
    {
      listen: [{ host: '127.0.0.1', port: 0 }],
      clients: { networks: ['127.0.0.0/8'] },
      dataDir: dir,
      upstreams: [
        {
          name: 'm365',
          url: `smtp://127.0.0.1:${upPort}`,
          tls: { mode: 'none' },
          pool,
          probe: { enabled: false },
          auth: {
            type: 'oauth2',
            user: 'printer@contoso.example',
            tenantId: 'contoso.example',
            clientId: 'mailtrail',
            clientSecret: 'bench-secret',
            tokenUrl: `http://127.0.0.1:${idpPort}/contoso.example/oauth2/v2.0/token`,
          },
        },
      ],
    },
    { env: {}, baseDir: dir },
  );
  const app = new App(config, createLogger('silent'));
  const info = await app.start();
  return {
    port: info.listeners[0].port,
    stop: async () => {
      await app.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const RAW = Buffer.from('From: <a@example.com>\r\nTo: <b@example.org>\r\nSubject: bench\r\n\r\nHello.\r\n');

/** Sends one message over a new client connection; resolves with its latency in ms. */
async function sendOnce(port) {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true });
  const started = performance.now();
  const info = await t.sendMail({ envelope: { from: 'a@example.com', to: ['b@example.org'] }, raw: RAW });
  if (!String(info.response).startsWith('250')) throw new Error(`not relayed: ${info.response}`);
  t.close();
  return performance.now() - started;
}

/** `count` messages over `parallel` pooled client connections, at most `perSecond` a second. */
async function sendMany(port, count, parallel, perSecond = Infinity) {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true, pool: true, maxConnections: parallel, maxMessages: Infinity });
  const started = performance.now();
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (let i = next++; i < count; i = next++) {
        const due = started + (i * 1000) / perSecond;
        if (Number.isFinite(due) && performance.now() < due) await sleep(due - performance.now());
        const info = await t.sendMail({ envelope: { from: 'a@example.com', to: ['b@example.org'] }, raw: RAW }).catch(() => null);
        if (!info || !String(info.response).startsWith('250')) failed++;
      }
    }),
  );
  t.close();
  return { seconds: (performance.now() - started) / 1000, failed };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const idp = await tokenEndpoint();
const up = await upstream();
const rows = [];

for (const [label, lifetime, pool, perSecond] of [
  ['1 h token, pooled connections', 3600, { maxConnections: 5, maxMessages: 100 }, Infinity],
  ['1 h token, a new connection per message', 3600, { maxConnections: 5, maxMessages: 1 }, Infinity],
  ['10 s token, 20 messages/s', 10, { maxConnections: 5, maxMessages: 100 }, 20],
  ['10 s token, 20 messages/s, a new connection per message', 10, { maxConnections: 5, maxMessages: 1 }, 20],
]) {
  idp.state.lifetime = lifetime;
  idp.state.delayMs = 0;
  const r = await relay(idp.port, up.port, pool);
  const before = idp.state.requests;
  const run = await sendMany(r.port, 1000, 10, perSecond);
  const requests = idp.state.requests - before;
  await r.stop();
  rows.push({ scenario: label, messages: 1000, failed: run.failed, seconds: run.seconds.toFixed(1), tokenRequests: requests });
}
console.log('\nToken requests per 1,000 messages');
console.table(rows);

const latency = [];
for (const delayMs of [0, 150]) {
  idp.state.lifetime = 3600;
  idp.state.delayMs = delayMs;
  const first = [];
  const later = [];
  for (let i = 0; i < 5; i++) {
    const r = await relay(idp.port, up.port, { maxConnections: 5, maxMessages: 1 });
    first.push(await sendOnce(r.port));
    later.push(await sendOnce(r.port));
    await r.stop();
  }
  latency.push({
    identityProvider: delayMs === 0 ? 'answers at once (loopback)' : `answers in ${delayMs} ms`,
    firstMessageMs: median(first).toFixed(1),
    laterMessageNewConnectionMs: median(later).toFixed(1),
    addedByTokenMs: (median(first) - median(later)).toFixed(1),
  });
}
console.log('\nFirst message after start (token fetched) against a later one (cached token), median of 5');
console.table(latency);

await idp.close();
await up.close();
