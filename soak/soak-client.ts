/**
 * The soak's SMTP clients: each one loops, opening a connection, sending one to a few messages over
 * it, and writing down exactly what it saw for each message: refused before the body, a reply after
 * the final dot (with mailtrail's id from the reply text), or no reply at all.
 *
 * Plain SMTP without pipelining, so every reply belongs to one known command. Messages are never
 * retried: a retry would make "received exactly once" unprovable for the unknown-outcome cases.
 */
import net from 'node:net';

const CRLF = '\r\n';
const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)/;

/** What one client saw for one message. */
export interface ClientMessage {
  readonly messageId: string;
  readonly client: number;
  /** The mailtrail instance (1, 2, 3) that greeted the connection. */
  readonly generation: number;
  readonly recipients: number;
  readonly size: number;
  /** `refused`: never got past MAIL/RCPT/DATA; `replied`: a reply after the final dot; `no-reply`: the connection ended first. */
  stage: 'refused' | 'replied' | 'no-reply';
  /** The body and the final dot were written. */
  dotSent: boolean;
  /** The reply that ended the message: to the final dot, or the refusal before it. */
  code: number | null;
  text: string | null;
  /** mailtrail's transaction id from the reply text. */
  id: string | null;
}

interface Reply {
  code: number;
  text: string;
}

class Connection {
  readonly socket: net.Socket;
  #buffer = '';
  #closed = false;
  #wake: (() => void) | null = null;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.#buffer += d;
      this.#notify();
    });
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.#closed = true;
      this.#notify();
    });
  }

  /** The next complete reply, or null when the connection closes (or `timeoutMs` passes) first. */
  async reply(timeoutMs: number): Promise<Reply | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.#take();
      if (r) return r;
      if (this.#closed || Date.now() > deadline) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  send(data: string | Buffer): void {
    if (!this.#closed && this.socket.writable) this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }

  #take(): Reply | null {
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      const eol = this.#buffer.indexOf('\n', pos);
      if (eol < 0) return null;
      const line = this.#buffer.slice(pos, eol).replace(/\r$/, '');
      pos = eol + 1;
      lines.push(line.slice(4));
      if (line[3] !== '-') {
        this.#buffer = this.#buffer.slice(pos);
        return { code: Number(line.slice(0, 3)), text: lines.join('\n') };
      }
    }
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }
}

function connect(port: number): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => resolve(socket));
    socket.once('error', () => resolve(null));
  });
}

/** A message of about `size` bytes with a unique Message-ID; lines never start with a dot. */
export function soakMessage(messageId: string, size: number, to: readonly string[]): Buffer {
  const head = [
    'From: Soak <soak@app.example>',
    `To: ${to.map((t) => `<${t}>`).join(', ')}`,
    `Subject: soak ${messageId}`,
    `Message-ID: <${messageId}>`,
    `Date: ${new Date().toUTCString()}`,
    '',
    '',
  ].join(CRLF);
  const line = 'The quick brown fox jumps over the lazy dog 0123456789 soak soak soak soak.' + CRLF;
  const lines = Math.max(1, Math.ceil((size - head.length) / line.length));
  return Buffer.from(head + line.repeat(lines), 'latin1');
}

export interface ClientOptions {
  readonly port: () => number;
  /** The generation of the mailtrail instance currently running. */
  readonly generation: () => number;
  readonly runId: string;
  readonly random: () => number;
  /** Reply wait before a client gives up on a connection (well above the relay deadline). */
  readonly replyTimeoutMs: number;
}

/**
 * Runs client number `index` until `stop` resolves to true. Pushes one entry per message attempted
 * into `log`; connection attempts that fail before any message are counted in `stats`.
 */
export async function runClient(
  index: number,
  opts: ClientOptions,
  log: ClientMessage[],
  stats: { connectRefused: number; greetingRefused: number; connections: number },
  stopped: () => boolean,
): Promise<void> {
  let seq = 0;
  while (!stopped()) {
    const socket = await connect(opts.port());
    if (!socket) {
      stats.connectRefused += 1;
      await new Promise((r) => setTimeout(r, 30 + opts.random() * 70));
      continue;
    }
    const generation = opts.generation();
    const conn = new Connection(socket);
    stats.connections += 1;
    try {
      const greeting = await conn.reply(opts.replyTimeoutMs);
      if (greeting?.code !== 220) {
        stats.greetingRefused += 1;
        continue;
      }
      conn.send(`EHLO soak-client-${index}.example${CRLF}`);
      if ((await conn.reply(opts.replyTimeoutMs))?.code !== 250) continue;
      const perConnection = 1 + Math.floor(opts.random() * 4);
      for (let m = 0; m < perConnection && !stopped(); m++) {
        const messageId = `soak-${opts.runId}-${index}-${seq++}@app.example`;
        const open = await sendOne(conn, messageId, index, generation, opts, log);
        if (!open) break;
      }
      conn.send(`QUIT${CRLF}`);
      await conn.reply(2_000);
    } finally {
      conn.close();
    }
  }
}

/** One message over an open session. Returns false when the session is over. */
async function sendOne(conn: Connection, messageId: string, client: number, generation: number, opts: ClientOptions, log: ClientMessage[]): Promise<boolean> {
  const recipients = 1 + Math.floor(opts.random() * 3);
  const to = Array.from({ length: recipients }, (_, i) => `rcpt${i}-${client}@dest.example`);
  // Mostly small, now and then big enough that a reset mid-DATA really cuts the body.
  const size = opts.random() < 0.1 ? 300_000 + Math.floor(opts.random() * 200_000) : 500 + Math.floor(opts.random() * 8_000);
  const entry: ClientMessage = { messageId, client, generation, recipients, size, stage: 'refused', dotSent: false, code: null, text: null, id: null };
  log.push(entry);
  const refused = (r: Reply | null): boolean => {
    entry.code = r?.code ?? null;
    entry.text = r?.text ?? null;
    return r !== null && r.code !== 421;
  };

  conn.send(`MAIL FROM:<soak@app.example>${CRLF}`);
  const mail = await conn.reply(opts.replyTimeoutMs);
  if (mail?.code !== 250) return refused(mail);
  let accepted = 0;
  let lastRefusal: Reply | null = null;
  for (const rcpt of to) {
    conn.send(`RCPT TO:<${rcpt}>${CRLF}`);
    const r = await conn.reply(opts.replyTimeoutMs);
    if (r === null || r.code === 421) return refused(r);
    if (r.code === 250) accepted += 1;
    else lastRefusal = r;
  }
  if (accepted === 0) {
    refused(lastRefusal);
    conn.send(`RSET${CRLF}`);
    return (await conn.reply(opts.replyTimeoutMs)) !== null;
  }
  conn.send(`DATA${CRLF}`);
  const data = await conn.reply(opts.replyTimeoutMs);
  if (data?.code !== 354) return refused(data);
  conn.send(Buffer.concat([soakMessage(messageId, size, to), Buffer.from(`.${CRLF}`)]));
  entry.dotSent = true;
  const final = await conn.reply(opts.replyTimeoutMs);
  if (final === null) {
    entry.stage = 'no-reply';
    return false;
  }
  entry.stage = 'replied';
  entry.code = final.code;
  entry.text = final.text;
  entry.id = ID_IN_REPLY.exec(final.text)?.[1] ?? null;
  return final.code !== 421;
}
