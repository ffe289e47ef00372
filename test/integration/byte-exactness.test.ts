/**
 * Byte-exactness: what the client hands over is what the upstream stores, and the record's
 * `message.sha256` is the hash of exactly those bytes.
 *
 * Both sides of the relay speak SMTP, so the comparison is between unstuffed bodies: smtp-server
 * removes the client's dot-stuffing before mailtrail sees the message, nodemailer stuffs again on
 * the way out, and the fake upstream's smtp-server unstuffs once more before storing. A leading-dot
 * line survives only if all three steps agree. The raw client below does its own dot-stuffing, so
 * nothing on the client side normalises the bytes; nodemailer on the client side is the other way in.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { big, corpus, type CorpusMessage } from '../helpers/corpus.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { smtpTalk } from '../helpers/smtp-client.js';
import { startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import type { RelayRecord } from '../../src/audit/records.js';

const MiB = 1024 * 1024;
const CRLF = Buffer.from('\r\n');

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** Dot-stuffing as RFC 5321 §4.5.2 says: a line (after CRLF, or the very first) that starts with "." gets another. */
function dotStuff(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  for (let lineStart = 0; lineStart < body.length;) {
    if (body[lineStart] === 0x2e) {
      parts.push(body.subarray(from, lineStart), Buffer.from('.'));
      from = lineStart;
    }
    const crlf = body.indexOf(CRLF, lineStart);
    if (crlf < 0) break;
    lineStart = crlf + 2;
  }
  parts.push(body.subarray(from));
  return Buffer.concat(parts);
}

/** The mailtrail transaction id in a reply text: `... (id 01J...)`. */
function transactionId(reply: string): string {
  const id = /\(id ([0-9A-Z]{26})\)/.exec(reply)?.[1];
  if (!id) throw new Error(`no transaction id in reply: ${reply}`);
  return id;
}

/**
 * One transaction over a raw socket: the body is dot-stuffed here and sent in a single write,
 * followed by the terminating dot. `body` must end with CRLF (SMTP framing needs it).
 */
async function sendRaw(port: number, m: { from: string; to: string[]; body: Buffer; eightBit?: boolean }): Promise<string> {
  if (!m.body.subarray(-2).equals(CRLF)) throw new Error('sendRaw: the body must end with CRLF');
  const c = await smtpTalk(port);
  try {
    await c.expect(220);
    c.send('EHLO raw-client.test');
    await c.expect(250);
    c.send(`MAIL FROM:<${m.from}>${m.eightBit ? ' BODY=8BITMIME' : ''}`);
    await c.expect(250);
    for (const to of m.to) {
      c.send(`RCPT TO:<${to}>`);
      await c.expect(250);
    }
    c.send('DATA');
    await c.expect(354);
    c.sendRaw(Buffer.concat([dotStuff(m.body), Buffer.from('.\r\n')]));
    const reply = await c.expect(250, 10_000);
    c.send('QUIT');
    await c.expect(221);
    return reply.lines.join('\n');
  } finally {
    c.close();
  }
}

describe('byte-exact relaying', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  const recordOf = async (reply: string): Promise<RelayRecord> => {
    const id = transactionId(reply);
    const record = (await relay.relayRecords()).find((r) => r.id === id);
    if (!record) throw new Error(`no relay record ${id}`);
    return record;
  };

  /** The upstream stored `expected`, and the record hashed exactly what the client handed over. */
  const expectExact = async (reply: string, expected: Buffer): Promise<void> => {
    expect(upstream.messages).toHaveLength(1);
    const stored = upstream.messages[0]!;
    expect(stored.raw.length).toBe(expected.length);
    expect(stored.sha256).toBe(sha256(expected));
    expect(stored.raw.equals(expected)).toBe(true);
    const record = await recordOf(reply);
    expect(record.outcome).toBe('delivered');
    expect(record.message.size).toBe(expected.length);
    expect(record.message.sha256).toBe(sha256(expected));
  };

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({ upstreams: [{ name: 'primary', port: upstream.port }] });
  });
  afterAll(async () => {
    await relay?.stop();
    await upstream?.close();
  });
  afterEach(async () => {
    await upstream.resetFaults();
    upstream.clearRecords();
  });

  // nodemailer on the client side appends the missing final CRLF itself, so `expected` is what
  // the client hands over for every corpus message.
  describe.each(corpus().map((m) => [m.name, m] as [string, CorpusMessage]))('the %s message', (_name, m) => {
    it('reaches the upstream byte for byte when a nodemailer client sends it', async () => {
      const res = await relay.send({ from: m.from, to: m.to, raw: m.raw, use8BitMime: m.eightBit });
      expect(res.ok).toBe(true);
      await expectExact(res.response!, m.expected);
    });

    it('reaches the upstream byte for byte when a raw client dot-stuffs and sends it', async () => {
      const reply = await sendRaw(relay.port, { from: m.from, to: m.to, body: m.expected, eightBit: m.eightBit });
      await expectExact(reply, m.expected);
    });
  });

  it('keeps every kind of leading-dot line when the raw client sends them already stuffed on the wire', async () => {
    const m = corpus().find((x) => x.name === 'leading-dots')!;
    const wire = dotStuff(m.raw).toString('latin1');
    // the stuffed wire form really is different: every dot line got one more dot
    expect(wire).toContain('\r\n..\r\n...\r\n..hidden\r\n....\r\n.. a dot and a space\r\n');
    const reply = await sendRaw(relay.port, { from: m.from, to: m.to, body: m.raw });
    await expectExact(reply, m.raw);
    const text = upstream.messages[0]!.raw.toString('latin1');
    expect(text).toContain('\r\n.\r\n..\r\n.hidden\r\n...\r\n. a dot and a space\r\n');
  });

  it('relays a 30 MiB message byte for byte through a spill file and removes the file afterwards', async () => {
    const raw = big(30 * MiB);
    const expected = sha256(raw);
    // Hold the upstream's verdict a moment so the spill file is observable while the relay waits.
    await upstream.setFaults({ delayMs: { data: 300 } });
    const seen = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const f of await relay.tempFiles()) seen.add(f);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const t0 = performance.now();
    const res = await relay.send({ from: 'big@client.test', to: ['rcpt@upstream.test'], raw, timeoutMs: 20_000 });
    const ms = performance.now() - t0;
    sampling = false;
    await sampler;
    expect(res.ok).toBe(true);
    console.info(`30 MiB relayed byte-exact in ${Math.round(ms)} ms (including a 300 ms upstream delay)`);

    expect(upstream.messages).toHaveLength(1);
    const stored = upstream.messages[0]!;
    expect(stored.raw.length).toBe(raw.length);
    expect(stored.sha256).toBe(expected);
    const record = await recordOf(res.response!);
    expect(record.message).toMatchObject({ size: raw.length, sha256: expected });
    expect([...seen].some((f) => /^mailtrail-[0-9a-f]{24}\.eml$/.test(f))).toBe(true);
    expect(await relay.tempFiles()).toEqual([]);
  }, 20_000);

  it('forwards BODY=8BITMIME and arbitrary 8-bit bytes (not valid UTF-8) unchanged', async () => {
    const high = Buffer.alloc(128);
    for (let i = 0; i < 128; i++) high[i] = 0x80 + i;
    const body = Buffer.concat([
      Buffer.from(
        'From: <sender@client.test>\r\nTo: <rcpt@upstream.test>\r\nSubject: latin-1 bytes\r\n' +
          'Message-ID: <eight-bit-latin1@client.test>\r\nDate: Tue, 01 Apr 2025 12:00:00 +0000\r\n' +
          'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n',
        'latin1',
      ),
      Buffer.from('Gr\xfc\xdfe aus K\xf6ln.\r\n', 'latin1'),
      high,
      CRLF,
    ]);
    const reply = await sendRaw(relay.port, { from: 'sender@client.test', to: ['rcpt@upstream.test'], body, eightBit: true });
    await expectExact(reply, body);
    expect(upstream.messages[0]!.bodyType).toBe('8bitmime');
    expect(upstream.messages[0]!.mailFromArgs.BODY).toBe('8BITMIME');
  });

  it('does not claim BODY=8BITMIME upstream when the client did not declare it', async () => {
    const m = corpus().find((x) => x.name === 'leading-dots')!;
    const reply = await sendRaw(relay.port, { from: m.from, to: m.to, body: m.raw });
    await expectExact(reply, m.raw);
    expect(upstream.messages[0]!.bodyType).toBe('7bit');
    expect(upstream.messages[0]!.mailFromArgs.BODY).toBeUndefined();
  });
});
