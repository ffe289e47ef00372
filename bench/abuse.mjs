/**
 * `node bench/abuse.mjs` (after `npm run build`): slow clients and password guessing against
 * mailtrail with its default limits, on loopback, bounded in time. Prints what an attacker gets.
 *
 *   slow clients      N connections (default 200, = limits.maxConnections) each trickling one byte
 *                     every 5 s (a command line, or message data after 354), and a real client every
 *                     10 s: when the tricklers are cut, and when the real client gets in
 *   password guessing 40 parallel connections trying wrong passwords for one user: attempts, how
 *                     many were checked (535) or refused unheard (454), guesses per minute
 *   timing            failed AUTH for a user with a hashed password and for an unknown user
 *
 *   ABUSE_SLOW=line,data   which trickles to run (also `noop`: whole NOOP commands trickled, cut by
 *                          timeouts.session after 10 minutes); empty = none
 *   ABUSE_SLOW_SECONDS=180 bound on each trickle run
 *   ABUSE_TRICKLERS=200    ABUSE_GUESS_SECONDS=60
 *
 * Works with older builds too: config keys a build does not know are left out (mailtrail-process.mjs),
 * so the same script shows the figures before and after.
 */
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { startMailtrail, writeConfig } from './mailtrail-process.mjs';
import { freePort, startSink } from './tools.mjs';

const SLOW = (process.env.ABUSE_SLOW ?? 'line,data').split(',').filter(Boolean);
const SLOW_SECONDS = Number(process.env.ABUSE_SLOW_SECONDS ?? 180);
const TRICKLERS = Number(process.env.ABUSE_TRICKLERS ?? 200);
const GUESS_SECONDS = Number(process.env.ABUSE_GUESS_SECONDS ?? 60);
const PASSWORD = 'Correct-Horse-77';
/** A user whose password is stored as a scrypt hash of the default cost. */
const HASHED_USER = 'reports';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A raw client: `next()` resolves with the next final reply line, or 'CLOSED'. */
function connect(port, secure = false, localAddress = undefined) {
  return new Promise((resolve, reject) => {
    const sock = secure
      ? tls.connect({ port, host: '127.0.0.1', localAddress, rejectUnauthorized: false })
      : net.connect({ port, host: '127.0.0.1', localAddress });
    let buf = '';
    const lines = [];
    const waiters = [];
    const c = {
      sock,
      lines,
      closedAt: null,
      readyAt: 0,
      next: (timeoutMs = 15_000) =>
        new Promise((res) => {
          const t = setTimeout(() => res('TIMEOUT'), timeoutMs);
          waiters.push((l) => {
            clearTimeout(t);
            res(l);
          });
          pump();
        }),
      send: (line) => sock.write(`${line}\r\n`),
    };
    const pump = () => {
      while (waiters.length && lines.length) waiters.shift()(lines.shift());
      if (c.closedAt !== null) while (waiters.length) waiters.shift()('CLOSED');
    };
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (let i; (i = buf.indexOf('\r\n')) >= 0; buf = buf.slice(i + 2)) if (/^\d{3} /.test(buf.slice(0, i))) lines.push(buf.slice(0, i));
      pump();
    });
    sock.on('close', () => {
      c.closedAt = performance.now();
      pump();
    });
    sock.on('error', () => undefined);
    sock.once(secure ? 'secureConnect' : 'connect', () => resolve(c));
    sock.once('error', reject);
  });
}

async function startRelay(dir, { maxConnections }) {
  const sink = await startSink();
  const [plain, secure] = [await freePort(), await freePort()];
  const { hashPassword } = await import('../dist/auth/password.js');
  const config = {
    listen: [
      { host: '127.0.0.1', port: plain },
      { host: '127.0.0.1', port: secure, implicitTls: true },
    ],
    clients: {
      networks: ['127.0.0.0/8'],
      users: [
        { username: 'billing', password: PASSWORD },
        { username: HASHED_USER, passwordHash: await hashPassword(PASSWORD) },
      ],
    },
    limits: { maxConnections, maxConnectionsPerIp: maxConnections },
    upstreams: [{ name: 'sink', url: `smtp://127.0.0.1:${sink.port}`, tls: { mode: 'none' }, probe: { enabled: false } }],
    dataDir: join(dir, 'data'),
    log: { level: 'warn' },
  };
  const file = join(dir, 'mailtrail.yaml');
  writeConfig(file, config, []);
  const relay = await startMailtrail({ configFile: file, logFile: join(dir, 'mailtrail.log') });
  return {
    plain,
    secure,
    stop: async () => {
      await relay.stop();
      await sink.stop();
    },
  };
}

async function realClient(port) {
  const c = await connect(port);
  const steps = [null, 'EHLO real.example', 'MAIL FROM:<app@example.com>', 'RCPT TO:<ana@example.org>', 'DATA'];
  let reply = '';
  for (const step of steps) {
    if (step) c.send(step);
    reply = await c.next();
    if (!/^(220|250|354)/.test(reply)) break;
  }
  if (reply.startsWith('354')) {
    c.sock.write('Subject: hello\r\n\r\nhello\r\n.\r\n');
    reply = await c.next();
  }
  c.sock.destroy();
  return reply;
}

async function slowClients(mode) {
  const dir = mkdtempSync(join(os.tmpdir(), 'mailtrail-abuse-'));
  const relay = await startRelay(dir, { maxConnections: TRICKLERS });
  const t0 = performance.now();
  const tricklers = [];
  for (let i = 0; i < TRICKLERS; i++) {
    const c = await connect(relay.plain);
    await c.next();
    if (mode === 'data') for (const l of ['EHLO t.example', 'MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.org>', 'DATA']) (c.send(l), await c.next());
    c.readyAt = performance.now();
    tricklers.push(c);
  }
  const text = mode === 'noop' ? 'NOOP\r\n' : mode === 'data' ? 'x'.repeat(1000) : `NOOP ${'x'.repeat(1000)}`;
  let pos = 0;
  const timer = setInterval(() => {
    for (const c of tricklers) if (c.closedAt === null) c.sock.write(text[pos % text.length]);
    pos++;
  }, 5_000);
  let firstIn = null;
  while (performance.now() - t0 < SLOW_SECONDS * 1000) {
    const reply = await realClient(relay.plain).catch((err) => String(err));
    if (reply.startsWith('250')) {
      firstIn = (performance.now() - t0) / 1000;
      break;
    }
    await sleep(10_000);
  }
  // The tricklers connected one after the other: give the last ones their time too (bounded).
  while (performance.now() - t0 < SLOW_SECONDS * 1000 && tricklers.some((c) => c.closedAt === null)) await sleep(500);
  clearInterval(timer);
  const cut = tricklers.filter((c) => c.closedAt !== null).map((c) => (c.closedAt - c.readyAt) / 1000);
  const told = [...new Set(tricklers.map((c) => c.lines.at(-1)?.replace(/ \(id .*$/, '')).filter(Boolean))];
  console.log(`slow clients (${mode}): ${TRICKLERS} tricklers at 1 byte / 5 s holding every slot`);
  console.log(
    `  cut: ${cut.length}/${TRICKLERS}${cut.length ? `, ${Math.min(...cut).toFixed(1)}–${Math.max(...cut).toFixed(1)} s after the server was ready` : ` within ${SLOW_SECONDS} s`}`,
  );
  console.log(`  told: ${told.join(' | ') || '-'}`);
  console.log(`  a real client got in: ${firstIn === null ? `never within ${SLOW_SECONDS} s (421 too many connections)` : `after ${firstIn.toFixed(0)} s`}`);
  for (const c of tricklers) c.sock.destroy();
  await relay.stop();
  rmSync(dir, { recursive: true, force: true });
}

async function authOnce(c, user, password) {
  c.send(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`);
  return c.next(20_000);
}

async function passwordGuessing() {
  const dir = mkdtempSync(join(os.tmpdir(), 'mailtrail-abuse-'));
  const relay = await startRelay(dir, { maxConnections: 500 });
  const t0 = performance.now();
  const codes = {};
  let tried = 0;
  const worker = async () => {
    let c = null;
    while (performance.now() - t0 < GUESS_SECONDS * 1000) {
      if (!c || c.closedAt !== null) {
        c = await connect(relay.secure, true);
        await c.next();
        c.send('EHLO guesser.example');
        await c.next();
      }
      const reply = await authOnce(c, 'billing', `guess-${tried++}`);
      // A 454 with a record id is the failure that started a lockout: its password was checked.
      const code = reply.startsWith('454') && / \(id \w+\)$/.test(reply) ? '454 (lockout began)' : reply.slice(0, 3);
      codes[code] = (codes[code] ?? 0) + 1;
    }
    c?.sock.destroy();
  };
  await Promise.all(Array.from({ length: 40 }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const checked = (codes['535'] ?? 0) + (codes['454 (lockout began)'] ?? 0);
  console.log(`password guessing: 40 parallel connections, one address, ${seconds.toFixed(0)} s`);
  console.log(`  ${tried} attempts: ${JSON.stringify(codes)}`);
  console.log(`  passwords actually checked: ${checked} = ${((checked / seconds) * 60).toFixed(0)} per minute`);

  // From two other loopback addresses (any 127.x.y.z is local on Linux), 6 attempts each: fewer than
  // a lockout needs, so every one is a real check.
  const timings = {};
  const clients = {};
  for (const [user, from] of [
    [HASHED_USER, '127.0.0.2'],
    ['nobody', '127.0.0.3'],
  ]) {
    clients[user] = await connect(relay.secure, true, from);
    await clients[user].next();
    clients[user].send('EHLO timer.example');
    await clients[user].next();
  }
  for (let i = 0; i < 6; i++) {
    for (const user of [HASHED_USER, 'nobody']) {
      const t = performance.now();
      const reply = await authOnce(clients[user], user, `wrong-${i}`);
      (timings[user] ??= []).push([performance.now() - t, reply.slice(0, 3)]);
    }
  }
  for (const c of Object.values(clients)) c.sock.destroy();
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  for (const [user, xs] of Object.entries(timings)) {
    console.log(
      `  failed AUTH for ${user === 'nobody' ? 'an unknown user' : 'a user with a hashed password'}: median ${median(xs.map((x) => x[0])).toFixed(1)} ms (replies ${[...new Set(xs.map((x) => x[1]))]})`,
    );
  }
  await relay.stop();
  rmSync(dir, { recursive: true, force: true });
}

for (const mode of SLOW) await slowClients(mode);
await passwordGuessing();
