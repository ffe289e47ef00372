/**
 * How much audit trail an abusive client can make mailtrail write: a raw-socket attacker on loopback
 * against mailtrail as a child process (the production path: `node dist/cli.js serve`). The client's
 * address is outside `clients.networks` and it has no password, so it may not relay: everything it
 * sends is refused.
 *
 * Two attacks, each bounded in time and in connections:
 *
 * - `errors`: N connections send refused commands (MAIL FROM → 554 relaying denied, RCPT TO → 503
 *   bad sequence) as fast as the replies come back; a connection the server closes is replaced at
 *   once, so this also measures what one address can do with reconnects.
 * - `reconnect`: N loops of connect, EHLO, one refused MAIL, QUIT, as fast as possible.
 *
 * For each it reports the trail bytes and records written (by type and class), the replies seen, and
 * the connections made and refused at connect. With `--long` the client makes every record as large
 * as it can: a 300-character EHLO name and a 253-character MAIL FROM (the most smtp-server takes).
 *
 *   npm run build && node bench/trail-flood.mjs [--seconds 10] [--connections 4] [--port P] [--long]
 *                                               [--attack errors|reconnect|both] [--cli dist/cli.js]
 *                                               [--json FILE]
 *
 * `--cli` runs another build (an older checkout's dist/cli.js) with the same attacks.
 */
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CLI, startMailtrail, writeConfig } from './mailtrail-process.mjs';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '4' },
    port: { type: 'string', default: '0' },
    attack: { type: 'string', default: 'both' },
    long: { type: 'boolean', default: false },
    cli: { type: 'string' },
    json: { type: 'string' },
  },
});

const SECONDS = Number(args.seconds);
const CONNECTIONS = Number(args.connections);
/** Upper bound on connections per worker, whatever the time allows. */
const MAX_CONNECTIONS_PER_WORKER = 200_000;
/** Commands in flight per connection: enough to keep the server busy, few enough to read back. */
const WINDOW = 32;
// smtp-server holds an address to 253 characters (RFC 5321 §4.5.3.1.3).
const DOMAIN = args.long ? `${'d'.repeat(59)}.${'e'.repeat(59)}.${'f'.repeat(59)}.${'g'.repeat(59)}.example` : 'example.com';
const REFUSED = [`MAIL FROM:<app@${DOMAIN}>`, 'RCPT TO:<ana@example.org>'];
const EHLO = `EHLO ${args.long ? 'h'.repeat(290) : 'attacker'}.test\r\n`;

async function freePort() {
  return new Promise((done) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => done(port));
    });
  });
}

/** One raw SMTP connection: counts reply codes; `onReply` decides what to send next. */
function connect(port, onReply) {
  return new Promise((done) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const codes = [];
    let buffer = '';
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      socket.destroy();
      done(codes);
    };
    socket.setEncoding('latin1');
    socket.on('data', (d) => {
      buffer += d;
      let eol;
      while ((eol = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, eol);
        buffer = buffer.slice(eol + 1);
        if (line[3] === '-') continue; // a multi-line reply's inner line
        const code = Number(line.slice(0, 3));
        codes.push(code);
        if (!socket.destroyed) onReply(code, codes.length, (text) => socket.write(text), finish);
      }
    });
    socket.on('error', finish);
    socket.on('close', finish);
  });
}

/** errors: EHLO, then refused commands with WINDOW in flight, until the server closes or time is up. */
function errorConnection(port, deadline) {
  let sent = 0;
  return connect(port, (code, n, write, finish) => {
    if (Date.now() >= deadline) return finish();
    if (n === 1) {
      if (code !== 220) return finish();
      write(EHLO);
      return;
    }
    // Keep WINDOW commands outstanding: one more for each reply.
    const want = n === 2 ? WINDOW : 1;
    let batch = '';
    for (let i = 0; i < want; i++) batch += REFUSED[sent++ % REFUSED.length] + '\r\n';
    write(batch);
  });
}

/** reconnect: connect, EHLO, one refused MAIL, QUIT. */
function shortConnection(port) {
  return connect(port, (code, n, write, finish) => {
    if (n === 1 && code !== 220) return finish();
    if (n === 1) write(EHLO);
    else if (n === 2) write(`${REFUSED[0]}\r\nQUIT\r\n`);
    else if (n >= 4) finish();
  });
}

async function worker(attack, port, deadline) {
  const stats = { connections: 0, refusedAtConnect: 0, replies: {} };
  while (Date.now() < deadline && stats.connections < MAX_CONNECTIONS_PER_WORKER) {
    stats.connections += 1;
    const codes = attack === 'errors' ? await errorConnection(port, deadline) : await shortConnection(port);
    if (codes[0] !== undefined && codes[0] !== 220) stats.refusedAtConnect += 1;
    for (const c of codes) stats.replies[c] = (stats.replies[c] ?? 0) + 1;
  }
  return stats;
}

function trailLines(file, fromByte) {
  const text = readFileSync(file).subarray(fromByte).toString('utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

async function runAttack(attack, port, auditFile) {
  const before = statSync(auditFile).size;
  const t0 = Date.now();
  const deadline = t0 + SECONDS * 1000;
  const workers = await Promise.all(Array.from({ length: CONNECTIONS }, () => worker(attack, port, deadline)));
  const elapsedMs = Date.now() - t0;
  // Session records are written as the server sees each connection close.
  await new Promise((r) => setTimeout(r, 1500));
  const after = statSync(auditFile).size;
  const records = trailLines(auditFile, before);
  const byType = {};
  const byClass = {};
  for (const r of records) {
    byType[r.type] = (byType[r.type] ?? 0) + 1;
    if (r.type === 'reject') byClass[r.class] = (byClass[r.class] ?? 0) + 1;
  }
  const sum = (k) => workers.reduce((a, w) => a + w[k], 0);
  const replies = {};
  for (const w of workers) for (const [c, n] of Object.entries(w.replies)) replies[c] = (replies[c] ?? 0) + n;
  const bytes = after - before;
  return {
    attack: args.long ? `${attack} (long)` : attack,
    seconds: Math.round(elapsedMs / 100) / 10,
    workers: CONNECTIONS,
    connections: sum('connections'),
    refusedAtConnect: sum('refusedAtConnect'),
    replies,
    trailBytes: bytes,
    trailBytesPerMinute: Math.round((bytes / elapsedMs) * 60_000),
    records: records.length,
    byType,
    rejectClasses: byClass,
    largestRecordBytes: records.reduce((m, r) => Math.max(m, Buffer.byteLength(JSON.stringify(r)) + 1), 0),
  };
}

async function main() {
  const cli = args.cli ? resolve(args.cli) : CLI;
  const work = mkdtempSync(join(tmpdir(), 'mailtrail-flood-'));
  const port = Number(args.port) || (await freePort());
  const auditFile = join(work, 'audit.log');
  const config = {
    hostname: 'flood.mailtrail.test',
    dataDir: join(work, 'data'),
    log: { level: 'warn' },
    listen: [{ host: '127.0.0.1', port }],
    // Loopback is not a listed network, and there are no users: the attacker may not relay.
    clients: { networks: ['10.0.0.0/8'] },
    upstreams: [{ name: 'unused', url: 'smtp://127.0.0.1:9', tls: { mode: 'none' }, probe: { enabled: false } }],
    audit: { file: auditFile },
  };
  const file = join(work, 'mailtrail.yaml');
  writeConfig(file, config, []);
  const mt = await startMailtrail({ configFile: file, logFile: join(work, 'mailtrail.log'), cli });
  const results = [];
  try {
    for (const attack of args.attack === 'both' ? ['errors', 'reconnect'] : [args.attack]) {
      const r = await runAttack(attack, port, auditFile);
      results.push(r);
      process.stdout.write(`${JSON.stringify(r)}\n`);
      // A fresh minute for the next attack's connection allowance.
      if (args.attack === 'both' && attack === 'errors') await new Promise((res) => setTimeout(res, 61_000));
    }
  } finally {
    await mt.stop();
    if (args.json) writeFileSync(args.json, JSON.stringify({ cli, seconds: SECONDS, connections: CONNECTIONS, results }, null, 2) + '\n');
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
