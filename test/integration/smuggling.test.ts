/**
 * SMTP smuggling (SEC Consult, December 2023): a body that carries a non-standard end-of-data
 * sequence (`\n.\r\n`, `\r\n.\n`, `\n.\n`, `\r.\r`) followed by a complete second transaction. A
 * receiver that ends DATA on such a sequence reads the rest as commands and delivers a forged
 * message. mailtrail sits between two receivers: smtp-server on its side (which ends DATA only on
 * `\r\n.\r\n`) and whatever upstream it relays to, possibly a lenient one.
 *
 * What mailtrail actually sends (nodemailer's DataStream): a bare LF or bare CR
 * becomes CRLF, and the dot that now starts a line is stuffed. Each of the four sequences reaches
 * the upstream as `\r\n..\r\n`, which every receiver reads as a content line holding one dot. The
 * audit record keeps the hash of what the client sent; the upstream stores the normalised bytes.
 *
 * The client side is a raw socket, so nothing normalises the attack bytes before mailtrail sees them.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { startRawUpstream, type RawUpstream } from '../helpers/raw-upstream.js';
import { openData, smtpTalk, type SmtpTalk } from '../helpers/smtp-client.js';
import { startRelay, type RunningRelay } from '../helpers/relay-harness.js';

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

const SEQUENCES = [
  { name: 'LF dot CRLF', seq: '\n.\r\n' },
  { name: 'CRLF dot LF', seq: '\r\n.\n' },
  { name: 'LF dot LF', seq: '\n.\n' },
  { name: 'CR dot CR', seq: '\r.\r' },
] as const;

const SMUGGLED =
  'MAIL FROM:<evil@x>\r\n' +
  'RCPT TO:<victim@y>\r\n' +
  'DATA\r\n' +
  'From: <ceo@bank.example>\r\n' +
  'To: <victim@y>\r\n' +
  'Subject: smuggled\r\n' +
  '\r\n' +
  'Please wire the money.\r\n';

/** The message a client hands over: an innocent part, the end-of-data look-alike, a whole second transaction. */
function smugglingBody(seq: string, tag: string, filler = ''): Buffer {
  return bytes(
    'From: <app@client.test>\r\n' +
      'To: <rcpt@upstream.test>\r\n' +
      `Subject: innocent ${tag}\r\n` +
      `Message-ID: <smuggle-${tag}@client.test>\r\n` +
      'Date: Tue, 01 Apr 2025 12:00:00 +0000\r\n' +
      '\r\n' +
      filler +
      'Hello, nothing to see here.' +
      seq +
      SMUGGLED,
  );
}

/** What a compliant relay sends for `body`: every look-alike becomes an unambiguous dot line. */
function normalised(body: Buffer, seq: string): Buffer {
  return bytes(body.toString('latin1').replace(seq, '\r\n.\r\n'));
}

/** EHLO, one envelope, DATA and 354. The attack bytes go out with sendRaw, undotted and unnormalised. */
function openAttack(port: number, tag: string): Promise<SmtpTalk> {
  return openData(port, { from: `app-${tag}@client.test`, helo: 'attacker.test' });
}

/**
 * Sends `body` plus the real terminator and returns the one reply. Then QUIT must be answered by
 * 221 straight away: had mailtrail itself ended DATA early, the smuggled commands would have
 * produced replies of their own, queued ahead of it.
 */
async function smuggle(port: number, tag: string, body: Buffer, pieces: Buffer[] = [body]): Promise<string> {
  const c = await openAttack(port, tag);
  try {
    for (const [i, piece] of pieces.entries()) {
      if (i > 0) await sleep(15); // separate TCP segments on loopback
      c.sendRaw(piece);
    }
    c.sendRaw('.\r\n'); // every body here ends with CRLF
    const reply = await c.expect(250, 10_000);
    c.send('QUIT');
    await c.expect(221);
    return reply.lines.join('\n');
  } finally {
    c.close();
  }
}

const slug = (name: string): string => name.toLowerCase().replace(/ /g, '-');

function transactionId(reply: string): string {
  const id = /\(id ([0-9A-Z]{26})\)/.exec(reply)?.[1];
  if (!id) throw new Error(`no transaction id in reply: ${reply}`);
  return id;
}

describe('SMTP smuggling through mailtrail to a strict upstream (smtp-server)', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({ upstreams: [{ port: upstream.port }] });
  });
  afterAll(async () => {
    await relay?.stop();
    await upstream?.close();
  });
  afterEach(() => {
    upstream.clearRecords();
  });

  it.each(SEQUENCES)('$name in the body gives one upstream transaction, one record, and the sequence arrives as a dot line', async ({ name, seq }) => {
    const tag = `strict-${slug(name)}`;
    const body = smugglingBody(seq, tag);
    const reply = await smuggle(relay.port, tag, body);

    expect(upstream.transactions).toBe(1);
    expect(upstream.allData).toHaveLength(1);
    const stored = upstream.allData[0]!;
    expect(stored.from).toBe(`app-${tag}@client.test`);
    expect(stored.to).toEqual(['rcpt@upstream.test']);
    expect(stored.raw.equals(normalised(body, seq))).toBe(true);

    const records = (await relay.relayRecords()).filter((r) => r.message.messageId === `<smuggle-${tag}@client.test>`);
    expect(records).toHaveLength(1);
    expect(records[0]!.id).toBe(transactionId(reply));
    expect(records[0]!.outcome).toBe('delivered');
    // the record hashes what the client sent, not the normalised bytes the upstream stored
    expect(records[0]!.message).toMatchObject({ size: body.length, sha256: sha256(body) });
    expect((await relay.relayRecords()).some((r) => r.from === 'evil@x')).toBe(false);
  });
});

describe('SMTP smuggling through mailtrail to a lenient upstream (ends DATA on bare LF/CR dot lines)', () => {
  let upstream: RawUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startRawUpstream({ lenientDataEnd: true });
    relay = await startRelay({ upstreams: [{ port: upstream.port }] });
  });
  afterAll(async () => {
    await relay?.stop();
    await upstream?.close();
  });

  // Control: without mailtrail in between, this upstream does fall for every sequence, so the
  // assertions below would see a second transaction if mailtrail passed the bytes on unchanged.
  it.each(SEQUENCES)('(control) $name sent straight to the lenient upstream does smuggle a second transaction', async ({ seq }) => {
    const before = { tx: upstream.transactions.length, mail: upstream.mailFromCount };
    const c = await openAttack(upstream.port, 'control');
    try {
      c.sendRaw(Buffer.concat([smugglingBody(seq, 'control'), bytes('.\r\n')]));
      await c.expect(250); // the cut-off first message
      await c.expect(250); // MAIL FROM:<evil@x>
      await c.expect(250); // RCPT TO:<victim@y>
      await c.expect(354); // DATA
      await c.expect(250); // the smuggled message
    } finally {
      c.close();
    }
    expect(upstream.mailFromCount - before.mail).toBe(2);
    expect(upstream.transactions.length - before.tx).toBe(2);
    expect(upstream.transactions.at(-1)!.mailFrom).toBe('MAIL FROM:<evil@x>');
  });

  it.each(SEQUENCES)('$name in the body never reaches the upstream as a terminator', async ({ name, seq }) => {
    const tag = `lenient-${slug(name)}`;
    const before = { tx: upstream.transactions.length, mail: upstream.mailFromCount, commands: upstream.commands.length };
    const body = smugglingBody(seq, tag);
    const reply = await smuggle(relay.port, tag, body);

    expect(upstream.mailFromCount - before.mail).toBe(1);
    expect(upstream.transactions.length - before.tx).toBe(1);
    const commands = upstream.commands.slice(before.commands);
    expect(commands.filter((c) => /^MAIL /i.test(c))).toEqual([`MAIL FROM:<app-${tag}@client.test> SIZE=${body.length}`]);
    expect(commands.some((c) => /evil@x|victim@y/i.test(c))).toBe(false);

    const tx = upstream.transactions.at(-1)!;
    expect(tx.mailFrom).toMatch(new RegExp(`^MAIL FROM:<app-${tag}@client\\.test>`));
    expect(tx.terminator).toBe('\r\n.\r\n');
    // Exactly these bytes go over the wire: the look-alike as a stuffed dot line, the smuggled
    // commands as plain content lines, then the real terminator.
    const wire = tx.wire.toString('latin1');
    expect(wire).toContain('Hello, nothing to see here.\r\n..\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n');
    expect(wire.endsWith('Please wire the money.\r\n')).toBe(true);
    expect(wire).not.toMatch(/[^\r]\n|\r[^\n]/);
    expect(tx.body.equals(normalised(body, seq))).toBe(true);

    const records = (await relay.relayRecords()).filter((r) => r.message.messageId === `<smuggle-${tag}@client.test>`);
    expect(records).toHaveLength(1);
    expect(records[0]!.id).toBe(transactionId(reply));
    expect(records[0]!.message.sha256).toBe(sha256(body));
  });

  it('relays two client transactions on one session as exactly two upstream transactions and two records', async () => {
    const before = { tx: upstream.transactions.length, mail: upstream.mailFromCount, records: (await relay.relayRecords()).length };
    const c = await smtpTalk(relay.port);
    try {
      await c.expect(220);
      c.send('EHLO attacker.test');
      await c.expect(250);
      for (const [i, { seq }] of [SEQUENCES[2], SEQUENCES[3]].entries()) {
        c.send(`MAIL FROM:<app-two-${i}@client.test>`);
        await c.expect(250);
        c.send('RCPT TO:<rcpt@upstream.test>');
        await c.expect(250);
        c.send('DATA');
        await c.expect(354);
        c.sendRaw(Buffer.concat([smugglingBody(seq, `two-${i}`), bytes('.\r\n')]));
        await c.expect(250, 10_000);
      }
      c.send('QUIT');
      await c.expect(221);
    } finally {
      c.close();
    }
    expect(upstream.mailFromCount - before.mail).toBe(2);
    expect(upstream.transactions.length - before.tx).toBe(2);
    expect(upstream.transactions.slice(-2).map((t) => t.mailFrom)).toEqual([
      'MAIL FROM:<app-two-0@client.test> SIZE=' + smugglingBody(SEQUENCES[2].seq, 'two-0').length,
      'MAIL FROM:<app-two-1@client.test> SIZE=' + smugglingBody(SEQUENCES[3].seq, 'two-1').length,
    ]);
    expect((await relay.relayRecords()).length - before.records).toBe(2);
  });

  it.each([
    { name: 'LF dot LF', seq: '\n.\n' },
    { name: 'CR dot CR', seq: '\r.\r' },
  ])('$name split across TCP segments at every position still arrives as a dot line', async ({ seq }) => {
    for (let cut = 1; cut < seq.length; cut++) {
      const tag = `split-${seq.charCodeAt(0)}-${cut}`;
      const body = smugglingBody(seq, tag);
      const at = body.indexOf(bytes(seq)) + cut;
      const before = { tx: upstream.transactions.length, mail: upstream.mailFromCount };
      await smuggle(relay.port, tag, body, [body.subarray(0, at), body.subarray(at)]);
      expect(upstream.mailFromCount - before.mail).toBe(1);
      expect(upstream.transactions.length - before.tx).toBe(1);
      expect(upstream.transactions.at(-1)!.body.equals(normalised(body, seq))).toBe(true);
    }
  });

  it.each([
    { name: 'LF dot LF', seq: '\n.\n', where: 'in memory', boundary: 65_536 },
    { name: 'CR dot CR', seq: '\r.\r', where: 'in memory', boundary: 65_536 },
    { name: 'LF dot LF', seq: '\n.\n', where: 'in a spill file', boundary: 20 * 65_536 },
    { name: 'CR dot CR', seq: '\r.\r', where: 'in a spill file', boundary: 20 * 65_536 },
  ])('$name straddling a 64 KiB read boundary of a body kept $where still arrives as a dot line', async ({ seq, boundary }) => {
    // mailtrail hands the buffered body (a Buffer, or the spill file past 1 MiB) to nodemailer in
    // 64 KiB chunks; nodemailer must carry the last byte of one chunk over to the next to see a
    // bare LF/CR followed by a dot.
    for (let cut = 1; cut < seq.length; cut++) {
      const tag = `chunk-${boundary}-${seq.charCodeAt(0)}-${cut}`;
      const head = smugglingBody(seq, tag).indexOf(bytes('Hello, nothing'));
      const innocent = 'Hello, nothing to see here.'.length;
      const body = smugglingBody(seq, tag, fillerLines(boundary - cut - innocent - head));
      expect(body.indexOf(bytes(seq))).toBe(boundary - cut);
      const before = { tx: upstream.transactions.length, mail: upstream.mailFromCount };
      await smuggle(relay.port, tag, body);
      expect(upstream.mailFromCount - before.mail).toBe(1);
      expect(upstream.transactions.length - before.tx).toBe(1);
      expect(upstream.transactions.at(-1)!.body.equals(normalised(body, seq))).toBe(true);
    }
    expect(await relay.tempFiles()).toEqual([]);
  });
});

/** CRLF-terminated lines of `x` adding up to exactly `n` bytes (n ≥ 2). */
function fillerLines(n: number): string {
  const lines: string[] = [];
  let left = n;
  while (left > 0) {
    const len = Math.min(78, left - 2);
    // never leave a remainder of 1 (a line needs at least its CRLF)
    const take = left - (len + 2) === 1 ? len - 1 : len;
    lines.push('x'.repeat(take) + '\r\n');
    left -= take + 2;
  }
  return lines.join('');
}
