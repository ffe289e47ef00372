import { PassThrough } from 'node:stream';
import DataStream from 'nodemailer/lib/smtp-connection/data-stream';
import { describe, expect, it } from 'vitest';
import { DirectBody, passesUnchanged } from '../../src/upstream/direct-body.js';

/** What nodemailer's DataStream makes of `body`: the bytes that go on the wire after the 354. */
function viaDataStream(body: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const ds = new DataStream();
    const out: Buffer[] = [];
    ds.on('data', (c: Buffer) => out.push(c));
    ds.on('end', () => resolve(Buffer.concat(out)));
    ds.end(body);
  });
}

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('bodies that need no dot-stuffing', () => {
  it('are what DataStream passes through unchanged, over thousands of random bodies of dots and line ends', async () => {
    const rand = random(7);
    const pieces = ['\r\n', '\r', '\n', '.', '..', 'a', 'line of text', '\r\n.', '\r\n..', 'x\r\n'];
    let clean = 0;
    for (let n = 0; n < 4000; n++) {
      const parts: string[] = [];
      const count = 1 + Math.floor(rand() * 12);
      for (let i = 0; i < count; i++) parts.push(pieces[Math.floor(rand() * pieces.length)]!);
      const body = Buffer.from(parts.join(''));
      const wire = await viaDataStream(body);
      const unchanged = wire.equals(Buffer.concat([body, Buffer.from('.\r\n')]));
      // Never says "unchanged" when DataStream would change something.
      if (passesUnchanged(body)) expect(unchanged, JSON.stringify(body.toString())).toBe(true);
      if (passesUnchanged(body)) clean += 1;
    }
    expect(clean).toBeGreaterThan(100);
  });

  it('recognise an ordinary message with CRLF line ends', () => {
    expect(passesUnchanged(Buffer.from('From: a@example.com\r\nSubject: hi\r\n\r\nHello.\r\nBye\r\n'))).toBe(true);
  });

  it.each([
    ['a line starting with a dot', 'Subject: x\r\n\r\n.hidden\r\n'],
    ['a first line starting with a dot', '.x\r\n'],
    ['a bare LF', 'a\nb\r\n'],
    ['a bare CR', 'a\rb\r\n'],
    ['no CRLF at the end', 'a\r\nb'],
    ['an empty body', ''],
  ])('exclude %s', (_what, text) => {
    expect(passesUnchanged(Buffer.from(text))).toBe(false);
  });
});

describe('DirectBody', () => {
  /** Drives DirectBody as nodemailer does: a DataStream piped to the socket, then body.pipe(dataStream). */
  async function send(body: Buffer): Promise<{ wire: Buffer; phaseAfterPipe: string; direct: DirectBody }> {
    const socket = new PassThrough();
    const wire: Buffer[] = [];
    socket.on('data', (c: Buffer) => wire.push(c));
    const ds = new DataStream();
    ds.pipe(socket, { end: false });
    const direct = new DirectBody(body);
    direct.attach(socket as never);
    const ended = new Promise((r) => ds.once('end', r));
    direct.pipe(ds);
    const phaseAfterPipe = direct.phase;
    await ended;
    await new Promise((r) => setImmediate(r));
    return { wire: Buffer.concat(wire), phaseAfterPipe, direct };
  }

  it('puts a small body and its dot on the socket in one corked write, exactly as DataStream would', async () => {
    const body = Buffer.from('Subject: direct\r\n\r\n' + 'line of the body\r\n'.repeat(100));
    const { wire, phaseAfterPipe } = await send(body);
    // Nothing but the body and the terminator: the DataStream's own output went nowhere.
    expect(wire.equals(await viaDataStream(body))).toBe(true);
    expect(phaseAfterPipe).toBe('sent');
  });

  it('sends a large body first and marks it sent once the socket took it, then the dot', async () => {
    const body = Buffer.from('Subject: direct\r\n\r\n' + 'line of the body\r\n'.repeat(10_000));
    const { wire, phaseAfterPipe, direct } = await send(body);
    expect(wire.equals(await viaDataStream(body))).toBe(true);
    expect(phaseAfterPipe).toBe('body');
    expect(direct.phase).toBe('sent');
  });
});
