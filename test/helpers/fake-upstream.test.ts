/**
 * Sanity tests of the test helpers themselves, over real sockets: each fault knob of the fake
 * upstream as a plain nodemailer client sees it, the raw upstream, the raw client, the PKI and the
 * corpus. If these fail, every integration test built on the helpers is suspect.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { createHash, X509Certificate } from 'node:crypto';
import { makeTestPki, type TestPki } from './pki.js';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.js';
import { startRawUpstream } from './raw-upstream.js';
import { sendMessage, smtpTalk } from './smtp-client.js';
import { big, corpus } from './corpus.js';

const FROM = 'sender@client.test';
const TO = ['rcpt@upstream.test'];
const RAW = Buffer.from(
  'From: <sender@client.test>\r\nTo: <rcpt@upstream.test>\r\nSubject: hi\r\nMessage-ID: <1@client.test>\r\n' +
    'Date: Tue, 01 Apr 2025 12:00:00 +0000\r\n\r\nHello.\r\n',
);

let pki: TestPki;
beforeAll(async () => {
  pki = await makeTestPki();
});
afterAll(async () => {
  await pki.cleanup();
});

describe('fake upstream, plain SMTP', () => {
  let up: FakeUpstream;
  beforeAll(async () => {
    up = await startFakeUpstream();
  });
  afterEach(async () => {
    await up.resetFaults();
    up.clearRecords();
  });
  afterAll(async () => {
    await up.close();
  });

  test('A healthy upstream accepts the message and records its exact bytes', async () => {
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW });
    expect(r).toMatchObject({ ok: true, code: 250 });
    expect(r.response).toMatch(/^250 Ok: queued as [0-9A-F]{10}$/);
    expect(up.messages).toHaveLength(1);
    const m = up.messages[0]!;
    expect(m.raw.equals(RAW)).toBe(true);
    expect(m.sha256).toBe(createHash('sha256').update(RAW).digest('hex'));
    expect(m).toMatchObject({ from: FROM, to: TO, secure: false, user: null, bodyType: '7bit' });
    expect(up.connections).toBe(1);
    expect(up.transactions).toBe(1);
  });

  test('While refusing, connects fail with ECONNREFUSED, and accept() listens on the same port again', async () => {
    const port = up.port;
    await up.setFaults({ refuse: true });
    const r = await sendMessage({ port, from: FROM, to: TO, raw: RAW });
    expect(r).toMatchObject({ ok: false, code: null, errorCode: 'ESOCKET', command: 'CONN' });
    expect(!r.ok && (r.error as Error & { originalCode?: string }).originalCode).toBe('ECONNREFUSED');
    await up.accept();
    expect(up.port).toBe(port);
    expect((await sendMessage({ port, from: FROM, to: TO, raw: RAW })).ok).toBe(true);
  });

  test('A 421 greeting reaches the client and the connection is closed', async () => {
    up.faults.greeting = '421';
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW });
    expect(r).toMatchObject({ ok: false, code: 421 });
    const c = await smtpTalk(up.port);
    expect((await c.expect(421)).text).toMatch(/^4\.3\.2 /);
    await c.waitClosed(1000);
  });

  test('A 554 greeting reaches the client', async () => {
    await up.setFaults({ greeting: '554' });
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW });
    expect(r).toMatchObject({ ok: false, code: 554 });
  });

  test('A hanging greeting makes the client time out with no reply', async () => {
    up.faults.greeting = 'hang';
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW, timeoutMs: 300 });
    expect(r).toMatchObject({ ok: false, code: null, errorCode: 'ETIMEDOUT' });
    expect(up.connections).toBe(1);
  });

  test('A 554 at DATA is passed to the client; the upstream received the body but did not accept it', async () => {
    up.faults.data = { code: 554, text: '5.7.1 Message rejected as spam' };
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW });
    expect(r).toMatchObject({ ok: false, code: 554, errorCode: 'EMESSAGE', command: 'DATA' });
    expect(r.response).toBe('554 5.7.1 Message rejected as spam');
    expect(up.allData).toHaveLength(1);
    expect(up.allData[0]!.verdict).toEqual({ code: 554, text: '5.7.1 Message rejected as spam' });
    expect(up.messages).toHaveLength(0);
  });

  test('drop-after-dot gives a nodemailer error without a responseCode, yet the upstream has the whole message', async () => {
    up.faults.data = 'drop-after-dot';
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW });
    expect(r).toMatchObject({ ok: false, code: null, response: null });
    expect(['ECONNECTION', 'ESOCKET']).toContain(!r.ok && r.errorCode);
    expect(up.allData).toHaveLength(1);
    expect(up.allData[0]!.raw.equals(RAW)).toBe(true);
    expect(up.messages).toHaveLength(0);
  });

  test('hang-after-dot leaves the client waiting until its own timeout', async () => {
    up.faults.data = 'hang-after-dot';
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW, timeoutMs: 400 });
    expect(r).toMatchObject({ ok: false, code: null, errorCode: 'ETIMEDOUT' });
    expect(up.allData).toHaveLength(1);
    expect(up.messages).toHaveLength(0);
  });

  test('reset-mid-data cuts a large body off before the final dot', async () => {
    up.faults.data = 'reset-mid-data';
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: big(4 * 1024 * 1024) });
    expect(r).toMatchObject({ ok: false, code: null });
    expect(up.allData).toHaveLength(0);
  });

  test('drop-before-reply closes the connection after the DATA command, before any 354', async () => {
    up.faults.data = 'drop-before-reply';
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW });
    expect(r).toMatchObject({ ok: false, code: null });
    expect(up.allData).toHaveLength(0);
    expect(up.transactions).toBe(1);

    const c = await smtpTalk(up.port);
    await c.expect(220);
    c.send('HELO client.test');
    await c.expect(250);
    c.send(`MAIL FROM:<${FROM}>`);
    await c.expect(250);
    c.send(`RCPT TO:<${TO[0]}>`);
    await c.expect(250);
    c.send('DATA');
    await expect(c.expect(354)).rejects.toThrow(/closed before a full reply/);
  });

  test('MAIL FROM and RCPT replies are scripted; one refused recipient out of two still sends', async () => {
    up.faults.rcpt = (a) => (a.startsWith('bad') ? { code: 550, text: '5.1.1 No such user' } : null);
    const partial = await sendMessage({ port: up.port, from: FROM, to: ['good@upstream.test', 'bad@upstream.test'], raw: RAW });
    expect(partial).toMatchObject({ ok: true, accepted: ['good@upstream.test'], rejected: ['bad@upstream.test'] });
    expect(up.messages[0]!.to).toEqual(['good@upstream.test']);

    const none = await sendMessage({ port: up.port, from: FROM, to: ['bad@upstream.test'], raw: RAW });
    expect(none).toMatchObject({ ok: false, code: 550, errorCode: 'EENVELOPE', command: 'RCPT TO' });

    up.faults.mailFrom = { code: 553, text: '5.7.1 Sender not verified' };
    const sender = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW });
    expect(sender).toMatchObject({ ok: false, code: 553, command: 'MAIL FROM' });
    expect(sender.response).toBe('553 5.7.1 Sender not verified');
  });

  test('MAIL FROM drop closes the connection with no reply', async () => {
    up.faults.mailFrom = 'drop';
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW });
    expect(r).toMatchObject({ ok: false, code: null });
  });

  test('Delays and a custom queue id shape the final reply', async () => {
    up.faults.delayMs = { data: 150 };
    up.faults.queueId = () => '2.0.0 OK id=1a2b3c-0001';
    const t0 = Date.now();
    const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(r.response).toBe('250 2.0.0 OK id=1a2b3c-0001');
    up.faults.queueId = () => 'Q1';
    expect((await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW })).response).toBe('250 Ok: queued as Q1');
  });

  test('url() names the listening port', () => {
    expect(up.url()).toBe(`smtp://127.0.0.1:${up.port}`);
    expect(up.url({ user: 'a b', pass: 'p@ss' })).toBe(`smtp://a%20b:p%40ss@127.0.0.1:${up.port}`);
  });
});

describe('fake upstream, TLS and AUTH', () => {
  test('STARTTLS with the test CA: the session is secure and a drop after the dot still has no reply', async () => {
    const up = await startFakeUpstream({ tls: { key: pki.server.key, cert: pki.server.cert } });
    try {
      const ok = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW, ca: pki.ca, startTls: true });
      expect(ok).toMatchObject({ ok: true, code: 250 });
      expect(up.messages[0]!.secure).toBe(true);

      up.faults.data = 'drop-after-dot';
      const dropped = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW, ca: pki.ca, startTls: true });
      expect(dropped).toMatchObject({ ok: false, code: null });
      expect(up.allData).toHaveLength(2);
      expect(up.allData[1]!.secure).toBe(true);

      up.faults.data = 'reset-mid-data';
      const reset = await sendMessage({ port: up.port, from: FROM, to: TO, raw: big(4 * 1024 * 1024), ca: pki.ca, startTls: true });
      expect(reset).toMatchObject({ ok: false, code: null });
      expect(up.allData).toHaveLength(2);
    } finally {
      await up.close();
    }
  });

  test('Untrusted, wrong-name and expired certificates fail verification with their own causes', async () => {
    const cases = [
      [pki.untrusted, /self[- ]signed/i],
      [pki.wrongName, /wrong\.example|altnames/i],
      [pki.expired, /expired/i],
    ] as const;
    for (const [cert, cause] of cases) {
      const up = await startFakeUpstream({ tls: { key: cert.key, cert: cert.cert } });
      try {
        const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW, ca: pki.ca, startTls: true });
        expect(r.ok).toBe(false);
        expect(!r.ok && r.error.message).toMatch(cause);
        expect(up.allData).toHaveLength(0);
      } finally {
        await up.close();
      }
    }
  });

  test('Implicit TLS works with a raw client that trusts the test CA', async () => {
    const up = await startFakeUpstream({ implicitTls: true, tls: { key: pki.server.key, cert: pki.server.cert } });
    try {
      expect(up.url()).toMatch(/^smtps:\/\//);
      const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW, ca: pki.ca, secure: true });
      expect(r).toMatchObject({ ok: true });
      const c = await smtpTalk(up.port, '127.0.0.1', { tls: { ca: pki.ca } });
      await c.expect(220);
      c.close();
    } finally {
      await up.close();
    }
  });

  test('AUTH accepts the right credentials, refuses wrong ones with 535, and authReply overrides', async () => {
    const up = await startFakeUpstream({ auth: { user: 'relay', pass: 's3cret' } });
    try {
      expect(up.url()).toBe(`smtp://relay:s3cret@127.0.0.1:${up.port}`);
      const ok = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW, auth: { user: 'relay', pass: 's3cret' } });
      expect(ok.ok).toBe(true);
      expect(up.messages[0]!.user).toBe('relay');

      const wrong = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW, auth: { user: 'relay', pass: 'nope' } });
      expect(wrong).toMatchObject({ ok: false, code: 535, errorCode: 'EAUTH' });

      const anonymous = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW });
      expect(anonymous).toMatchObject({ ok: false, code: 530 });

      up.faults.authReply = { code: 454, text: '4.7.0 Temporary authentication failure' };
      const temp = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW, auth: { user: 'relay', pass: 's3cret' } });
      expect(temp).toMatchObject({ ok: false, code: 454, errorCode: 'EAUTH' });
    } finally {
      await up.close();
    }
  });

  test('STARTTLS through the raw client, then EHLO again over TLS', async () => {
    const up = await startFakeUpstream({ tls: { key: pki.server.key, cert: pki.server.cert } });
    try {
      const c = await smtpTalk(up.port);
      await c.expect(220);
      c.send('EHLO client.test');
      expect((await c.expect(250)).lines.join('\n')).toMatch(/STARTTLS/);
      c.send('STARTTLS');
      await c.expect(220);
      await c.startTls({ ca: pki.ca, servername: 'localhost' });
      c.send('EHLO client.test');
      const ehlo = await c.expect(250);
      expect(ehlo.lines.length).toBeGreaterThan(1);
      expect(ehlo.text).not.toMatch(/STARTTLS/);
      c.send('QUIT');
      await c.expect(221);
      c.close();
    } finally {
      await up.close();
    }
  });
});

describe('raw upstream', () => {
  test('Strict mode ends DATA only on CRLF.CRLF; lenient mode ends it on a bare-LF dot and runs the smuggled command', async () => {
    const smuggle = 'Subject: x\r\n\r\nbody\n.\nMAIL FROM:<evil@x.test>\r\nmore\r\n.\r\n';
    for (const lenientDataEnd of [false, true]) {
      const up = await startRawUpstream({ lenientDataEnd });
      try {
        const c = await smtpTalk(up.port);
        await c.expect(220);
        c.send('EHLO client.test');
        await c.expect(250);
        c.send('MAIL FROM:<a@client.test>');
        await c.expect(250);
        c.send('RCPT TO:<b@upstream.test>');
        await c.expect(250);
        c.send('DATA');
        await c.expect(354);
        c.sendRaw(smuggle);
        await c.expect(250);
        if (lenientDataEnd) {
          await c.expect(250); // the smuggled MAIL FROM
          expect(up.mailFromCount).toBe(2);
          expect(up.transactions[0]!.terminator).toBe('\n.\n');
          expect(up.transactions[0]!.body.toString()).toBe('Subject: x\r\n\r\nbody\n');
        } else {
          expect(up.mailFromCount).toBe(1);
          expect(up.transactions).toHaveLength(1);
          expect(up.transactions[0]!.body.toString()).toBe(smuggle.slice(0, -3));
        }
        c.close();
      } finally {
        await up.close();
      }
    }
  });

  test('Canned multi-line replies and dot-unstuffing, with a nodemailer client', async () => {
    const up = await startRawUpstream({ script: { '.': '250-2.0.0 Ok\n250 2.0.0 queued as RAW-42' } });
    try {
      const raw = Buffer.from('Subject: dots\r\n\r\n.\r\n..leading\r\nend\r\n');
      const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw });
      expect(r).toMatchObject({ ok: true });
      expect(r.response).toMatch(/queued as RAW-42/);
      expect(up.transactions[0]!.body.equals(raw)).toBe(true);
      expect(up.transactions[0]!.wire.toString()).toContain('\r\n..\r\n...leading\r\n');
      expect(up.commands[0]).toBe('EHLO client.test');
    } finally {
      await up.close();
    }
  });

  test('A garbage greeting fails the nodemailer client without a reply code', async () => {
    const up = await startRawUpstream({ greeting: Buffer.from('hello there\r\n') });
    try {
      const r = await sendMessage({ port: up.port, from: FROM, to: TO, raw: RAW, timeoutMs: 1000 });
      expect(r.ok).toBe(false);
      expect(up.mailFromCount).toBe(0);
    } finally {
      await up.close();
    }
  });
});

describe('corpus and PKI', () => {
  test('Every corpus message reaches the fake upstream byte for byte', async () => {
    const up = await startFakeUpstream();
    try {
      for (const m of corpus()) {
        const r = await sendMessage({ port: up.port, from: m.from, to: m.to, raw: m.raw, use8BitMime: m.eightBit });
        expect(r.ok, m.name).toBe(true);
        const got = up.messages.at(-1)!;
        expect(got.raw.equals(m.expected), m.name).toBe(true);
        expect(got.bodyType, m.name).toBe(m.eightBit ? '8bitmime' : '7bit');
      }
    } finally {
      await up.close();
    }
  });

  test('big() is exactly the requested size, deterministic, CRLF-terminated and has no overlong line', () => {
    const a = big(1_000_003);
    expect(a.length).toBe(1_000_003);
    expect(a.equals(big(1_000_003))).toBe(true);
    expect(a.subarray(-2).toString()).toBe('\r\n');
    expect(
      Math.max(
        ...a
          .toString('latin1')
          .split('\r\n')
          .map((l) => l.length),
      ),
    ).toBeLessThanOrEqual(998);
  });

  test('The test PKI has a CA, a server cert for localhost and 127.0.0.1, and an expired cert', () => {
    const ca = new X509Certificate(pki.ca);
    const server = new X509Certificate(pki.server.cert);
    expect(ca.ca).toBe(true);
    expect(server.checkIssued(ca)).toBe(true);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(new X509Certificate(pki.untrusted.cert).checkIssued(ca)).toBe(false);
    expect(new Date(new X509Certificate(pki.expired.cert).validTo).getTime()).toBeLessThan(Date.now());
  });
});
