import { createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayRecord } from '../../src/audit/records.js';
import { createLogger } from '../../src/logger.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

const UPSTREAM_PASSWORD = 'UPSTREAM-SECRET-7731';
const CLIENT_PASSWORD = 'CLIENT-SECRET-9915';
const WRONG_PASSWORD = 'WRONG-SECRET-0042';
const HMAC_KEY = 'HMAC-SECRET-4242-abcdef';
const pseudonym = (local: string) => createHmac('sha256', HMAC_KEY).update(local).digest('hex').slice(0, 16);

describe('privacy of the trail', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let log = '';
  const published: RelayRecord[] = [];
  let trail = '';

  beforeAll(async () => {
    upstream = await startFakeUpstream({
      auth: { user: 'relay-user', pass: UPSTREAM_PASSWORD },
      faults: { rcpt: (a) => (a.startsWith('nobody@') ? { code: 550, text: `5.1.1 <${a}>: Recipient address rejected: User unknown` } : null) },
    });
    relay = await startRelay({
      upstreams: [{ port: upstream.port, auth: { user: 'relay-user', pass: UPSTREAM_PASSWORD } }],
      clients: { networks: [], users: [{ username: 'billing', password: CLIENT_PASSWORD, passwordHash: null, allowedSenders: [], mode: null }] },
      audit: { privacy: 'pseudonymize', hmacKey: HMAC_KEY },
      // The wrong password below ends its connection (one error allowed), which the log tells.
      limits: { softErrorLimit: 1, hardErrorLimit: 1 },
      // The most talkative log there is: secrets must not show even at trace level.
      logger: createLogger('trace', { write: (s: string) => void (log += s) }),
    });
    relay.app.bus.subscribe('relay', (r) => void published.push(r));
    const auth = { user: 'billing', pass: CLIENT_PASSWORD };
    const raw = simpleMessage({ from: 'invoices@example.com', to: 'ana@example.org' });
    expect((await relay.send({ from: 'invoices@example.com', to: ['Ana@Example.org'], raw, auth, startTls: true })).code).toBe(250);
    expect((await relay.send({ from: 'invoices@example.com', to: ['ana@example.org', 'nobody@example.org'], raw, auth, startTls: true })).code).toBe(250);
    expect((await relay.send({ from: 'invoices@example.com', to: ['nobody@example.org'], raw, auth, startTls: true })).code).toBe(550);
    expect(
      (await relay.send({ from: 'invoices@example.com', to: ['ana@example.org'], raw, auth: { user: 'billing', pass: WRONG_PASSWORD }, startTls: true })).code,
    ).toBe(535);
    const auditFile = relay.auditFile;
    await relay.app.stop();
    trail = await readFile(auditFile, 'utf8');
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('writes no secret to the trail or the operational log: upstream password, client passwords, HMAC key', () => {
    expect(trail.length).toBeGreaterThan(0);
    expect(log.length).toBeGreaterThan(0);
    for (const secret of [UPSTREAM_PASSWORD, CLIENT_PASSWORD, WRONG_PASSWORD, HMAC_KEY]) {
      expect(trail).not.toContain(secret);
      expect(log).not.toContain(secret);
      // AUTH PLAIN / LOGIN carry them base64-encoded on the wire.
      expect(trail).not.toContain(Buffer.from(secret).toString('base64'));
      expect(log).not.toContain(Buffer.from(secret).toString('base64'));
    }
  });

  it('leaves no local part in clear in the trail: envelope, header From, reply texts', () => {
    for (const local of ['invoices@', 'ana@', 'Ana@', 'nobody@']) expect(trail).not.toContain(local);
    expect(trail).toContain(`${pseudonym('ana')}@example.org`);
    expect(trail).toContain(`<${pseudonym('nobody')}@example.org>: Recipient address rejected`);
  });

  it('keeps the domain and the AUTH user name, and the same address always gives the same pseudonym', async () => {
    const relays = trail
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as RelayRecord)
      .filter((r) => r.type === 'relay');
    expect(relays).toHaveLength(3);
    expect(relays.every((r) => r.from === `${pseudonym('invoices')}@example.com`)).toBe(true);
    expect(relays[0]!.rcpt[0]!.to).toBe(relays[1]!.rcpt[0]!.to);
    expect(relays[0]!.client.user).toBe('billing');
    expect(relays[0]!.message.headerFrom).toBe(`${pseudonym('invoices')}@example.com`);
  });

  it('publishes to observers the same masked record the file holds', () => {
    const fileRelays = trail
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as RelayRecord)
      .filter((r) => r.type === 'relay');
    expect(published.map((r) => JSON.stringify(r))).toEqual(fileRelays.map((r) => JSON.stringify(r)));
  });
});
