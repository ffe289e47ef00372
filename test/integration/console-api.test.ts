/**
 * The console's JSON API over real HTTP in front of a real relay (docs/api.md, docs/console.md):
 * login and its safety, the bearer token for scripts, the scope of a console user on every
 * endpoint, the live stream and the story of a message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { QueueAction, QueueActor, SpoolControl, SpoolEntry, SpoolFilter } from '../../src/console/queue.js';
import type { TransactionSummary } from '../../src/console/summary.js';
import { CONSOLE_TOKEN, ConsoleClient, eventually, getWithHost, startConsoleRelay } from '../helpers/console-client.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RelaySpec, type RunningRelay } from '../helpers/relay-harness.js';
import type { SendResult } from '../helpers/smtp-client.js';

const TOKEN = CONSOLE_TOKEN;

/** The mailtrail id in the reply the client got. */
function idOf(result: SendResult): string {
  return /\(id ([0-9A-Z]{26})\)/.exec(result.response ?? '')?.[1] ?? '';
}

function consoleRelay(upstream: FakeUpstream, over: Partial<RelaySpec> = {}): Promise<RunningRelay> {
  return startConsoleRelay([{ name: 'primary', port: upstream.port }], over);
}

describe('console login and safety', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await consoleRelay(upstream);
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('logs in with a console user and sets an HttpOnly, SameSite=Strict session cookie, not Secure over plain HTTP', async () => {
    const client = new ConsoleClient(relay.httpUrl!);
    const answer = await client.login('admin-pass-1', 'admin');
    expect(answer.status).toBe(200);
    expect(answer.body.user).toBe('admin');
    const cookie = answer.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^mailtrail_session=[A-Za-z0-9_-]{43}; /);
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Strict');
    expect(cookie).not.toContain('Secure');
  });

  it('answers a wrong password with 401 bad_credentials and no cookie', async () => {
    const client = new ConsoleClient(relay.httpUrl!);
    const answer = await client.login('not-the-password', 'admin');
    expect(answer.status).toBe(401);
    expect(answer.body.error?.code).toBe('bad_credentials');
    expect(answer.headers.get('set-cookie')).toBeNull();
  });

  it('refuses every data endpoint without a login', async () => {
    const client = new ConsoleClient(relay.httpUrl!);
    for (const path of [
      '/api/v1/session',
      '/api/v1/transactions',
      '/api/v1/stats',
      '/api/v1/errors',
      '/api/v1/upstreams',
      '/api/v1/queue',
      '/api/v1/messages/X',
    ]) {
      const answer = await client.get<{ error: { code: string } }>(path);
      expect([path, answer.status, answer.body.error.code]).toEqual([path, 401, 'unauthenticated']);
    }
  });

  it('gives the session its user, scope and CSRF token, and ends it at logout', async () => {
    const client = new ConsoleClient(relay.httpUrl!);
    await client.login('ana-pass-1', 'ana');
    const session = await client.get<{ user: string; scope: unknown; csrf: string }>('/api/v1/session');
    expect(session.body).toMatchObject({ user: 'ana', scope: { users: ['billing'] }, csrf: client.csrf });
    const out = await client.post('/api/v1/logout', {});
    expect(out.status).toBe(200);
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
    expect((await client.get('/api/v1/session')).status).toBe(401);
  });

  it('refuses a state-changing request without the CSRF token, with a wrong one, or from another origin', async () => {
    const client = new ConsoleClient(relay.httpUrl!);
    await client.login('admin-pass-1', 'admin');
    const csrf = client.csrf;
    client.csrf = null;
    expect((await client.post<{ error: { code: string } }>('/api/v1/logout', {})).body.error.code).toBe('csrf');
    client.csrf = 'forged';
    expect((await client.post<{ error: { code: string } }>('/api/v1/logout', {})).body.error.code).toBe('csrf');
    client.csrf = csrf;
    const foreign = await client.post<{ error: { code: string } }>('/api/v1/logout', {}, { origin: 'https://evil.example' });
    expect([foreign.status, foreign.body.error.code]).toEqual([403, 'origin']);
    // Still logged in: none of the refused requests logged out.
    expect((await client.get('/api/v1/session')).status).toBe(200);
  });

  it('accepts the HTTP token as a bearer token for scripts and refuses a wrong one', async () => {
    const ok = await fetch(`${relay.httpUrl}/api/v1/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    const wrong = await fetch(`${relay.httpUrl}/api/v1/stats`, { headers: { authorization: 'Bearer not-the-token-at-all' } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toContain('Bearer');
  });

  it('does not log in with the HTTP token when console users are configured', async () => {
    const answer = await new ConsoleClient(relay.httpUrl!).login(TOKEN);
    expect(answer.status).toBe(401);
  });

  it('serves the console page with a content security policy and keeps /metrics behind the bearer token', async () => {
    const page = await fetch(`${relay.httpUrl}/messages/01M8830FT48G96HGA5DQZ5WBQ8`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect((await fetch(`${relay.httpUrl}/metrics`)).status).toBe(401);
  });
});

describe('console sessions and lockout', () => {
  let upstream: FakeUpstream;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(async () => {
    await upstream.close();
  });

  it('ends a session unused for console.sessionIdle', async () => {
    const relay = await startRelay({
      upstreams: [{ port: upstream.port }],
      http: { port: 0, token: TOKEN },
      console: { enabled: true, sessionIdle: 300 },
    });
    try {
      const client = new ConsoleClient(relay.httpUrl!);
      expect((await client.login(TOKEN)).body.user).toBe('admin');
      expect((await client.get('/api/v1/session')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 600));
      expect((await client.get('/api/v1/session')).status).toBe(401);
    } finally {
      await relay.stop();
    }
  });

  it('locks login after repeated failures from one address, the right password included', async () => {
    const relay = await startRelay({
      upstreams: [{ port: upstream.port }],
      http: { port: 0, token: TOKEN },
      clients: { authLockout: { failures: 3, window: 60_000, lockout: 60_000, maxLockout: 60_000, maxTracked: 100 } },
      console: { enabled: true },
    });
    try {
      const client = new ConsoleClient(relay.httpUrl!);
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await client.login(`wrong-${i}-0123456789abc`)).status);
      expect(statuses).toEqual([401, 401, 429]);
      const right = await client.login(TOKEN);
      expect([right.status, right.body.error?.code]).toEqual([429, 'locked']);
    } finally {
      await relay.stop();
    }
  });

  it('marks the cookie Secure with console.secureCookies (behind a TLS proxy)', async () => {
    const relay = await startRelay({ upstreams: [{ port: upstream.port }], http: { port: 0, token: TOKEN }, console: { enabled: true, secureCookies: true } });
    try {
      const answer = await new ConsoleClient(relay.httpUrl!).login(TOKEN);
      expect(answer.headers.get('set-cookie')).toContain('; Secure');
    } finally {
      await relay.stop();
    }
  });

  it('without users or token on loopback, opens without a login but only to a loopback Host', async () => {
    const relay = await startRelay({ upstreams: [{ port: upstream.port }], http: { port: 0 }, console: { enabled: true } });
    try {
      const session = await new ConsoleClient(relay.httpUrl!).get<{ user: string }>('/api/v1/session');
      expect([session.status, session.body.user]).toEqual([200, 'local']);
      const rebound = await getWithHost(relay.httpUrl!, '/api/v1/transactions', 'attacker.example:80');
      expect(rebound.status).toBe(403);
      expect(JSON.parse(rebound.body)).toMatchObject({ error: { code: 'host' } });
    } finally {
      await relay.stop();
    }
  });
});

/** A spool in memory: what the console's queue endpoints are given. */
class MemorySpool implements SpoolControl {
  readonly entries: SpoolEntry[] = [
    { id: 'Q-BILLING-1', user: 'billing', state: 'queued' },
    { id: 'Q-NEWS-1', user: 'news', state: 'queued' },
  ];
  readonly acted: { action: QueueAction; ids: readonly string[]; by: QueueActor }[] = [];
  lastFilter: SpoolFilter | null = null;

  async list(filter: SpoolFilter): Promise<{ items: SpoolEntry[]; next: string | null }> {
    this.lastFilter = filter;
    return { items: this.entries.filter((e) => filter.users === null || (e.user !== null && filter.users.includes(e.user))), next: null };
  }

  async show(id: string): Promise<SpoolEntry | null> {
    return this.entries.find((e) => e.id === id) ?? null;
  }

  async act(action: QueueAction, ids: readonly string[], by: QueueActor) {
    this.acted.push({ action, ids, by });
    return ids.map((id) => ({ id, ok: true }));
  }

  parked(): ReadonlyMap<string, number> {
    return new Map([['primary', 2]]);
  }
}

describe('a console user limited to some SMTP users', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let admin: ConsoleClient;
  let ana: ConsoleClient;
  let spool: MemorySpool;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await consoleRelay(upstream);
    spool = new MemorySpool();
    relay.app.attachSpool(spool);
    admin = new ConsoleClient(relay.httpUrl!);
    await admin.login('admin-pass-1', 'admin');
    ana = new ConsoleClient(relay.httpUrl!);
    await ana.login('ana-pass-1', 'ana');
    const send = async (user: 'billing' | 'news', name: string) => {
      const result = await relay.send({
        auth: { user, pass: `${user}-pass-1` },
        from: `${user}@example.com`,
        to: ['ana@example.org'],
        raw: simpleMessage({ from: `${user}@example.com`, messageId: `<${name}@example.com>` }),
      });
      ids[name] = idOf(result);
    };
    await send('billing', 'billing-ok');
    await send('news', 'news-ok');
    await upstream.setFaults({ rcpt: () => ({ code: 550, text: '5.1.1 <ana@example.org>: User unknown' }) });
    await send('billing', 'billing-failed');
    await send('news', 'news-failed');
    await upstream.resetFaults();
    await eventually(
      async () => ((await admin.get<{ items: unknown[] }>('/api/v1/transactions')).body.items.length >= 4 ? true : undefined),
      20_000,
      'the index',
    );
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('sent through the relay as both SMTP users', () => {
    expect(Object.values(ids).every((id) => /^[0-9A-Z]{26}$/.test(id))).toBe(true);
  });

  it('lists only the transactions of their users, while an unscoped user sees all', async () => {
    const mine = (await ana.get<{ items: TransactionSummary[] }>('/api/v1/transactions')).body.items;
    expect(new Set(mine.map((t) => t.user))).toEqual(new Set(['billing']));
    expect(mine).toHaveLength(2);
    const all = (await admin.get<{ items: TransactionSummary[] }>('/api/v1/transactions')).body.items;
    expect(new Set(all.map((t) => t.user))).toEqual(new Set(['billing', 'news']));
  });

  it('finds nothing of another user by searching for it', async () => {
    const answer = await ana.get<{ items: TransactionSummary[] }>(`/api/v1/transactions?q=${encodeURIComponent('user:news')}`);
    expect(answer.body.items).toEqual([]);
    const byId = await ana.get<{ items: TransactionSummary[] }>(`/api/v1/transactions?q=${encodeURIComponent(`id:${ids['news-ok']}`)}`);
    expect(byId.body.items).toEqual([]);
  });

  it("gets 404 for another user's message and the story of their own", async () => {
    expect((await ana.get(`/api/v1/messages/${ids['news-ok']}`)).status).toBe(404);
    expect((await ana.get(`/api/v1/messages/${encodeURIComponent('<news-ok@example.com>')}`)).status).toBe(404);
    const own = await ana.get<{ transactions: TransactionSummary[] }>(`/api/v1/messages/${ids['billing-ok']}`);
    expect(own.status).toBe(200);
    expect(own.body.transactions.map((t) => t.user)).toEqual(['billing']);
  });

  it('counts only their mail in the statistics', async () => {
    const total = (body: { points: { messages: number }[] }): number => body.points.reduce((s, p) => s + p.messages, 0);
    expect(total((await ana.get<{ points: { messages: number }[] }>('/api/v1/stats?range=1h')).body)).toBe(2);
    expect(total((await admin.get<{ points: { messages: number }[] }>('/api/v1/stats?range=24h')).body)).toBe(4);
  });

  it("sees only their users' error groups", async () => {
    const groups = (await ana.get<{ groups: { count: number; sample: { id: string } }[] }>('/api/v1/errors')).body.groups;
    expect(groups.map((g) => g.sample.id)).toEqual([ids['billing-failed']]);
    const all = (await admin.get<{ groups: { count: number }[] }>('/api/v1/errors')).body.groups;
    expect(all.reduce((s, g) => s + g.count, 0)).toBe(2);
  });

  it('streams only the transactions of their users', async () => {
    const stream = await ana.stream();
    try {
      await relay.send({
        auth: { user: 'news', pass: 'news-pass-1' },
        from: 'news@example.com',
        to: ['ana@example.org'],
        raw: simpleMessage({ from: 'news@example.com' }),
      });
      await relay.send({
        auth: { user: 'billing', pass: 'billing-pass-1' },
        from: 'billing@example.com',
        to: ['ana@example.org'],
        raw: simpleMessage({ from: 'billing@example.com' }),
      });
      const first = await stream.next(5_000);
      expect(first.event).toBe('transaction');
      expect((first.data as TransactionSummary).user).toBe('billing');
      expect(stream.events.filter((e) => (e.data as TransactionSummary).user === 'news')).toEqual([]);
    } finally {
      stream.close();
    }
  });

  it('lists, shows and acts on the queue entries of their users only', async () => {
    const list = await ana.get<{ items: SpoolEntry[] }>('/api/v1/queue');
    expect(list.body.items.map((e) => e.id)).toEqual(['Q-BILLING-1']);
    expect(spool.lastFilter?.users).toEqual(['billing']);
    expect((await ana.get('/api/v1/queue/Q-NEWS-1')).status).toBe(404);
    expect((await ana.get('/api/v1/queue/Q-BILLING-1')).status).toBe(200);
    const acted = await ana.post<{ results: { id: string; ok: boolean; code?: string }[] }>('/api/v1/queue/actions', {
      action: 'retry',
      ids: ['Q-BILLING-1', 'Q-NEWS-1'],
    });
    expect(acted.body.results).toEqual([
      { id: 'Q-BILLING-1', ok: true },
      { id: 'Q-NEWS-1', ok: false, code: 'not_found' },
    ]);
    expect(spool.acted.at(-1)).toMatchObject({ action: 'retry', ids: ['Q-BILLING-1'], by: { channel: 'console', user: 'ana' } });
  });

  it('shows the spool parked counts only to an unscoped user', async () => {
    type Ups = { upstreams: { name: string; parked: number | null }[] };
    expect((await admin.get<Ups>('/api/v1/upstreams')).body.upstreams[0]).toMatchObject({ name: 'primary', parked: 2 });
    expect((await ana.get<Ups>('/api/v1/upstreams')).body.upstreams[0]).toMatchObject({ name: 'primary', parked: null });
  });

  it('refuses a queue action without the CSRF token', async () => {
    const answer = await ana.post<{ error: { code: string } }>(
      '/api/v1/queue/actions',
      { action: 'delete', ids: ['Q-BILLING-1'] },
      { 'x-csrf-token': 'wrong' },
    );
    expect([answer.status, answer.body.error.code]).toEqual([403, 'csrf']);
  });
});

describe('the live stream and the story of a message', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let client: ConsoleClient;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({ upstreams: [{ name: 'primary', port: upstream.port }], http: { port: 0, token: TOKEN }, console: { enabled: true } });
    client = new ConsoleClient(relay.httpUrl!);
    await client.login(TOKEN);
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('delivers a message sent through the relay on the stream within a second', async () => {
    const stream = await client.stream();
    try {
      const sent = Date.now();
      await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ messageId: '<streamed@example.com>' }) });
      const event = await stream.next(5_000);
      expect(Date.now() - sent).toBeLessThan(1_000);
      expect(event.event).toBe('transaction');
      expect(event.data).toMatchObject({ type: 'relay', outcome: 'delivered', messageId: '<streamed@example.com>', to: ['ana@example.org'] });
    } finally {
      stream.close();
    }
  });

  it('tells the story of a failed message with both replies, the class, and the records verified against the chain', async () => {
    await upstream.setFaults({ rcpt: () => ({ code: 550, text: '5.1.1 <nobody@example.org>: User unknown' }) });
    const result = await relay.send({ from: 'app@example.com', to: ['nobody@example.org'], raw: simpleMessage({ messageId: '<failed@example.com>' }) });
    await upstream.resetFaults();
    const id = idOf(result);
    type Story = {
      outcome: string;
      class: string;
      transactions: { upstreamReply: { code: number }; clientReply: { code: number }; attempts: unknown[]; waterfall: { phase: string }[] }[];
      records: { record: { type: string } }[];
      verified: { ok: boolean; detail: string };
    };
    const story = await eventually(async () => {
      const answer = await client.get<Story>(`/api/v1/messages/${id}`);
      return answer.status === 200 ? answer.body : undefined;
    });
    expect(story.outcome).toBe('rejected');
    expect(story.class).toBe('recipient_rejected');
    const [t] = story.transactions;
    expect(t!.upstreamReply.code).toBe(550);
    expect(t!.clientReply.code).toBe(550);
    expect(t!.attempts).toHaveLength(1);
    expect(t!.waterfall.map((w) => w.phase)).toEqual(['receive', 'wait', 'connect', 'envelope', 'data']);
    expect(story.verified.ok).toBe(true);
  });

  it('answers 400 bad_request for a message id that is not valid percent-encoding', async () => {
    const answer = await client.get<{ error: { code: string } }>('/api/v1/messages/%E0%A4%A');
    expect([answer.status, answer.body.error.code]).toEqual([400, 'bad_request']);
  });

  it('answers 404 no_spool for the queue when no spool is configured', async () => {
    const answer = await client.get<{ error: { code: string } }>('/api/v1/queue');
    expect([answer.status, answer.body.error.code]).toEqual([404, 'no_spool']);
  });
});
