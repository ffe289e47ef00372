import { randomBytes, scryptSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AlertRecord, RejectRecord } from '../../src/audit/records.js';
import type { ClientsConfig, UserConfig } from '../../src/config/types.js';
import { defaultAlertRules } from '../../src/config/sections/alerts.js';
import { parseExposition } from '../helpers/exposition.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { startRelay, type RelaySpec, type RunningRelay } from '../helpers/relay-harness.js';
import { authPlain, smtpTalk, tryAuth, type SmtpTalk, type TalkReply } from '../helpers/smtp-client.js';
import { startWebhookReceiver } from '../helpers/webhook-receiver.js';

// AUTH over plaintext (allowInsecureAuth) keeps these tests short; the lockout does not depend on TLS
// (admission.test.ts covers AUTH and TLS). Clients connect from several loopback addresses
// (127.0.0.2, 127.0.0.3...) to act as several machines.

const PASSWORD = 'Billing-Pa55-7f3kq';
const ULID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)$/;

function user(username: string, password: string | null, passwordHash: string | null = null): UserConfig {
  return { username, password, passwordHash, allowedSenders: [], mode: null };
}

/** A connection from `from`, ready for AUTH. */
async function ready(port: number, from = '127.0.0.1'): Promise<SmtpTalk> {
  const c = await smtpTalk(port, '127.0.0.1', { localAddress: from, timeoutMs: 10_000 });
  await c.expect(220);
  c.send('EHLO client.test');
  await c.expect(250);
  return c;
}

/** "454 4.7.0 <text>" without the record id, to compare replies. */
function shape(reply: TalkReply): string {
  return `${reply.code} ${reply.text.replace(ULID_IN_REPLY, '').trim()}`;
}

async function lockRecords(relay: RunningRelay): Promise<RejectRecord[]> {
  return (await relay.rejectRecords()).filter((r) => r.class === 'auth_locked');
}

describe('AUTH lockout', () => {
  let upstream: FakeUpstream;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(() => upstream.close());

  function relayWith(clients: Partial<ClientsConfig>, more: Omit<RelaySpec, 'upstreams' | 'clients'> = {}): Promise<RunningRelay> {
    return startRelay({
      ...more,
      upstreams: [{ port: upstream.port }],
      clients: {
        networks: [],
        allowInsecureAuth: true,
        users: [user('billing', PASSWORD)],
        authLockout: { failures: 3, window: 60_000, lockout: 60_000, maxLockout: 600_000, maxTracked: 1_000 },
        ...clients,
      },
    });
  }

  describe('per address', () => {
    let relay: RunningRelay;
    beforeAll(async () => {
      relay = await relayWith({});
    });
    afterAll(() => relay.stop());

    it('locks an address after `failures` failed AUTHs: that failure and every later attempt get 454 4.7.0, the right password too', async () => {
      const from = '127.0.0.2';
      const replies: number[] = [];
      for (const name of ['billing', 'alice', 'bob']) replies.push((await tryAuth(relay.port, from, name, 'wrong')).code);
      const right = await tryAuth(relay.port, from, 'billing', PASSWORD);
      expect(replies).toEqual([535, 535, 454]);
      expect(right.code).toBe(454);
      expect(right.text).toMatch(/^4\.7\.0 /);
      // Another address is not held by this one's lock.
      expect((await tryAuth(relay.port, '127.0.0.3', 'billing', PASSWORD)).code).toBe(235);
    });

    it('writes one auth_locked record when the lock starts, and none for the attempts refused during it', async () => {
      const from = '127.0.0.4';
      const before = await relay.rejectRecords();
      const replies: TalkReply[] = [];
      for (let i = 0; i < 8; i++) replies.push(await tryAuth(relay.port, from, `guess-${i}`, 'wrong'));
      const added = (await relay.rejectRecords()).slice(before.length);
      expect(replies.map((r) => r.code)).toEqual([535, 535, 454, 454, 454, 454, 454, 454]);
      expect(added.map((r) => r.class)).toEqual(['auth_failed', 'auth_failed', 'auth_locked']);
      const lock = added[2]!;
      expect(lock).toMatchObject({ command: 'AUTH', authUser: 'guess-2', client: { ip: from, user: null }, clientReply: { code: 454, enhanced: '4.7.0' } });
      expect(replies[2]!.text).toContain(`(id ${lock.id})`);
      // The attempts refused while locked carry no id: no record was written for them.
      for (const r of replies.slice(3)) expect(r.text).not.toMatch(ULID_IN_REPLY);
    });

    it('locks clients of clients.networks too', async () => {
      const trusted = await relayWith({ networks: ['127.0.0.0/8'] });
      try {
        const codes: number[] = [];
        for (let i = 0; i < 4; i++) codes.push((await tryAuth(trusted.port, '127.0.0.5', 'billing', `wrong-${i}`)).code);
        expect(codes).toEqual([535, 535, 454, 454]);
      } finally {
        await trusted.stop();
      }
    });

    it('counts failures on one connection like failures on many', async () => {
      const c = await ready(relay.port, '127.0.0.6');
      const codes: number[] = [];
      for (let i = 0; i < 4; i++) {
        c.send(authPlain(`someone-${i}`, 'wrong'));
        codes.push((await c.expect()).code);
      }
      c.close();
      expect(codes).toEqual([535, 535, 454, 454]);
    });
  });

  describe('per username', () => {
    it('locks a username guessed from several addresses, for every address that never logged in as it', async () => {
      const relay = await relayWith({});
      try {
        const codes: number[] = [];
        for (const from of ['127.0.1.1', '127.0.1.2', '127.0.1.3']) codes.push((await tryAuth(relay.port, from, 'billing', 'wrong')).code);
        expect(codes).toEqual([535, 535, 454]);
        expect((await tryAuth(relay.port, '127.0.1.4', 'billing', PASSWORD)).code).toBe(454);
        const records = await lockRecords(relay);
        expect(records).toHaveLength(1);
        expect(records[0]).toMatchObject({ authUser: 'billing', client: { ip: '127.0.1.3' } });
      } finally {
        await relay.stop();
      }
    });

    it('lets an address that logged in as the user keep logging in while others lock that username', async () => {
      const relay = await relayWith({});
      try {
        expect((await tryAuth(relay.port, '127.0.2.9', 'billing', PASSWORD)).code).toBe(235);
        for (const from of ['127.0.2.1', '127.0.2.2', '127.0.2.3']) await tryAuth(relay.port, from, 'billing', 'wrong');
        expect((await tryAuth(relay.port, '127.0.2.4', 'billing', PASSWORD)).code).toBe(454);
        expect((await tryAuth(relay.port, '127.0.2.9', 'billing', PASSWORD)).code).toBe(235);
      } finally {
        await relay.stop();
      }
    });

    it('answers an unknown username exactly as a known one, before the lock and during it', async () => {
      const relay = await relayWith({});
      try {
        const known: string[] = [];
        const unknown: string[] = [];
        for (let i = 0; i < 5; i++) {
          known.push(shape(await tryAuth(relay.port, `127.0.3.${i + 1}`, 'billing', 'wrong')));
          unknown.push(shape(await tryAuth(relay.port, `127.0.4.${i + 1}`, 'nobody', 'wrong')));
        }
        expect(unknown).toEqual(known);
        expect(known.map((s) => s.slice(0, 3))).toEqual(['535', '535', '454', '454', '454']);
        expect((await lockRecords(relay)).map((r) => r.authUser)).toEqual(['billing', 'nobody']);
      } finally {
        await relay.stop();
      }
    });
  });

  describe('observed', () => {
    it('counts failures, refused attempts and lockouts in the metrics, and pages once through the built-in auth-lockout alert', async () => {
      const hook = await startWebhookReceiver();
      const relay = await relayWith(
        {},
        {
          http: { port: 0 },
          alerts: {
            sinks: [{ kind: 'webhook', name: 'hook', url: hook.url, secret: null, headers: {} }],
            rules: defaultAlertRules(['hook']),
          },
        },
      );
      try {
        // Three failures lock 127.0.5.1; three more attempts are refused unheard; then a second address.
        for (let i = 0; i < 6; i++) await tryAuth(relay.port, '127.0.5.1', `guess-${i}`, 'wrong');
        for (let i = 0; i < 3; i++) await tryAuth(relay.port, '127.0.5.2', `other-${i}`, 'wrong');
        const metrics = parseExposition(await (await fetch(`${relay.httpUrl}/metrics`)).text());
        expect(metrics.value('mailtrail_auth_failures_total', {})).toBe(6);
        expect(metrics.value('mailtrail_auth_locked_total', {})).toBe(3);
        expect(metrics.value('mailtrail_auth_lockouts_total', { scope: 'address' })).toBe(2);
        expect(metrics.value('mailtrail_auth_lockouts_total', { scope: 'user' })).toBe(0);
        await hook.waitFor((r) => r.length >= 1);
        await new Promise((r) => setTimeout(r, 300));
        expect(hook.received.map((h) => h.json.alert)).toMatchObject([{ state: 'fired', rule: 'auth-lockout', upstream: null, class: 'auth_locked' }]);
        expect(hook.received[0]!.json.alert.message).toMatch(
          /^auth-lockout: AUTH from 127\.0\.5\.1 locked for 1m after 3 failures within 1m: password guessing/,
        );
        const alerts = (await relay.records()).filter((r): r is AlertRecord => r.type === 'alert');
        expect(alerts.map((a) => [a.rule, a.state])).toEqual([['auth-lockout', 'fired']]);
      } finally {
        await relay.stop();
        await hook.close();
      }
    });

    it('resolves the auth-lockout alert once no lockout has begun for twice maxLockout', async () => {
      const hook = await startWebhookReceiver();
      const relay = await relayWith(
        { authLockout: { failures: 2, window: 60_000, lockout: 200, maxLockout: 500, maxTracked: 1_000 } },
        { alerts: { sinks: [{ kind: 'webhook', name: 'hook', url: hook.url, secret: null, headers: {} }], rules: defaultAlertRules(['hook']) } },
      );
      try {
        for (let i = 0; i < 2; i++) await tryAuth(relay.port, '127.0.6.1', `guess-${i}`, 'wrong');
        // Evaluated on the engine's 5 s tick: bounded wait.
        await hook.waitFor((r) => r.length >= 2, 20_000);
        expect(hook.received.map((h) => [h.json.alert.rule, h.json.alert.state])).toEqual([
          ['auth-lockout', 'fired'],
          ['auth-lockout', 'resolved'],
        ]);
        expect(hook.received[1]!.json.alert.message).toMatch(/no AUTH lockout for 1s; open for/);
      } finally {
        await relay.stop();
        await hook.close();
      }
    });
  });

  describe('timing', () => {
    it('answers a wrong password for an unknown user as late as for a user with a hashed password', async () => {
      // scrypt at its default cost (N = 2^14) takes tens of milliseconds: enough to tell that the user
      // exists if the answer for an unknown name came sooner.
      const salt = randomBytes(16);
      const N = 2 ** 14;
      const key = scryptSync('Hashed-Pa55', salt, 32, { N, r: 8, p: 1, maxmem: 64 * 2 ** 20 });
      const hash = `scrypt$${N}$8$1$${salt.toString('base64')}$${key.toString('base64')}`;
      const relay = await relayWith({
        users: [user('hashed', null, hash)],
        authLockout: { failures: 1_000, window: 60_000, lockout: 60_000, maxLockout: 600_000, maxTracked: 1_000 },
      });
      try {
        const known: number[] = [];
        const unknown: number[] = [];
        const c = await ready(relay.port);
        const timed = async (name: string): Promise<number> => {
          const t0 = performance.now();
          c.send(authPlain(name, 'wrong'));
          expect((await c.expect()).code).toBe(535);
          return performance.now() - t0;
        };
        // Interleaved, so load on the machine weighs on both alike.
        for (let i = 0; i < 6; i++) {
          known.push(await timed('hashed'));
          unknown.push(await timed('nobody'));
        }
        c.close();
        // The fastest of each: a loaded machine only ever adds time (a median of six was seen 100 ms
        // apart when a second of delay hit two of one side's answers).
        expect(
          Math.abs(Math.min(...known) - Math.min(...unknown)),
          `known ${known.map(Math.round).join(',')} unknown ${unknown.map(Math.round).join(',')}`,
        ).toBeLessThan(25);
      } finally {
        await relay.stop();
      }
    });
  });
});
