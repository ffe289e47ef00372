import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RejectRecord } from '../../src/audit/records.js';
import { hashPassword } from '../../src/auth/password.js';
import type { ClientsConfig, UserConfig } from '../../src/config/types.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { smtpTalk, type SmtpTalk, type TalkReply } from '../helpers/smtp-client.js';

// The harness's clients connect from 127.0.0.1. Listing only 10.0.0.0/8 puts them outside the
// networks that may relay without AUTH.
const OUTSIDE = ['10.0.0.0/8'];
const ULID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)$/;

const PASSWORDS = {
  billing: 'Billing-Pa55-7f3kq',
  alerts: 'Alerts-Pa55-w9z2m',
  hashed: 'Hashed-Pa55-r4t8y',
  anyone: 'Anyone-Pa55-c6v1b',
} as const;
const WRONG_PASSWORD = 'Wrong-Pa55-x0x0x0';
const UPSTREAM_AUTH = { user: 'relay-account', pass: 'Upstream-Secret-5k2j' };

function user(username: string, allowedSenders: string[], password: string | null, passwordHash: string | null = null): UserConfig {
  return { username, password, passwordHash, allowedSenders, mode: null };
}

function authPlain(username: string, password: string): string {
  return `AUTH PLAIN ${Buffer.from(`\0${username}\0${password}`).toString('base64')}`;
}

/** Connects, reads the greeting and says EHLO. */
async function session(port: number): Promise<SmtpTalk> {
  const c = await smtpTalk(port);
  await c.expect(220);
  c.send('EHLO client.test');
  await c.expect(250);
  return c;
}

/** Connects, upgrades with STARTTLS and says EHLO again. */
async function secureSession(port: number, ca: string): Promise<SmtpTalk> {
  const c = await session(port);
  c.send('STARTTLS');
  await c.expect(220);
  await c.startTls({ ca });
  c.send('EHLO client.test');
  await c.expect(250);
  return c;
}

async function command(c: SmtpTalk, line: string): Promise<TalkReply> {
  c.send(line);
  return c.expect();
}

/** A whole transaction after MAIL was accepted; returns the final reply. */
async function finishTransaction(c: SmtpTalk, to: string, raw: Buffer): Promise<TalkReply> {
  c.send(`RCPT TO:<${to}>`);
  await c.expect(250);
  c.send('DATA');
  await c.expect(354);
  c.sendRaw(Buffer.concat([raw, Buffer.from('.\r\n')]));
  return c.expect();
}

/** The reject record whose id the reply text carries; fails the test when there is none. */
async function rejectFor(relay: RunningRelay, reply: TalkReply | string): Promise<RejectRecord> {
  const text = typeof reply === 'string' ? reply : reply.text;
  const m = ULID_IN_REPLY.exec(text);
  expect(m, `reply without "(id <ULID>)": ${text}`).not.toBeNull();
  const record = (await relay.rejectRecords()).find((r) => r.id === m![1]);
  expect(record, `no reject record with the id in: ${text}`).toBeDefined();
  return record!;
}

function clients(c: Partial<ClientsConfig>): Partial<ClientsConfig> {
  return c;
}

describe('admission', () => {
  let pki: TestPki;
  let upstream: FakeUpstream;
  let passwordHash: string;

  beforeAll(async () => {
    [pki, upstream, passwordHash] = await Promise.all([makeTestPki(), startFakeUpstream({ auth: UPSTREAM_AUTH }), hashPassword(PASSWORDS.hashed)]);
  });
  afterAll(async () => {
    await upstream.close();
    await pki.cleanup();
  });

  /** A relay with the shared certificate (so `pki.ca` verifies it) and the shared upstream. */
  function relayWith(spec: Omit<Parameters<typeof startRelay>[0], 'upstreams' | 'tls'>): Promise<RunningRelay> {
    return startRelay({
      ...spec,
      upstreams: [{ name: 'provider', port: upstream.port, auth: UPSTREAM_AUTH }],
      tls: { cert: pki.server.certPath, key: pki.server.keyPath },
    });
  }

  describe('a client outside the networks, no AUTH users', () => {
    let relay: RunningRelay;
    beforeAll(async () => {
      relay = await relayWith({ clients: clients({ networks: OUTSIDE }) });
    });
    afterAll(() => relay.stop());

    it('refuses MAIL with 554 5.7.1 and records relay_denied with the command and the sender', async () => {
      const c = await session(relay.port);
      const reply = await command(c, 'MAIL FROM:<app@example.com>');
      c.close();
      expect(reply.code).toBe(554);
      expect(reply.text).toMatch(/^5\.7\.1 /);
      const record = await rejectFor(relay, reply);
      expect(record).toMatchObject({
        type: 'reject',
        class: 'relay_denied',
        command: 'MAIL',
        from: 'app@example.com',
        source: 'policy',
        clientReply: { code: 554, enhanced: '5.7.1' },
        client: { ip: '127.0.0.1', helo: 'client.test', user: null },
      });
    });

    it('refuses a nodemailer client too, and nothing reaches the upstream', async () => {
      upstream.clearRecords();
      const res = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage(), ca: pki.ca });
      expect(res).toMatchObject({ ok: false, code: 554, command: 'MAIL FROM' });
      expect(upstream.transactions).toBe(0);
    });

    it('relays nothing when a whole transaction is pipelined behind the refused MAIL', async () => {
      upstream.clearRecords();
      const c = await session(relay.port);
      c.sendRaw(
        Buffer.concat([Buffer.from('MAIL FROM:<app@example.com>\r\nRCPT TO:<ana@example.org>\r\nDATA\r\n'), simpleMessage(), Buffer.from('.\r\nQUIT\r\n')]),
      );
      const mail = await c.expect();
      expect(mail.code).toBe(554);
      await c.waitClosed();
      expect(upstream.transactions).toBe(0);
      expect(upstream.allData).toHaveLength(0);
    });
  });

  describe('AUTH users and TLS required', () => {
    let relay: RunningRelay;
    beforeAll(async () => {
      relay = await relayWith({
        clients: clients({
          networks: OUTSIDE,
          requireTls: true,
          users: [
            user('billing', ['@example.com'], PASSWORDS.billing),
            user('alerts', ['alerts@example.org'], PASSWORDS.alerts),
            user('hashed', [], null, passwordHash),
            user('anyone', [], PASSWORDS.anyone),
          ],
        }),
      });
    });
    afterAll(() => relay.stop());

    it('refuses MAIL before STARTTLS with 530 5.7.0 and records tls_required', async () => {
      const c = await session(relay.port);
      const reply = await command(c, 'MAIL FROM:<app@example.com>');
      c.close();
      expect(reply.code).toBe(530);
      expect(reply.text).toMatch(/^5\.7\.0 /);
      expect(await rejectFor(relay, reply)).toMatchObject({
        class: 'tls_required',
        command: 'MAIL',
        from: 'app@example.com',
        source: 'policy',
        client: { tls: null },
      });
    });

    it('does not advertise AUTH before STARTTLS, so a client never offers its password in clear', async () => {
      const c = await smtpTalk(relay.port);
      await c.expect(220);
      c.send('EHLO client.test');
      const ehlo = await c.expect(250);
      c.close();
      expect(ehlo.lines.join('\n')).toContain('STARTTLS');
      expect(ehlo.lines.join('\n')).not.toMatch(/\bAUTH\b/);
    });

    it('advertises AUTH PLAIN and LOGIN after STARTTLS', async () => {
      const c = await session(relay.port);
      c.send('STARTTLS');
      await c.expect(220);
      await c.startTls({ ca: pki.ca });
      c.send('EHLO client.test');
      const ehlo = await c.expect(250);
      c.close();
      expect(ehlo.lines).toContainEqual(expect.stringMatching(/^250[- ]AUTH PLAIN LOGIN$/));
    });

    it('refuses AUTH before STARTTLS with 538 5.7.11 and records tls_required', async () => {
      const c = await session(relay.port);
      const reply = await command(c, authPlain('billing', PASSWORDS.billing));
      c.close();
      expect(reply.code).toBe(538);
      expect(reply.text).toMatch(/^5\.7\.11 /);
      expect(await rejectFor(relay, reply)).toMatchObject({ class: 'tls_required', command: 'AUTH', source: 'policy' });
    });

    it('refuses AUTH LOGIN before STARTTLS before asking for the username and password', async () => {
      // RFC 4954 §4: 538 answers the AUTH command itself. Prompting (334) first makes the client
      // send its credentials in clear before it is told that this was not allowed.
      const c = await session(relay.port);
      const first = await command(c, 'AUTH LOGIN');
      const transcript = [`AUTH LOGIN → ${first.lines.join(' | ')}`];
      if (first.code === 334) {
        const b64 = (s: string): string => Buffer.from(s).toString('base64');
        transcript.push(`<username> → ${(await command(c, b64('billing'))).lines.join(' | ')}`);
        transcript.push(`<password> → ${(await command(c, b64(PASSWORDS.billing))).lines.join(' | ')}`);
      }
      c.close();
      expect(first.code, `the credentials were asked for in clear: ${transcript.join('; ')}`).toBe(538);
    });

    it('refuses an unauthenticated MAIL after STARTTLS with 530 5.7.0 and records auth_required', async () => {
      const c = await secureSession(relay.port, pki.ca);
      const reply = await command(c, 'MAIL FROM:<app@example.com>');
      c.close();
      expect(reply.code).toBe(530);
      expect(reply.text).toMatch(/^5\.7\.0 /);
      expect(await rejectFor(relay, reply)).toMatchObject({
        class: 'auth_required',
        command: 'MAIL',
        from: 'app@example.com',
        client: { user: null, tls: { protocol: expect.stringMatching(/^TLSv1\.[23]$/) } },
      });
    });

    it('accepts AUTH PLAIN after STARTTLS and relays the message, recording the user and the TLS facts', async () => {
      upstream.clearRecords();
      const c = await secureSession(relay.port, pki.ca);
      expect((await command(c, authPlain('billing', PASSWORDS.billing))).code).toBe(235);
      expect((await command(c, 'MAIL FROM:<invoices@example.com>')).code).toBe(250);
      const final = await finishTransaction(c, 'ana@example.org', simpleMessage({ messageId: '<auth-ok@example.com>' }));
      c.close();
      expect(final.code).toBe(250);
      expect(upstream.messages.map((m) => [m.from, m.to])).toEqual([['invoices@example.com', ['ana@example.org']]]);
      const record = (await relay.relayRecords()).find((r) => r.message.messageId === '<auth-ok@example.com>')!;
      expect(final.text).toContain(record.id);
      expect(record.client).toMatchObject({ user: 'billing', tls: { protocol: expect.stringMatching(/^TLSv1\.[23]$/) } });
      expect(record.outcome).toBe('delivered');
    });

    it('relays for a nodemailer client that authenticates after STARTTLS', async () => {
      const res = await relay.send({
        from: 'invoices@example.com',
        to: ['ana@example.org'],
        raw: simpleMessage(),
        ca: pki.ca,
        startTls: true,
        auth: { user: 'billing', pass: PASSWORDS.billing },
      });
      expect(res).toMatchObject({ ok: true, code: 250 });
    });

    it('refuses a wrong password with 535 5.7.8 and records auth_failed with the username tried, never the password', async () => {
      const c = await secureSession(relay.port, pki.ca);
      const reply = await command(c, authPlain('billing', WRONG_PASSWORD));
      c.close();
      expect(reply.code).toBe(535);
      expect(reply.text).toMatch(/^5\.7\.8 /);
      expect(await rejectFor(relay, reply)).toMatchObject({
        class: 'auth_failed',
        command: 'AUTH',
        source: 'policy',
        authUser: 'billing',
        // Not authenticated: client.user is only ever an identity that logged in.
        client: { user: null },
      });
      const trail = await readFile(relay.auditFile, 'utf8');
      expect(trail).not.toContain(WRONG_PASSWORD);
      expect(trail).not.toContain(Buffer.from(WRONG_PASSWORD).toString('base64'));
      expect(trail).not.toContain(authPlain('billing', WRONG_PASSWORD).slice('AUTH PLAIN '.length));
    });

    it('refuses an unknown user with the same 535 5.7.8 as a wrong password', async () => {
      const c = await secureSession(relay.port, pki.ca);
      const reply = await command(c, authPlain('nobody', PASSWORDS.billing));
      c.close();
      expect(reply.code).toBe(535);
      expect(reply.text).toMatch(/^5\.7\.8 Authentication credentials invalid/);
      expect(await rejectFor(relay, reply)).toMatchObject({ class: 'auth_failed', authUser: 'nobody', client: { user: null } });
    });

    it('refuses a sender the user may not use with 553 5.7.1 and records sender_denied', async () => {
      const c = await secureSession(relay.port, pki.ca);
      expect((await command(c, authPlain('billing', PASSWORDS.billing))).code).toBe(235);
      const reply = await command(c, 'MAIL FROM:<ceo@example.net>');
      c.close();
      expect(reply.code).toBe(553);
      expect(reply.text).toMatch(/^5\.7\.1 /);
      expect(await rejectFor(relay, reply)).toMatchObject({
        class: 'sender_denied',
        command: 'MAIL',
        from: 'ceo@example.net',
        client: { user: 'billing' },
      });
    });

    it('lets an "@domain" rule match any local part of that domain, the domain in any case, and nothing else', async () => {
      const c = await secureSession(relay.port, pki.ca);
      expect((await command(c, authPlain('billing', PASSWORDS.billing))).code).toBe(235);
      const verdicts: Record<string, number> = {};
      for (const from of ['invoices@example.com', 'Any.One@EXAMPLE.COM', 'x@sub.example.com', 'x@example.com.evil.test', 'x@notexample.com', '']) {
        const reply = await command(c, `MAIL FROM:<${from}>`);
        verdicts[from] = reply.code;
        if (reply.code === 250) expect((await command(c, 'RSET')).code).toBe(250);
      }
      c.close();
      expect(verdicts).toEqual({
        'invoices@example.com': 250,
        'Any.One@EXAMPLE.COM': 250,
        'x@sub.example.com': 553,
        'x@example.com.evil.test': 553,
        'x@notexample.com': 553,
        '': 553,
      });
    });

    it('lets an exact-address rule match that address only, with the local part compared exactly', async () => {
      const c = await secureSession(relay.port, pki.ca);
      expect((await command(c, authPlain('alerts', PASSWORDS.alerts))).code).toBe(235);
      const verdicts: Record<string, number> = {};
      for (const from of ['alerts@example.org', 'alerts@Example.ORG', 'Alerts@example.org', 'other@example.org', 'alerts@example.com']) {
        const reply = await command(c, `MAIL FROM:<${from}>`);
        verdicts[from] = reply.code;
        if (reply.code === 250) expect((await command(c, 'RSET')).code).toBe(250);
      }
      c.close();
      expect(verdicts).toEqual({
        'alerts@example.org': 250,
        'alerts@Example.ORG': 250,
        'Alerts@example.org': 553,
        'other@example.org': 553,
        'alerts@example.com': 553,
      });
    });

    it('lets a user with no allowedSenders send as anyone, including the null sender', async () => {
      const c = await secureSession(relay.port, pki.ca);
      expect((await command(c, authPlain('anyone', PASSWORDS.anyone))).code).toBe(235);
      expect((await command(c, 'MAIL FROM:<someone@anywhere.test>')).code).toBe(250);
      expect((await command(c, 'RSET')).code).toBe(250);
      expect((await command(c, 'MAIL FROM:<>')).code).toBe(250);
      c.close();
    });

    it('authenticates a passwordHash user and relays', async () => {
      upstream.clearRecords();
      const c = await secureSession(relay.port, pki.ca);
      expect((await command(c, authPlain('hashed', PASSWORDS.hashed))).code).toBe(235);
      expect((await command(c, 'MAIL FROM:<app@example.com>')).code).toBe(250);
      const final = await finishTransaction(c, 'ana@example.org', simpleMessage());
      c.close();
      expect(final.code).toBe(250);
      expect(upstream.messages).toHaveLength(1);
    });

    it('refuses a wrong password for a passwordHash user', async () => {
      const c = await secureSession(relay.port, pki.ca);
      const reply = await command(c, authPlain('hashed', WRONG_PASSWORD));
      c.close();
      expect(reply.code).toBe(535);
      expect(await rejectFor(relay, reply)).toMatchObject({ class: 'auth_failed', authUser: 'hashed', client: { user: null } });
    });

    it('keeps every secret out of the trail: client passwords, their encodings, the hash, upstream credentials', async () => {
      // Drive the paths that see secrets: AUTH success, AUTH failure, AUTH before TLS, a relay with upstream AUTH.
      const ok = await relay.send({
        from: 'invoices@example.com',
        to: ['ana@example.org'],
        raw: simpleMessage(),
        ca: pki.ca,
        startTls: true,
        auth: { user: 'billing', pass: PASSWORDS.billing },
      });
      expect(ok.ok).toBe(true);
      const bad = await secureSession(relay.port, pki.ca);
      expect((await command(bad, authPlain('alerts', `${PASSWORDS.alerts}-typo`))).code).toBe(535);
      bad.close();
      const plain = await session(relay.port);
      expect((await command(plain, authPlain('anyone', PASSWORDS.anyone))).code).toBe(538);
      plain.close();

      const trail = await readFile(relay.auditFile, 'utf8');
      const secrets = [
        ...Object.values(PASSWORDS),
        `${PASSWORDS.alerts}-typo`,
        passwordHash,
        passwordHash.split('$').at(-1)!,
        UPSTREAM_AUTH.pass,
        ...Object.values(PASSWORDS).map((p) => Buffer.from(p).toString('base64')),
        ...Object.entries(PASSWORDS).map(([u, p]) => Buffer.from(`\0${u}\0${p}`).toString('base64')),
        Buffer.from(`\0${UPSTREAM_AUTH.user}\0${UPSTREAM_AUTH.pass}`).toString('base64'),
        Buffer.from(UPSTREAM_AUTH.pass).toString('base64'),
      ];
      for (const secret of secrets) expect(trail, 'a secret is in the trail').not.toContain(secret);
    });

    it('puts the id of its reject record in the text of every refusal of its own, and records that text', async () => {
      const replies: TalkReply[] = [];
      const plain = await session(relay.port);
      replies.push(await command(plain, 'MAIL FROM:<app@example.com>')); // tls_required
      replies.push(await command(plain, authPlain('billing', PASSWORDS.billing))); // tls_required (AUTH)
      plain.close();
      const secure = await secureSession(relay.port, pki.ca);
      replies.push(await command(secure, 'MAIL FROM:<app@example.com>')); // auth_required
      replies.push(await command(secure, authPlain('billing', WRONG_PASSWORD))); // auth_failed
      expect((await command(secure, authPlain('billing', PASSWORDS.billing))).code).toBe(235);
      replies.push(await command(secure, 'MAIL FROM:<app@example.net>')); // sender_denied
      secure.close();

      expect(replies.map((r) => r.code)).toEqual([530, 538, 530, 535, 553]);
      const classes: string[] = [];
      for (const reply of replies) {
        const record = await rejectFor(relay, reply);
        expect(record.clientReply.code).toBe(reply.code);
        expect(reply.text).toBe(`${record.clientReply.enhanced} ${record.clientReply.text}`);
        expect(record.clientReply.text).toMatch(new RegExp(` \\(id ${record.id}\\)$`));
        classes.push(record.class);
      }
      expect(classes).toEqual(['tls_required', 'tls_required', 'auth_required', 'auth_failed', 'sender_denied']);
    });
  });

  describe('no open relay under any combination of options', () => {
    const combos: { users: boolean; requireTls: ClientsConfig['requireTls']; allowInsecureAuth: boolean }[] = [];
    for (const users of [false, true]) {
      for (const requireTls of [true, false, 'except-loopback'] as const) {
        for (const allowInsecureAuth of [false, true]) combos.push({ users, requireTls, allowInsecureAuth });
      }
    }

    it.each(combos)(
      'never accepts MAIL from an unauthenticated client outside the networks (users: $users, requireTls: $requireTls, allowInsecureAuth: $allowInsecureAuth)',
      async ({ users, requireTls, allowInsecureAuth }) => {
        const relay = await relayWith({
          clients: clients({
            networks: OUTSIDE,
            requireTls,
            allowInsecureAuth,
            users: users ? [user('billing', [], PASSWORDS.billing)] : [],
          }),
        });
        try {
          upstream.clearRecords();
          const denied = users ? { code: 530, cls: 'auth_required' } : { code: 554, cls: 'relay_denied' };
          const tlsFirst = requireTls === true;

          const plain = await session(relay.port);
          const plainReply = await command(plain, 'MAIL FROM:<app@example.com>');
          expect(plainReply.code).toBe(tlsFirst ? 530 : denied.code);
          expect((await rejectFor(relay, plainReply)).class).toBe(tlsFirst ? 'tls_required' : denied.cls);
          // The rest of a transaction, pipelined, gets nowhere either.
          plain.sendRaw(Buffer.concat([Buffer.from('RCPT TO:<ana@example.org>\r\nDATA\r\n'), simpleMessage(), Buffer.from('.\r\nQUIT\r\n')]));
          await plain.waitClosed();

          const secure = await secureSession(relay.port, pki.ca);
          const secureReply = await command(secure, 'MAIL FROM:<app@example.com>');
          secure.close();
          expect(secureReply.code).toBe(denied.code);
          expect((await rejectFor(relay, secureReply)).class).toBe(denied.cls);

          const viaNodemailer = await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage(), ca: pki.ca });
          expect(viaNodemailer.ok).toBe(false);

          expect(upstream.transactions).toBe(0);
          expect(await relay.relayRecords()).toHaveLength(0);
        } finally {
          await relay.stop();
        }
      },
    );

    it('accepts MAIL from a listed network only after STARTTLS when TLS is required', async () => {
      const relay = await relayWith({ clients: clients({ networks: ['127.0.0.0/8'], requireTls: true }) });
      try {
        const plain = await session(relay.port);
        const refused = await command(plain, 'MAIL FROM:<app@example.com>');
        plain.close();
        expect(refused.code).toBe(530);
        expect((await rejectFor(relay, refused)).class).toBe('tls_required');
        const secure = await secureSession(relay.port, pki.ca);
        expect((await command(secure, 'MAIL FROM:<app@example.com>')).code).toBe(250);
        secure.close();
      } finally {
        await relay.stop();
      }
    });
  });

  describe('connection limits', () => {
    it('refuses a connection over the per-IP limit with 421 and records too_many_connections', async () => {
      const relay = await relayWith({ limits: { maxConnectionsPerIp: 2 } });
      const open: SmtpTalk[] = [];
      try {
        for (let i = 0; i < 2; i++) open.push(await session(relay.port));
        const third = await smtpTalk(relay.port);
        const reply = await third.expect();
        await third.waitClosed();
        expect(reply.code).toBe(421);
        expect(reply.text).toMatch(/^4\.7\.0 /);
        expect(await rejectFor(relay, reply)).toMatchObject({
          class: 'too_many_connections',
          command: 'CONNECT',
          source: 'policy',
          client: { ip: '127.0.0.1' },
        });
      } finally {
        for (const c of open) c.close();
        await relay.stop();
      }
    });

    it('frees a per-IP slot when a client leaves', async () => {
      const relay = await relayWith({ limits: { maxConnectionsPerIp: 2 } });
      const open: SmtpTalk[] = [];
      try {
        for (let i = 0; i < 2; i++) open.push(await session(relay.port));
        const refused = await smtpTalk(relay.port);
        expect((await refused.expect()).code).toBe(421);
        await refused.waitClosed();
        open.shift()!.close();
        await new Promise((r) => setTimeout(r, 100));
        const next = await smtpTalk(relay.port);
        open.push(next);
        expect((await next.expect()).code).toBe(220);
      } finally {
        for (const c of open) c.close();
        await relay.stop();
      }
    });

    it('refuses a connection over the total limit with 421 and records too_many_connections', async () => {
      const relay = await relayWith({ limits: { maxConnections: 2, maxConnectionsPerIp: 50 } });
      const open: SmtpTalk[] = [];
      try {
        for (let i = 0; i < 2; i++) open.push(await session(relay.port));
        const third = await smtpTalk(relay.port);
        const reply = await third.expect();
        await third.waitClosed();
        expect(reply.code).toBe(421);
        expect((await rejectFor(relay, reply)).class).toBe('too_many_connections');
      } finally {
        for (const c of open) c.close();
        await relay.stop();
      }
    });
  });

  describe('size and recipient limits', () => {
    const MAX_SIZE = 2000;
    let relay: RunningRelay;
    beforeAll(async () => {
      relay = await relayWith({ limits: { maxMessageSize: MAX_SIZE, maxRecipients: 2 } });
    });
    afterAll(() => relay.stop());

    it('refuses a declared SIZE over the limit at MAIL FROM with 552 and records it as a protocol refusal', async () => {
      const c = await session(relay.port);
      const reply = await command(c, `MAIL FROM:<app@example.com> SIZE=${MAX_SIZE + 1}`);
      c.close();
      expect(reply.code).toBe(552);
      const record = (await relay.rejectRecords()).find((r) => r.source === 'protocol' && r.clientReply.code === 552);
      expect(record).toMatchObject({ class: 'too_large', command: 'MAIL', source: 'protocol' });
    });

    it('answers a body over maxMessageSize with 552 5.3.4, records too_large and relays nothing', async () => {
      upstream.clearRecords();
      const raw = simpleMessage({ messageId: '<too-big@example.com>', body: 'x'.repeat(70).concat('\r\n').repeat(60) });
      expect(raw.length).toBeGreaterThan(MAX_SIZE);
      const c = await session(relay.port);
      expect((await command(c, 'MAIL FROM:<app@example.com>')).code).toBe(250);
      const final = await finishTransaction(c, 'ana@example.org', raw);
      c.close();
      expect(final.code).toBe(552);
      expect(final.text).toMatch(/^5\.3\.4 /);
      const record = (await relay.relayRecords()).find((r) => final.text.includes(r.id));
      expect(record).toMatchObject({ outcome: 'rejected', failure: { class: 'too_large' }, clientReply: { code: 552, enhanced: '5.3.4' } });
      // The relay record is the one record of this refusal: the protocol capture must not add a reject record.
      expect((await relay.rejectRecords()).filter((r) => r.session.id === record!.session.id)).toEqual([]);
      expect(upstream.transactions).toBe(0);
      expect(upstream.allData).toHaveLength(0);
    });

    it('refuses a recipient over maxRecipients with 452 and records too_many_recipients', async () => {
      const c = await session(relay.port);
      expect((await command(c, 'MAIL FROM:<app@example.com>')).code).toBe(250);
      expect((await command(c, 'RCPT TO:<a@example.org>')).code).toBe(250);
      expect((await command(c, 'RCPT TO:<b@example.org>')).code).toBe(250);
      const reply = await command(c, 'RCPT TO:<c@example.org>');
      c.close();
      expect(reply.code).toBe(452);
      const record = (await relay.rejectRecords()).find((r) => r.clientReply.code === 452);
      expect(record).toMatchObject({ class: 'too_many_recipients', command: 'RCPT' });
    });
  });

  describe('protocol violations', () => {
    let relay: RunningRelay;
    beforeAll(async () => {
      relay = await relayWith({});
    });
    afterAll(() => relay.stop());

    it('records RCPT before MAIL as protocol_violation with the command', async () => {
      const c = await session(relay.port);
      const reply = await command(c, 'RCPT TO:<ana@example.org>');
      c.close();
      expect(reply.code).toBe(503);
      const record = (await relay.rejectRecords()).find((r) => r.clientReply.code === 503);
      expect(record).toMatchObject({ class: 'protocol_violation', command: 'RCPT', source: 'protocol' });
    });

    it('records a MAIL FROM syntax error as protocol_violation', async () => {
      const c = await session(relay.port);
      const reply = await command(c, 'MAIL FROM:no-brackets-here');
      c.close();
      expect(reply.code).toBe(501);
      const record = (await relay.rejectRecords()).find((r) => r.clientReply.code === 501);
      expect(record).toMatchObject({ class: 'protocol_violation', command: 'MAIL', source: 'protocol' });
    });

    it.each([
      { what: 'a duplicate MAIL parameter', lines: ['MAIL FROM:<app@example.com> BODY=8BITMIME BODY=7BIT'], code: 501 },
      { what: 'RCPT before MAIL', lines: ['RCPT TO:<ana@example.org>'], code: 503 },
      { what: 'DATA before RCPT', lines: ['MAIL FROM:<app@example.com>', 'DATA'], code: 503 },
    ])("puts the id of its reject record in smtp-server's own refusal of $what, and records that text", async ({ lines, code }) => {
      const c = await session(relay.port);
      let reply: TalkReply | null = null;
      for (const line of lines) reply = await command(c, line);
      c.close();
      expect(reply!.code).toBe(code);
      const record = await rejectFor(relay, reply!);
      expect(record).toMatchObject({ class: 'protocol_violation', source: 'protocol', clientReply: { code } });
      expect(record.clientReply.text).toBe(reply!.text);
      expect(record.clientReply.text).toMatch(new RegExp(` \\(id ${record.id}\\)$`));
    });

    it('records an unknown command as protocol_violation', async () => {
      const c = await session(relay.port);
      const reply = await command(c, 'FROBNICATE now');
      c.close();
      expect(reply.code).toBe(500);
      const record = (await relay.rejectRecords()).find((r) => r.clientReply.code === 500);
      expect(record).toMatchObject({ class: 'protocol_violation', source: 'protocol' });
    });
  });
});
