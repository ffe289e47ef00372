import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ClientRateLimit, UserConfig } from '../../src/config/types.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

const NONE: ClientRateLimit = { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null };
const BILLING: UserConfig = { username: 'billing', password: 'billing-secret', passwordHash: null, allowedSenders: ['@example.com'], mode: null };
const REPORTS: UserConfig = { username: 'reports', password: 'reports-secret', passwordHash: null, allowedSenders: [], mode: null };

/** Client (ingress) limits per AUTH user and per client address: 451 4.7.1 and a `reject` record. */
describe('client rate limits', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay | null = null;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(async () => {
    await upstream.close();
  });
  afterEach(async () => {
    await relay?.stop();
    relay = null;
    upstream.clearRecords();
  });

  async function start(perUser: Partial<ClientRateLimit>, perIp: Partial<ClientRateLimit> = {}): Promise<RunningRelay> {
    relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port }],
      clients: {
        users: [BILLING, REPORTS],
        rateLimits: { perUser: { ...NONE, ...perUser }, perIp: { ...NONE, ...perIp }, maxTracked: 1_000 },
      },
    });
    return relay;
  }

  const asUser = (r: RunningRelay, user: UserConfig, to: string[] = ['ana@example.org']) =>
    r.send({ from: 'app@example.com', to, raw: simpleMessage(), startTls: true, auth: { user: user.username, pass: user.password! } });
  const byNetwork = (r: RunningRelay, to: string[] = ['ana@example.org']) => r.send({ from: 'app@example.com', to, raw: simpleMessage() });

  it('refuses a user past its messages per minute with 451 4.7.1 at MAIL FROM and records rate_limited', async () => {
    const r = await start({ messagesPerMinute: 2 });
    expect(await asUser(r, BILLING)).toMatchObject({ ok: true, code: 250 });
    expect(await asUser(r, BILLING)).toMatchObject({ ok: true, code: 250 });
    const over = await asUser(r, BILLING);
    expect(over).toMatchObject({ ok: false, code: 451, command: 'MAIL FROM' });
    expect(over.ok ? '' : over.response).toMatch(
      /^451 4\.7\.1 Rate limit reached: at most 2 messages per minute for user billing; try again in \d+ s \(id [0-9A-Z]{26}\)$/,
    );
    expect(upstream.messages).toHaveLength(2);
    const [reject] = (await r.rejectRecords()).filter((x) => x.class === 'rate_limited');
    expect(reject).toMatchObject({
      type: 'reject',
      command: 'MAIL',
      from: 'app@example.com',
      class: 'rate_limited',
      source: 'policy',
      client: { user: 'billing' },
      clientReply: { code: 451, enhanced: '4.7.1' },
    });
    expect(over.ok ? '' : over.response).toContain(reject!.id);
  });

  it('counts each user on its own', async () => {
    const r = await start({ messagesPerMinute: 1 });
    expect(await asUser(r, BILLING)).toMatchObject({ ok: true });
    expect(await asUser(r, REPORTS)).toMatchObject({ ok: true });
    expect(await asUser(r, BILLING)).toMatchObject({ ok: false, code: 451 });
  });

  it('refuses a client address past its messages per hour, for clients relaying by network', async () => {
    const r = await start({}, { messagesPerHour: 3 });
    for (let i = 0; i < 3; i++) expect(await byNetwork(r)).toMatchObject({ ok: true, code: 250 });
    const over = await byNetwork(r);
    expect(over).toMatchObject({ ok: false, code: 451 });
    expect(over.ok ? '' : over.response).toMatch(/^451 4\.7\.1 Rate limit reached: at most 3 messages per hour for address 127\.0\.0\.1;/);
    // (A pipelining client's RCPT and DATA after the refused MAIL are recorded as protocol refusals.)
    expect((await r.rejectRecords()).filter((x) => x.class === 'rate_limited')).toEqual([
      expect.objectContaining({ command: 'MAIL', client: expect.objectContaining({ ip: '127.0.0.1', user: null }) }),
    ]);
  });

  it('applies the per-address limit to authenticated users too', async () => {
    const r = await start({ messagesPerMinute: 10 }, { messagesPerMinute: 1 });
    expect(await asUser(r, BILLING)).toMatchObject({ ok: true });
    expect(await asUser(r, REPORTS)).toMatchObject({ ok: false, code: 451 });
  });

  it('refuses recipients past the hourly limit at RCPT TO and records each refused one', async () => {
    const r = await start({}, { recipientsPerHour: 3 });
    const res = await byNetwork(r, ['a@example.org', 'b@example.org', 'c@example.org', 'd@example.org', 'e@example.org']);
    // The client relays to the recipients it was allowed, and learns which ones were refused.
    expect(res).toMatchObject({ ok: true, accepted: ['a@example.org', 'b@example.org', 'c@example.org'], rejected: ['d@example.org', 'e@example.org'] });
    expect(upstream.messages[0]!.to).toEqual(['a@example.org', 'b@example.org', 'c@example.org']);
    const rejects = (await r.rejectRecords()).filter((x) => x.class === 'rate_limited');
    expect(rejects.map((x) => [x.command, x.to, x.class, x.clientReply.code, x.clientReply.enhanced])).toEqual([
      ['RCPT', 'd@example.org', 'rate_limited', 451, '4.7.1'],
      ['RCPT', 'e@example.org', 'rate_limited', 451, '4.7.1'],
    ]);
    expect(rejects[0]!.clientReply.text).toContain('at most 3 recipients per hour for address 127.0.0.1');
    const next = await byNetwork(r);
    expect(next).toMatchObject({ ok: false, code: 451, command: 'RCPT TO' });
  });

  it('does not count a message it refused for another reason', async () => {
    const r = await start({ messagesPerMinute: 1 });
    const denied = await r.send({
      from: 'app@example.net',
      to: ['ana@example.org'],
      raw: simpleMessage(),
      startTls: true,
      auth: { user: 'billing', pass: BILLING.password! },
    });
    expect(denied).toMatchObject({ ok: false, code: 553 });
    expect(await asUser(r, BILLING)).toMatchObject({ ok: true, code: 250 });
  });
});
