/**
 * The bench's own SMTP load generator and per-message timer, used for the latency figures and, when
 * Postfix's smtp-source is not installed, for the throughput runs too.
 *
 * Like smtp-source it does not pipeline: one command, one reply. Each session runs messages in a
 * loop, with a new connection per message (connect, EHLO, MAIL, RCPT, DATA, QUIT) or one connection
 * for all of them (`reuse`). It stops at `messages` or at `deadlineMs`, whichever comes first.
 *
 * Run as a child process so its event loop never competes with the bench's samplers:
 *   node bench/smtp-load.mjs '{"port":2525,"sessions":20,"messages":5000,"size":1024,"reuse":false}'
 * prints one JSON line: { sent, failed, elapsedMs, firstError, timings? }.
 */
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const CRLF = '\r\n';

/** A body of `size` bytes: 76-character lines of printable ASCII (no dot-stuffing needed). */
export function makeBody(size) {
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn' + CRLF;
  const body = Buffer.alloc(size, line);
  // End on a full line so the terminating CRLF.CRLF is well formed.
  if (size >= 2) body.write(CRLF, size - 2);
  return body;
}

/** Header block for message number `n`; the body follows it. */
function headers(n, from, to, tag) {
  return Buffer.from(
    `From: <${from}>${CRLF}To: <${to}>${CRLF}Subject: bench ${n}${CRLF}` +
      `Message-ID: <bench-${tag}-${n}@bench.mailtrail.test>${CRLF}Date: ${new Date().toUTCString()}${CRLF}${CRLF}`,
    'latin1',
  );
}

/** A connection that hands out whole SMTP replies (multi-line replies joined). */
class ReplyReader {
  #buffer = '';
  #waiter = null;
  #closed = false;

  constructor(socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d) => {
      this.#buffer += d;
      this.#wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
  }

  /** The next reply's code (a multi-line reply counts once). Rejects if the connection closes first. */
  next() {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const code = this.#take();
        if (code !== null) return resolve(code);
        if (this.#closed) return reject(new Error('connection closed'));
        this.#waiter = attempt;
      };
      attempt();
    });
  }

  #take() {
    let pos = 0;
    for (;;) {
      const eol = this.#buffer.indexOf('\n', pos);
      if (eol < 0) return null;
      const line = this.#buffer.slice(pos, eol);
      pos = eol + 1;
      if (line.length < 4 || line[3] !== '-') {
        this.#buffer = this.#buffer.slice(pos);
        return Number(line.slice(0, 3));
      }
    }
  }

  #wake() {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }
}

function connect(host, port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

async function expect(reader, want, what) {
  const code = await reader.next();
  if (code !== want) throw new Error(`${what}: expected ${want}, got ${code}`);
}

/** Sends one message over an open session (after EHLO). */
async function transaction(socket, reader, head, body, from, to) {
  socket.write(`MAIL FROM:<${from}>${CRLF}`);
  await expect(reader, 250, 'MAIL');
  socket.write(`RCPT TO:<${to}>${CRLF}`);
  await expect(reader, 250, 'RCPT');
  socket.write(`DATA${CRLF}`);
  await expect(reader, 354, 'DATA');
  socket.cork();
  socket.write(head);
  socket.write(body);
  socket.write(`.${CRLF}`);
  socket.uncork();
  await expect(reader, 250, 'end of DATA');
}

async function open(host, port) {
  const socket = await connect(host, port);
  const reader = new ReplyReader(socket);
  await expect(reader, 220, 'greeting');
  socket.write(`EHLO bench.mailtrail.test${CRLF}`);
  await expect(reader, 250, 'EHLO');
  return { socket, reader };
}

async function quit(session) {
  session.socket.write(`QUIT${CRLF}`);
  await session.reader.next().catch(() => 221);
  session.socket.destroy();
}

/**
 * Runs the load and resolves with counts, wall time and (with `timings`) each message's duration in
 * ms: from connect to the final 250 for a new connection, from MAIL to the final 250 when reused.
 */
export async function runLoad(opts) {
  const { host = '127.0.0.1', port, sessions = 1, messages, size = 1024, reuse = false, timings = false } = opts;
  const deadline = performance.now() + (opts.deadlineMs ?? 60_000);
  const from = 'bench@bench.mailtrail.test';
  const to = 'sink@bench.mailtrail.test';
  const tag = Math.random().toString(36).slice(2, 8);
  const body = makeBody(size);
  const durations = [];
  let issued = 0;
  let sent = 0;
  let failed = 0;
  let firstError = null;

  const fail = (err) => {
    failed += 1;
    firstError ??= err.message;
  };

  const worker = async () => {
    let session = null;
    while (issued < messages && performance.now() < deadline) {
      const n = issued++;
      const t0 = performance.now();
      try {
        if (session === null) session = await open(host, port);
        const t1 = reuse ? performance.now() : t0;
        await transaction(session.socket, session.reader, headers(n, from, to, tag), body, from, to);
        if (timings) durations.push(performance.now() - t1);
        sent += 1;
        if (!reuse) {
          await quit(session);
          session = null;
        }
      } catch (err) {
        fail(err);
        session?.socket.destroy();
        session = null;
      }
    }
    if (session) await quit(session);
  };

  const started = performance.now();
  await Promise.all(Array.from({ length: sessions }, worker));
  const elapsedMs = performance.now() - started;
  return { sent, failed, elapsedMs, firstError, ...(timings ? { timings: durations } : {}) };
}

/**
 * Opens `count` client connections, reads each greeting, and keeps them open. `close()` ends them.
 * Connections refused or not greeted are counted, not thrown.
 */
export async function openIdle(port, count, host = '127.0.0.1') {
  const sockets = [];
  let greeted = 0;
  let refused = 0;
  const batch = 50;
  for (let i = 0; i < count; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, async () => {
        try {
          const socket = await connect(host, port);
          sockets.push(socket);
          const reader = new ReplyReader(socket);
          const code = await reader.next();
          if (code === 220) greeted += 1;
          else refused += 1;
        } catch {
          refused += 1;
        }
      }),
    );
  }
  return {
    greeted,
    refused,
    close() {
      for (const s of sockets) s.destroy();
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const opts = JSON.parse(process.argv[2] ?? '{}');
  runLoad(opts).then(
    (result) => {
      process.stdout.write(JSON.stringify(result) + '\n');
    },
    (err) => {
      process.stderr.write(String(err?.stack ?? err) + '\n');
      process.exit(1);
    },
  );
}
