import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/schema.js';
import type { RouteConfig, UpstreamConfig } from '../../src/config/types.js';
import { RouteTable, type RouteKey } from '../../src/routing/route-table.js';

const UPSTREAMS = [{ name: 'ses' }, { name: 'postmark' }, { name: 'smarthost' }] as unknown as UpstreamConfig[];

function route(name: string, match: Partial<RouteConfig['match']>, upstreams: string[]): RouteConfig {
  return { name, match: { users: null, senders: null, networks: null, ...match }, upstreams };
}

const key = (k: Partial<RouteKey>): RouteKey => ({ user: null, from: 'app@example.com', ip: '127.0.0.1', ...k });

describe('the route table', () => {
  it('without routes, sends everything along every upstream in config order', () => {
    const table = new RouteTable([], UPSTREAMS);
    expect(table.select(key({}))).toEqual({ name: 'default', upstreams: ['ses', 'postmark', 'smarthost'] });
  });

  it('chooses a route by AUTH user', () => {
    const table = new RouteTable([route('billing', { users: ['billing'] }, ['postmark', 'ses'])], UPSTREAMS);
    expect(table.select(key({ user: 'billing' })).name).toBe('billing');
    expect(table.select(key({ user: 'reports' })).name).toBe('default');
    expect(table.select(key({ user: null })).name).toBe('default');
  });

  it('chooses a route by sender domain, case-insensitively on the domain', () => {
    const table = new RouteTable([route('news', { senders: ['@news.example.com'] }, ['smarthost'])], UPSTREAMS);
    expect(table.select(key({ from: 'Weekly@NEWS.example.com' })).name).toBe('news');
    expect(table.select(key({ from: 'weekly@example.com' })).name).toBe('default');
  });

  it('chooses a route by full sender address, with the local part exact', () => {
    const table = new RouteTable([route('alerts', { senders: ['alerts@example.org'] }, ['ses'])], UPSTREAMS);
    expect(table.select(key({ from: 'alerts@Example.ORG' })).name).toBe('alerts');
    expect(table.select(key({ from: 'Alerts@example.org' })).name).toBe('default');
  });

  it('never matches the null sender against a sender rule', () => {
    const table = new RouteTable([route('news', { senders: ['@example.com'] }, ['smarthost'])], UPSTREAMS);
    expect(table.select(key({ from: '' })).name).toBe('default');
  });

  it('chooses a route by client network, including IPv4 clients seen as ::ffff:a.b.c.d', () => {
    const table = new RouteTable([route('office', { networks: ['10.1.0.0/16', '2001:db8::/32'] }, ['smarthost'])], UPSTREAMS);
    expect(table.select(key({ ip: '10.1.2.3' })).name).toBe('office');
    expect(table.select(key({ ip: '::ffff:10.1.2.3' })).name).toBe('office');
    expect(table.select(key({ ip: '2001:db8::25' })).name).toBe('office');
    expect(table.select(key({ ip: '10.2.0.1' })).name).toBe('default');
  });

  it('needs every criterion of a route to match', () => {
    const table = new RouteTable([route('billing-eu', { users: ['billing'], senders: ['@example.eu'] }, ['postmark'])], UPSTREAMS);
    expect(table.select(key({ user: 'billing', from: 'a@example.eu' })).name).toBe('billing-eu');
    expect(table.select(key({ user: 'billing', from: 'a@example.com' })).name).toBe('default');
    expect(table.select(key({ user: 'ops', from: 'a@example.eu' })).name).toBe('default');
  });

  it('takes the first matching route', () => {
    const table = new RouteTable([route('first', { users: ['billing'] }, ['ses']), route('second', { senders: ['@example.com'] }, ['postmark'])], UPSTREAMS);
    expect(table.select(key({ user: 'billing', from: 'a@example.com' })).name).toBe('first');
    expect(table.select(key({ user: 'ops', from: 'a@example.com' })).name).toBe('second');
  });

  it('lets a route without criteria replace the default', () => {
    const table = new RouteTable([route('billing', { users: ['billing'] }, ['ses']), route('rest', {}, ['smarthost'])], UPSTREAMS);
    expect(table.select(key({ user: 'ops' }))).toEqual({ name: 'rest', upstreams: ['smarthost'] });
  });

  it('lists every plan, the default last', () => {
    const table = new RouteTable([route('billing', { users: ['billing'] }, ['ses'])], UPSTREAMS);
    expect(table.plans.map((p) => p.name)).toEqual(['billing', 'default']);
  });
});

describe('routes in the config file', () => {
  const base = {
    listen: [{ port: 2525 }],
    clients: { users: [{ username: 'billing', password: 'x' }] },
    upstreams: [
      { name: 'ses', url: 'smtp://ses.example.com' },
      { name: 'backup', url: 'smtp://backup.example.com' },
    ],
  };
  const problems = (routes: unknown) => {
    const result = validateConfig({ ...base, routes }, '/');
    return result.ok ? [] : result.problems;
  };

  it('loads routes, leaving criteria that are not given as null', () => {
    const result = validateConfig({ ...base, routes: [{ name: 'billing', match: { users: ['billing'] }, upstreams: ['backup', 'ses'] }] }, '/');
    expect(result.ok && result.config.routes).toEqual([
      { name: 'billing', match: { users: ['billing'], senders: null, networks: null }, upstreams: ['backup', 'ses'] },
    ]);
  });

  it('defaults to no routes', () => {
    const result = validateConfig(base, '/');
    expect(result.ok && result.config.routes).toEqual([]);
  });

  it('refuses a route naming an upstream that does not exist, at its key path', () => {
    expect(problems([{ name: 'r', upstreams: ['ses', 'sendgrid'] }])).toEqual([{ path: 'routes[0].upstreams[1]', message: 'names no entry of upstreams' }]);
  });

  it('refuses an upstream listed twice in one route', () => {
    expect(problems([{ name: 'r', upstreams: ['ses', 'ses'] }])).toEqual([{ path: 'routes[0].upstreams[1]', message: 'repeats an upstream of this route' }]);
  });

  it('refuses a route for a user that is not configured', () => {
    expect(problems([{ name: 'r', match: { users: ['billing', 'nobody'] }, upstreams: ['ses'] }])).toEqual([
      { path: 'routes[0].match.users[1]', message: 'names no user of clients.users' },
    ]);
  });

  it('refuses a route behind one that matches every message', () => {
    expect(
      problems([
        { name: 'all', upstreams: ['ses'] },
        { name: 'billing', match: { users: ['billing'] }, upstreams: ['backup'] },
      ]),
    ).toEqual([{ path: 'routes[1]', message: 'never used: routes[0] matches every message' }]);
  });

  it('refuses duplicate route names, bad sender patterns and bad networks, all at once', () => {
    const found = problems([
      { name: 'r', match: { senders: ['example.com'] }, upstreams: ['ses'] },
      { name: 'r', match: { networks: ['10.0.0.0/33'] }, upstreams: ['ses'] },
    ]).map((p) => p.path);
    expect(found).toEqual(expect.arrayContaining(['routes[0].match.senders[0]', 'routes[1].match.networks[0]', 'routes[1].name']));
  });

  it('refuses a route without upstreams', () => {
    expect(problems([{ name: 'r', upstreams: [] }]).map((p) => p.path)).toEqual(['routes[0].upstreams']);
  });
});

describe('breaker and sending rate in the config file', () => {
  const load = (upstream: Record<string, unknown>) =>
    validateConfig({ listen: [{ port: 2525 }], upstreams: [{ name: 'ses', url: 'smtp://ses.example.com', ...upstream }] }, '/');

  it('turns the breaker off with null', () => {
    const result = load({ breaker: null });
    expect(result.ok && result.config.upstreams[0]!.breaker).toBeNull();
  });

  it('reads durations, decimals from the environment, and leaves unset limits null', () => {
    const result = load({ breaker: { failures: 3, window: '1m', cooldown: '10s' }, rateLimit: { messagesPerSecond: '0.5', backoff: { initial: 0 } } });
    expect(result.ok && result.config.upstreams[0]).toMatchObject({
      breaker: { failures: 3, window: 60_000, failureRate: 0.5, cooldown: 10_000 },
      rateLimit: { messagesPerSecond: 0.5, burst: 1, maxWait: null, backoff: { initial: 0, max: 10_000, decay: 10_000 } },
    });
  });

  it('reports bad values at their key paths', () => {
    const result = load({ breaker: { failures: 0, failureRate: 2 }, rateLimit: { messagesPerSecond: -1, burst: 0 } });
    expect(result.ok ? [] : result.problems.map((p) => p.path).sort()).toEqual([
      'upstreams[0].breaker.failureRate',
      'upstreams[0].breaker.failures',
      'upstreams[0].rateLimit.burst',
      'upstreams[0].rateLimit.messagesPerSecond',
    ]);
  });
});
