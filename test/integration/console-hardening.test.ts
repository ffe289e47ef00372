/**
 * The console's HTTP side against a determined client (docs/console.md, "Login and safety"): what a
 * burst, a rebinding page or an odd request gets, over real HTTP in front of a real relay.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/password.js';
import { createServer, type Server } from 'node:http';
import { Access } from '../../src/console/access.js';
import { ConsoleApi, MAX_INDEX_REQUESTS_PER_USER } from '../../src/console/console-api.js';
import { LiveStream } from '../../src/console/live-stream.js';
import { CONSOLE_LOGIN_FAILURE_DELAY_MS, ConsoleLogin } from '../../src/console/login.js';
import { ScopedErrors } from '../../src/console/scoped-errors.js';
import { SearchIndex } from '../../src/console/search/search-index.js';
import { SessionStore } from '../../src/console/sessions.js';
import { StaticFiles } from '../../src/console/static-files.js';
import { LiveStats } from '../../src/console/stats.js';
import { TokenStates } from '../../src/console/token-states.js';
import { EventBus } from '../../src/event-bus.js';
import { createLogger } from '../../src/logger.js';
import type { RelayBus, RelayEvents } from '../../src/observe/relay-events.js';
import { ConsoleClient, eventually } from '../helpers/console-client.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { startRelay, type RelaySpec, type RunningRelay } from '../helpers/relay-harness.js';

const TOKEN = 'console-hardening-token-0123456789';
const BILLING = { username: 'billing', password: 'billing-pass-1', passwordHash: null, allowedSenders: [], mode: null };

/** A relay with `http.token` and the console on, in front of `upstream`. */
function consoleRelay(upstream: FakeUpstream, over: Partial<RelaySpec> = {}): Promise<RunningRelay> {
  return startRelay({ upstreams: [{ port: upstream.port }], http: { port: 0, token: TOKEN }, console: { enabled: true }, ...over });
}

describe('console login under a burst', () => {
  let upstream: FakeUpstream;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(async () => {
    await upstream.close();
  });

  it('checks no more passwords than the lockout allows when many logins arrive at once', async () => {
    const relay = await consoleRelay(upstream, {
      clients: { authLockout: { failures: 3, window: 60_000, lockout: 60_000, maxLockout: 60_000, maxTracked: 100 } },
      console: { enabled: true, users: [{ username: 'ops', password: null, passwordHash: await hashPassword('ops-pass-1'), scope: null }] },
    });
    try {
      const client = new ConsoleClient(relay.httpUrl!);
      // Each on a connection of its own, all sent before the first scrypt check ends.
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => client.login(`guess-${i}`, 'ops')));
      const statuses = answers.map((a) => a.status);
      // Two failures answered as such; the third starts the lockout; every other attempt is refused unheard.
      expect(statuses.filter((s) => s === 401)).toHaveLength(2);
      expect(statuses.filter((s) => s === 429)).toHaveLength(18);
    } finally {
      await relay.stop();
    }
  });
});

describe('console login timing', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await consoleRelay(upstream, {
      console: {
        enabled: true,
        users: [
          { username: 'ops', password: null, passwordHash: await hashPassword('ops-pass-1'), scope: null },
          { username: 'ana', password: 'ana-pass-1', passwordHash: null, scope: null },
        ],
      },
    });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('answers every failed login after the same delay, so its timing does not tell a configured username (plain password, hash) from an unknown one', async () => {
    for (const username of ['ana', 'ops', 'nobody']) {
      const started = performance.now();
      const answer = await new ConsoleClient(relay.httpUrl!).login('wrong-password', username);
      const took = performance.now() - started;
      expect([username, answer.status]).toEqual([username, 401]);
      // A floor, not a speed: a plain password was refused in a few ms, an unknown name after a scrypt check.
      expect(took).toBeGreaterThanOrEqual(CONSOLE_LOGIN_FAILURE_DELAY_MS - 5);
    }
  });

  it('logs in with the right password without that delay', async () => {
    const answer = await new ConsoleClient(relay.httpUrl!).login('ana-pass-1', 'ana');
    expect(answer.status).toBe(200);
  });
});

describe('console search against costly queries', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  const bearer = { authorization: `Bearer ${TOKEN}` };

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await consoleRelay(upstream);
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  const search = async (q: string): Promise<{ status: number; body: { error?: { code: string; message: string } } }> => {
    const res = await fetch(`${relay.httpUrl!}/api/v1/transactions?q=${encodeURIComponent(q)}`, { headers: bearer });
    return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
  };

  it('refuses with 400 bad_query bare words of more than 12 distinct parts (each part costs a walk of its matches)', async () => {
    const answer = await search('a b c d e f g h i j k l m');
    expect([answer.status, answer.body.error?.code]).toEqual([400, 'bad_query']);
    expect(answer.body.error?.message).toMatch(/more than 12 parts/);
  });

  it('answers a bare word without a letter or digit with 400 bad_query, not as a failure of the index', async () => {
    const answer = await search('\\');
    expect([answer.status, answer.body.error?.code]).toEqual([400, 'bad_query']);
  });

  it('answers a cursor it never gave with 400 bad_query, not as a failure of the index', async () => {
    const res = await fetch(`${relay.httpUrl!}/api/v1/transactions?cursor=Zm9v`, { headers: bearer });
    const body = (await res.json()) as { error?: { code: string } };
    expect([res.status, body.error?.code]).toEqual([400, 'bad_query']);
  });
});

describe('a console user with a scope', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await consoleRelay(upstream, {
      clients: { users: [BILLING] },
      console: {
        enabled: true,
        users: [
          { username: 'ops', password: 'ops-pass-1', passwordHash: null, scope: null },
          { username: 'ana', password: 'ana-pass-1', passwordHash: null, scope: { users: ['billing'] } },
        ],
      },
    });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('gives one console user at most 20 streams, over all their sessions, and leaves the rest to the others', async () => {
    const controller = new AbortController();
    const open = async (client: ConsoleClient): Promise<number> => {
      const res = await fetch(`${relay.httpUrl!}/api/v1/stream`, { headers: { cookie: client.cookie! }, signal: controller.signal });
      if (res.status !== 200) await res.body?.cancel();
      return res.status;
    };
    try {
      const sessions = [new ConsoleClient(relay.httpUrl!), new ConsoleClient(relay.httpUrl!)];
      for (const s of sessions) expect((await s.login('ana-pass-1', 'ana')).status).toBe(200);
      const statuses: number[] = [];
      for (let i = 0; i < 21; i++) statuses.push(await open(sessions[i % 2]!));
      expect(statuses.slice(0, 20)).toEqual(Array(20).fill(200));
      expect(statuses[20]).toBe(503);
      const ops = new ConsoleClient(relay.httpUrl!);
      expect((await ops.login('ops-pass-1', 'ops')).status).toBe(200);
      expect(await open(ops)).toBe(200);
    } finally {
      controller.abort();
    }
  });

  it("does not show a scoped user the count of every user's records in the index, and shows it to the bearer token", async () => {
    const ana = new ConsoleClient(relay.httpUrl!);
    expect((await ana.login('ana-pass-1', 'ana')).status).toBe(200);
    const scoped = await ana.get<{ index: { state: string; records: number | null } }>('/api/v1/transactions');
    expect(scoped.status).toBe(200);
    expect(scoped.body.index.records).toBeNull();
    const all = await new ConsoleClient(relay.httpUrl!).get<{ index: { records: number | null } }>('/api/v1/transactions', {
      authorization: `Bearer ${TOKEN}`,
    });
    expect(typeof all.body.index.records).toBe('number');
  });
});

/** An index whose searches wait until the test lets them answer (it is never started: no worker). */
class HeldIndex extends SearchIndex {
  readonly waiting: (() => void)[] = [];

  constructor() {
    super({ trail: 'unused', indexPath: 'unused', pollMs: 1_000, privacy: null }, createLogger('silent'));
  }

  override search(): Promise<{ items: never[]; next: null }> {
    return new Promise((resolve) => this.waiting.push(() => resolve({ items: [], next: null })));
  }

  override status(): Promise<{ state: 'following'; records: number }> {
    return Promise.resolve({ state: 'following', records: 0 });
  }
}

describe('console requests waiting on the search index', () => {
  let server: Server;
  let base: string;
  const index = new HeldIndex();

  beforeAll(async () => {
    const bus: RelayBus = new EventBus<RelayEvents>((err) => {
      throw err;
    });
    const sessions = new SessionStore(60_000);
    const api = new ConsoleApi({
      access: new Access(sessions, TOKEN, false, false),
      sessions,
      login: new ConsoleLogin([], TOKEN, null, () => undefined),
      index,
      stats: new LiveStats(bus),
      stream: new LiveStream(bus),
      errors: new ScopedErrors(bus, () => [], []),
      readiness: () => ({ ready: true, reasons: [], listeners: [], upstreams: [], spool: null, sharedState: null }),
      upstreams: [],
      tokens: new TokenStates(bus, []),
      spool: () => null,
      privacy: null,
      files: new StaticFiles(),
      bus,
      log: createLogger('silent'),
    });
    server = createServer((req, res) => void api.handle(req, res, new URL(req.url ?? '/', 'http://mailtrail.invalid')));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    for (const answer of index.waiting.splice(0)) answer();
    await new Promise((resolve) => server.close(resolve));
  });

  it(`keeps at most ${MAX_INDEX_REQUESTS_PER_USER} searches of one user waiting on the index and refuses more with 503 index_busy`, async () => {
    const search = (): Promise<Response> => fetch(`${base}/api/v1/transactions?q=invoice`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const first = Array.from({ length: MAX_INDEX_REQUESTS_PER_USER }, search);
    await eventually(async () => (index.waiting.length === MAX_INDEX_REQUESTS_PER_USER ? true : undefined), 10_000, 'the searches to reach the index');
    const refused = await search();
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('index_busy');
    expect(refused.headers.get('retry-after')).toBe('1');
    for (const answer of index.waiting.splice(0)) answer();
    expect((await Promise.all(first)).map((r) => r.status)).toEqual(Array(MAX_INDEX_REQUESTS_PER_USER).fill(200));
    // Answered, they no longer count.
    const again = search();
    await eventually(async () => (index.waiting.length === 1 ? true : undefined), 10_000, 'the next search to reach the index');
    for (const answer of index.waiting.splice(0)) answer();
    expect((await again).status).toBe(200);
  });
});
