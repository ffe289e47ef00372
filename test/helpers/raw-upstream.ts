/**
 * A minimal scripted SMTP server on `net`, for byte-exact and malformed behaviour that smtp-server
 * will not produce: garbage or multi-line greetings, odd replies, and a `lenientDataEnd` mode that
 * ends DATA on bare-LF/bare-CR dot lines like broken legacy servers. The latter makes SMTP
 * smuggling observable: if a relay lets `\n.\n` through, this server sees a second MAIL FROM.
 *
 * Replies are canned per verb (`script`), in the spirit of nodemailer's own `startServer(replies)`.
 *
 * @example
 * const up = await startRawUpstream({ lenientDataEnd: true });
 * // ... relay a message whose body contains "\n.\nMAIL FROM:<evil@x>\n..." ...
 * expect(up.mailFromCount).toBe(1);
 * expect(up.transactions).toHaveLength(1);
 * await up.close();
 *
 * @example
 * const up = await startRawUpstream({ greeting: Buffer.from('hello?\r\n') });        // garbage greeting
 * const up2 = await startRawUpstream({ script: { RCPT: '550-5.1.1 No such user\n550 5.1.1 Really' } });
 */
import net from 'node:net';

/** Context passed to a reply function. */
export interface RawCommand {
  /** The command line without its line ending. */
  line: string;
  /** Upper-case first word: EHLO, MAIL, RCPT, DATA, ... ('.' for the reply after the body). */
  verb: string;
  /** Connection number, from 1. */
  connection: number;
  /** Transactions completed on the whole server so far. */
  transactions: readonly RawTransaction[];
}

/**
 * A reply:
 * - a string: one or more lines separated by "\n" or "\r\n"; sent with CRLF endings (a final CRLF is added);
 * - a Buffer: written exactly as it is (no CRLF added);
 * - `'drop'`: close the connection without a reply; `'hang'`: never reply (later commands are not read either);
 * - a function returning any of these (or a promise of one, for delays).
 */
export type RawReply = string | Buffer | ((cmd: RawCommand) => RawReplyValue | Promise<RawReplyValue>);
type RawReplyValue = string | Buffer;

export interface RawTransaction {
  /** The MAIL FROM line as received. */
  mailFrom: string;
  /** The RCPT TO lines as received. */
  rcptTo: string[];
  /**
   * The bytes after the DATA command line up to the terminating dot, as on the wire (still
   * dot-stuffed). The line break in front of the dot is part of it, as in smtp-server's stream.
   */
  wire: Buffer;
  /** `wire` with dot-stuffing removed (a leading ".." becomes "."; after bare LFs too in lenient mode). */
  body: Buffer;
  /** The terminator that ended the body, e.g. "\r\n.\r\n" or "\n.\n". */
  terminator: string;
  connection: number;
}

export interface RawUpstreamOptions {
  /** The greeting. Default `220 raw-upstream.test ESMTP`. 'hang' sends nothing, 'drop' closes at once. */
  greeting?: RawReply;
  /**
   * Canned replies by verb (upper case). Keys: EHLO, HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT,
   * STARTTLS, AUTH, any other verb, and '.' for the reply after the body. Verbs not listed get the
   * defaults: EHLO a multi-line 250 (PIPELINING, 8BITMIME, SMTPUTF8, SIZE), MAIL/RCPT/RSET/NOOP 250,
   * DATA 354, '.' `250 2.0.0 Ok: queued as RAW<n>`, QUIT 221 and close, anything else 502.
   * A DATA reply other than 354 keeps the server in command mode.
   */
  script?: Record<string, RawReply>;
  /**
   * End DATA on any of "\r\n.\r\n", "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n" (earliest wins), like
   * broken legacy servers; whatever follows is read as commands. Also accepts bare-LF command lines.
   * Default false: only "\r\n.\r\n" ends DATA.
   */
  lenientDataEnd?: boolean;
}

export interface RawUpstream {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Every command line received, in order (across connections), without line endings. */
  readonly commands: string[];
  /** Completed DATA transactions. */
  readonly transactions: RawTransaction[];
  /** MAIL FROM commands received. */
  readonly mailFromCount: number;
  /** TCP connections accepted. */
  readonly connections: number;
  /** Every byte received, per connection (index 0 = first connection). Built on each read. */
  readonly received: Buffer[];
  url(): string;
  close(): Promise<void>;
}

const STRICT_END = ['\r\n.\r\n'];
const LENIENT_ENDS = ['\r\n.\r\n', '\n.\n', '\r.\r', '\n.\r\n', '\r\n.\n'];

function defaultReply(verb: string, ctx: { n: number }): RawReplyValue {
  switch (verb) {
    case 'EHLO':
      return '250-raw-upstream.test\n250-PIPELINING\n250-8BITMIME\n250-SMTPUTF8\n250 SIZE 52428800';
    case 'HELO':
      return '250 raw-upstream.test';
    case 'MAIL':
      return '250 2.1.0 Ok';
    case 'RCPT':
      return '250 2.1.5 Ok';
    case 'DATA':
      return '354 End data with <CR><LF>.<CR><LF>';
    case '.':
      return `250 2.0.0 Ok: queued as RAW${ctx.n}`;
    case 'RSET':
    case 'NOOP':
      return '250 2.0.0 Ok';
    case 'QUIT':
      return '221 2.0.0 Bye';
    default:
      return '502 5.5.2 Error: command not recognized';
  }
}

function encodeReply(value: RawReplyValue): Buffer {
  if (Buffer.isBuffer(value)) return value;
  return Buffer.from(value.split(/\r?\n/).join('\r\n') + '\r\n', 'utf8');
}

/**
 * Removes dot-stuffing: a "." at the start of a line was added by the client. Strict mode knows
 * only CRLF line breaks; lenient mode also treats a bare LF as one.
 */
function unstuff(wire: Buffer, lenient: boolean): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  let lineStart = 0;
  while (lineStart < wire.length) {
    if (wire[lineStart] === 0x2e) {
      parts.push(wire.subarray(pos, lineStart));
      pos = lineStart + 1;
    }
    let nl = wire.indexOf(0x0a, lineStart);
    if (!lenient) while (nl >= 0 && (nl === 0 || wire[nl - 1] !== 0x0d)) nl = wire.indexOf(0x0a, nl + 1);
    if (nl < 0) break;
    lineStart = nl + 1;
  }
  parts.push(wire.subarray(pos));
  return Buffer.concat(parts);
}

/** An append-only byte buffer with amortised O(1) appends and O(1) consumption from the front. */
class ByteQueue {
  private store = Buffer.alloc(64 * 1024);
  private start = 0;
  private end = 0;
  get length(): number {
    return this.end - this.start;
  }
  view(): Buffer {
    return this.store.subarray(this.start, this.end);
  }
  append(chunk: Buffer): void {
    if (this.end + chunk.length > this.store.length) {
      const live = this.length;
      const cap = Math.max(this.store.length, (live + chunk.length) * 2);
      const next = cap > this.store.length ? Buffer.alloc(cap) : this.store;
      this.store.copy(next, 0, this.start, this.end);
      this.store = next;
      this.start = 0;
      this.end = live;
    }
    chunk.copy(this.store, this.end);
    this.end += chunk.length;
  }
  consume(n: number): void {
    this.start += n;
    if (this.start === this.end) this.start = this.end = 0;
  }
}

/**
 * Finds the earliest data terminator in `buf`, scanning from `from`. Returns where the body ends
 * (after the line break in front of the dot) and where the next command starts. The DATA
 * command's own line end counts as the line break in front of a dot on the very first line, so
 * ".\r\n" at once is an empty body.
 */
function findEnd(buf: Buffer, from: number, ends: string[]): { bodyEnd: number; next: number; terminator: string } | null {
  {
    const head = Buffer.concat([Buffer.from('\r\n'), buf.subarray(0, 4)]);
    let best: string | null = null;
    for (const t of ends) if (head.indexOf(t, 0, 'latin1') === 0 && (!best || t.length > best.length)) best = t;
    if (best) return { bodyEnd: 0, next: best.length - 2, terminator: best };
  }
  let found: { at: number; terminator: string } | null = null;
  for (const t of ends) {
    const i = buf.indexOf(t, Math.max(0, from - 5), 'latin1');
    if (i >= 0 && (!found || i < found.at || (i === found.at && t.length > found.terminator.length))) {
      found = { at: i, terminator: t };
    }
  }
  if (!found) return null;
  // the line break in front of the dot belongs to the body (as with smtp-server)
  const { at, terminator } = found;
  return { bodyEnd: at + terminator.indexOf('.'), next: at + terminator.length, terminator };
}

/**
 * Starts a scripted raw SMTP server on 127.0.0.1 with a random port.
 *
 * @example
 * const up = await startRawUpstream({ script: { '.': '250 2.0.0 OK id=1xYz' } });
 */
export async function startRawUpstream(opts: RawUpstreamOptions = {}): Promise<RawUpstream> {
  const commands: string[] = [];
  const transactions: RawTransaction[] = [];
  const received: Buffer[][] = [];
  const sockets = new Set<net.Socket>();
  const counters = { mailFrom: 0, connections: 0 };
  const ends = opts.lenientDataEnd ? LENIENT_ENDS : STRICT_END;
  const script = opts.script ?? {};

  const server = net.createServer((socket) => {
    counters.connections++;
    const connection = counters.connections;
    const connChunks: Buffer[] = [];
    received.push(connChunks);
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));

    const queue = new ByteQueue();
    let scanned = 0; // bytes of the body already searched for a terminator
    let mode: 'command' | 'data' | 'hung' | 'closed' = 'command';
    let busy = false; // a reply is being produced (async script function)
    let tx: { mailFrom: string; rcptTo: string[] } | null = null;

    // RawReplyValue includes the strings 'drop' and 'hang', which this treats as actions.
    const write = (value: RawReplyValue): boolean => {
      if (value === 'drop') {
        mode = 'closed';
        socket.destroy();
        return false;
      }
      if (value === 'hang') {
        mode = 'hung';
        return false;
      }
      if (!socket.destroyed) socket.write(encodeReply(value));
      return true;
    };

    const resolveReply = async (verb: string, line: string): Promise<RawReplyValue> => {
      const r = script[verb];
      if (r === undefined) return defaultReply(verb, { n: transactions.length });
      if (typeof r === 'function') return r({ line, verb, connection, transactions });
      return r;
    };

    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        while (mode === 'command' || mode === 'data') {
          if (mode === 'data') {
            const buf = queue.view();
            const end = findEnd(buf, scanned, ends);
            if (!end) {
              scanned = buf.length;
              return;
            }
            const wire = Buffer.from(buf.subarray(0, end.bodyEnd));
            queue.consume(end.next);
            scanned = 0;
            const t: RawTransaction = {
              mailFrom: tx?.mailFrom ?? '',
              rcptTo: tx?.rcptTo ?? [],
              wire,
              body: unstuff(wire, !!opts.lenientDataEnd),
              terminator: end.terminator,
              connection,
            };
            transactions.push(t);
            tx = null;
            mode = 'command';
            if (!write(await resolveReply('.', '.'))) return;
            continue;
          }
          const buf = queue.view();
          const nl = buf.indexOf(0x0a);
          if (nl < 0) return;
          let line = buf.subarray(0, nl).toString('latin1');
          queue.consume(nl + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') continue;
          commands.push(line);
          const verb = (line.split(' ')[0] ?? '').toUpperCase();
          if (verb === 'MAIL') {
            counters.mailFrom++;
            tx = { mailFrom: line, rcptTo: [] };
          } else if (verb === 'RCPT') {
            tx?.rcptTo.push(line);
          } else if (verb === 'RSET') {
            tx = null;
          }
          const reply = await resolveReply(verb, line);
          if (!write(reply)) return;
          if (verb === 'DATA' && /^354/.test(reply.toString())) {
            mode = 'data';
            scanned = 0;
          }
          if (verb === 'QUIT' && script.QUIT === undefined) {
            mode = 'closed';
            socket.end();
            return;
          }
        }
      } finally {
        busy = false;
      }
    };

    socket.on('data', (chunk: Buffer) => {
      connChunks.push(chunk);
      if (mode === 'hung' || mode === 'closed') return;
      queue.append(chunk);
      void pump();
    });

    void (async () => {
      const g = opts.greeting ?? '220 raw-upstream.test ESMTP';
      const value = typeof g === 'function' ? await g({ line: '', verb: '', connection, transactions }) : g;
      if (value === 'hang') {
        mode = 'hung';
        return;
      }
      write(value);
    })();
  });
  server.on('error', () => undefined);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    host: '127.0.0.1',
    port,
    commands,
    transactions,
    get mailFromCount() {
      return counters.mailFrom;
    },
    get connections() {
      return counters.connections;
    },
    get received() {
      return received.map((chunks) => Buffer.concat(chunks));
    },
    url: () => `smtp://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
