import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SMTPServer } from 'smtp-server';
import type { UserConfig } from '../../src/config/types.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

const BILLING: UserConfig = { username: 'billing', password: 'billing-secret', passwordHash: null, allowedSenders: [], mode: null };
const OPS: UserConfig = { username: 'ops', password: 'ops-secret', passwordHash: null, allowedSenders: [], mode: null };
const BILLING_KEY = { user: 'ses-billing-key', pass: 'b1' };
const NEWS_KEY = { user: 'ses-news-key', pass: 'n1' };

const route = (name: string, match: { users?: string[]; senders?: string[]; networks?: string[] }, upstreams: string[]) => ({
  name,
  match: { users: match.users ?? null, senders: match.senders ?? null, networks: match.networks ?? null },
  upstreams,
});

describe('routes', () => {
  let fallback: FakeUpstream;
  let billingHost: FakeUpstream;
  let newsHost: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    [fallback, billingHost, newsHost] = await Promise.all([
      startFakeUpstream(),
      startFakeUpstream({ auth: BILLING_KEY }),
      startFakeUpstream({ auth: NEWS_KEY }),
    ]);
    relay = await startRelay({
      upstreams: [
        { name: 'smarthost', port: fallback.port },
        { name: 'ses-billing', port: billingHost.port, auth: BILLING_KEY },
        { name: 'ses-news', port: newsHost.port, auth: NEWS_KEY },
      ],
      clients: { users: [BILLING, OPS] },
      routes: [route('billing', { users: ['billing'] }, ['ses-billing']), route('newsletters', { senders: ['@news.example.com'] }, ['ses-news', 'smarthost'])],
    });
  });
  afterAll(async () => {
    await relay.stop();
    await Promise.all([fallback.close(), billingHost.close(), newsHost.close()]);
  });
  beforeEach(() => {
    for (const u of [fallback, billingHost, newsHost]) u.clearRecords();
  });

  const send = (user: UserConfig, from: string, messageId: string) =>
    relay.send({ from, to: ['ana@example.org'], raw: simpleMessage({ from, messageId }), startTls: true, auth: { user: user.username, pass: user.password! } });
  const recordOf = async (messageId: string) => (await relay.relayRecords()).find((r) => r.message.messageId === messageId)!;

  it("sends a user's mail along its route, with that upstream entry's credentials", async () => {
    expect(await send(BILLING, 'invoices@example.com', '<inv@x>')).toMatchObject({ ok: true, code: 250 });
    expect(billingHost.messages.map((m) => m.user)).toEqual([BILLING_KEY.user]);
    expect(fallback.messages).toHaveLength(0);
    const rec = await recordOf('<inv@x>');
    expect(rec.route).toBe('billing');
    expect(rec.upstream?.name).toBe('ses-billing');
  });

  it("sends mail from a sender domain along its route, with that entry's credentials", async () => {
    expect(await send(OPS, 'weekly@news.example.com', '<news@x>')).toMatchObject({ ok: true, code: 250 });
    expect(newsHost.messages.map((m) => m.user)).toEqual([NEWS_KEY.user]);
    expect((await recordOf('<news@x>')).route).toBe('newsletters');
  });

  it('takes the default route (every upstream in config order) when no route matches', async () => {
    expect(await send(OPS, 'app@example.com', '<other@x>')).toMatchObject({ ok: true, code: 250 });
    expect(fallback.messages).toHaveLength(1);
    expect(fallback.messages[0]!.user).toBeNull();
    expect((await recordOf('<other@x>')).route).toBe('default');
  });

  it("fails over only within the route's own list", async () => {
    await newsHost.refuse();
    newsHost.dropConnections(); // the relay's pooled connection too
    try {
      expect(await send(OPS, 'weekly@news.example.com', '<news-failover@x>')).toMatchObject({ ok: true });
      expect(fallback.messages).toHaveLength(1);
      expect((await recordOf('<news-failover@x>')).attempts.map((a) => a.upstream)).toEqual(['ses-news', 'smarthost']);
    } finally {
      await newsHost.accept();
    }
  });

  it('never goes outside a route: when its only upstream fails, the client gets the failure', async () => {
    await billingHost.refuse();
    billingHost.dropConnections(); // the relay's pooled connection too
    try {
      expect(await send(BILLING, 'invoices@example.com', '<inv-down@x>')).toMatchObject({ ok: false, code: 451 });
      expect(fallback.transactions).toBe(0);
      expect((await recordOf('<inv-down@x>')).attempts.map((a) => a.upstream)).toEqual(['ses-billing']);
    } finally {
      await billingHost.accept();
    }
  });
});

/**
 * Two upstream entries for one host, each with its own credentials (one provider account per entry):
 * their connections are never shared, so every message arrives under its own account.
 */
describe('two upstream entries on one host with different credentials', () => {
  const ACCOUNTS = { 'account-a': 'pa', 'account-b': 'pb' } as Record<string, string>;
  const received: { user: string | null; from: string; session: string }[] = [];
  let server: SMTPServer;
  let port: number;
  let relay: RunningRelay;

  beforeAll(async () => {
    // A provider that accepts several accounts (the fake upstream knows one); it records who sent what.
    server = new SMTPServer({
      logger: false,
      disableReverseLookup: true,
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      authMethods: ['PLAIN', 'LOGIN'],
      closeTimeout: 200,
      onAuth(auth, _session, cb) {
        if (auth.username && ACCOUNTS[auth.username] === auth.password) return cb(null, { user: auth.username });
        cb(null, { message: '5.7.8 Authentication credentials invalid', responseCode: 535 });
      },
      onData(stream, session, cb) {
        stream.resume();
        stream.on('end', () => {
          received.push({
            user: typeof session.user === 'string' ? session.user : null,
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            session: session.id,
          });
          cb(null, 'Ok: queued');
        });
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.server.address() as AddressInfo).port;
    relay = await startRelay({
      upstreams: [
        { name: 'provider-a', port, auth: { user: 'account-a', pass: 'pa' } },
        { name: 'provider-b', port, auth: { user: 'account-b', pass: 'pb' } },
      ],
      routes: [route('brand-b', { senders: ['@brand-b.example'] }, ['provider-b'])],
    });
  });
  afterAll(async () => {
    await relay.stop();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("sends each route's mail under its own account and never over the other's connection", async () => {
    for (let i = 0; i < 3; i++) {
      for (const from of ['a@brand-a.example', 'b@brand-b.example']) {
        expect(await relay.send({ from, to: ['ana@example.org'], raw: simpleMessage({ from }) })).toMatchObject({ ok: true });
      }
    }
    expect(received).toHaveLength(6);
    for (const r of received) expect(r.user).toBe(r.from.endsWith('@brand-b.example') ? 'account-b' : 'account-a');
    // Connections were reused (pooled), yet no session carried both accounts' mail.
    const sessions = new Map<string, Set<string | null>>();
    for (const r of received) sessions.set(r.session, (sessions.get(r.session) ?? new Set()).add(r.user));
    expect(sessions.size).toBeLessThan(6);
    for (const users of sessions.values()) expect(users.size).toBe(1);
  });
});
