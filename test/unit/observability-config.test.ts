import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { validateConfig } from '../../src/config/schema.js';
import { defaultAlertRules } from '../../src/config/sections/alerts.js';

const BASE = { listen: [{ port: 2525 }], upstreams: [{ name: 'ses', url: 'smtp://u:p@smtp.example.com:587' }] };

function load(extra: Record<string, unknown>) {
  return validateConfig({ ...BASE, ...extra }, '/etc/mailtrail');
}

function problems(extra: Record<string, unknown>): string[] {
  const result = load(extra);
  return result.ok ? [] : result.problems.map((p) => `${p.path}: ${p.message}`);
}

const HOOK = { name: 'ops', webhook: { url: 'https://hooks.example.com/x' } };

describe('observability configuration', () => {
  it('keeps the HTTP endpoint off and probes every upstream every 30 s by default', () => {
    const result = load({});
    expect(result.ok && result.config.http).toBeNull();
    expect(result.ok && result.config.upstreams[0]!.probe).toEqual({ enabled: true, interval: 30_000, timeout: 10_000 });
  });

  it('binds the HTTP endpoint to loopback unless told otherwise', () => {
    const result = load({ http: { port: 9025 } });
    expect(result.ok && result.config.http).toEqual({ host: '127.0.0.1', port: 9025, token: null, bestEffort: false });
  });

  it('refuses a short token', () => {
    expect(problems({ http: { port: 9025, token: 'short' } })).toEqual([expect.stringMatching(/^http\.token: /)]);
  });

  it('uses the default rules when sinks are configured without rules', () => {
    const result = load({ alerts: { sinks: [HOOK] } });
    expect(result.ok && result.config.alerts.rules).toEqual(defaultAlertRules(['ops']));
  });

  it('evaluates no rule without sinks, or with an empty rules list', () => {
    const none = load({});
    const empty = load({ alerts: { sinks: [HOOK], rules: [] } });
    expect(none.ok && none.config.alerts.rules).toEqual([]);
    expect(empty.ok && empty.config.alerts.rules).toEqual([]);
  });

  it('reads the contract example: cooldown, a signed webhook and three rules', () => {
    const result = load({
      alerts: {
        cooldown: '10m',
        sinks: [{ name: 'ops', webhook: { url: 'https://hooks.example.com/mailtrail', secret: 's3cret' } }],
        rules: [
          { name: 'provider-config', class: ['upstream_auth', 'tls', 'quota', 'dns'], sinks: ['ops'] },
          { name: 'failing', consecutiveFailures: 5, sinks: ['ops'] },
          { name: 'error-rate', failureRate: { ratio: 0.2, window: '5m', minVolume: 20 }, sinks: ['ops'] },
        ],
      },
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.alerts.cooldown).toBe(600_000);
    expect(result.config.alerts.sinks).toEqual([{ kind: 'webhook', name: 'ops', url: 'https://hooks.example.com/mailtrail', secret: 's3cret', headers: {} }]);
    expect(result.config.alerts.rules.map((r) => r.condition)).toEqual([
      { kind: 'class', classes: ['upstream_auth', 'tls', 'quota', 'dns'] },
      { kind: 'consecutiveFailures', count: 5 },
      { kind: 'failureRate', ratio: 0.2, window: 300_000, minVolume: 20 },
    ]);
  });

  it('normalises an email sink like an upstream URL', () => {
    const result = load({
      alerts: { sinks: [{ name: 'mail', email: { url: 'smtps://a%40b.c:pw@smtp.example.net', from: 'mt@example.com', to: ['ops@example.com'] } }] },
    });
    expect(result.ok && result.config.alerts.sinks[0]).toEqual({
      kind: 'email',
      name: 'mail',
      smtp: { host: 'smtp.example.net', port: 465, implicitTls: true, auth: { user: 'a@b.c', pass: 'pw' }, tls: { mode: 'required', ca: null, verify: true } },
      from: 'mt@example.com',
      to: ['ops@example.com'],
    });
  });

  it('reports a rule with no condition or two, an unknown sink, an unknown class and a sink of two kinds', () => {
    expect(
      problems({
        alerts: {
          sinks: [HOOK, { name: 'both', webhook: { url: 'http://x.example' }, email: { url: 'smtp://x.example', from: 'a@b.c', to: ['d@e.f'] } }],
          rules: [
            { name: 'none', sinks: ['ops'] },
            { name: 'two', consecutiveFailures: 3, noSuccess: '15m' },
            { name: 'typo', consecutiveFailures: 3, sinks: ['opz'] },
            { name: 'bad-class', class: ['upstream_authentication'] },
          ],
        },
      }),
    ).toEqual(
      expect.arrayContaining([
        'alerts.sinks[1]: needs exactly one of webhook or email',
        'alerts.rules[0]: needs exactly one of class, consecutiveFailures, failureRate, latency, noSuccess',
        'alerts.rules[1]: needs exactly one of class, consecutiveFailures, failureRate, latency, noSuccess',
        'alerts.rules[2].sinks[0]: names no entry of alerts.sinks',
        expect.stringMatching(/^alerts\.rules\[3\]\.class\[0\]: /),
      ]),
    );
  });

  it('refuses a webhook URL that is not http(s) and a header value with a line break', () => {
    expect(problems({ alerts: { sinks: [{ name: 'x', webhook: { url: 'ftp://x.example', headers: { 'X-A': 'a\r\nB: c' } } }] } })).toEqual([
      'alerts.sinks[0].webhook.url: not an http:// or https:// URL',
      'alerts.sinks[0].webhook.headers.X-A: must not contain line breaks',
    ]);
  });
});

describe('the embedded default', () => {
  it('serves HTTP on 127.0.0.1:8025, best effort', () => {
    expect(loadConfig({ env: {}, cwd: '/srv' }).http).toEqual({ host: '127.0.0.1', port: 8025, token: null, bestEffort: true });
  });

  it('takes MAILTRAIL_HTTP as host:port (a port that must be free) or off', () => {
    expect(loadConfig({ env: { MAILTRAIL_HTTP: '127.0.0.1:9999' }, cwd: '/srv' }).http).toEqual({
      host: '127.0.0.1',
      port: 9999,
      token: null,
      bestEffort: false,
    });
    expect(loadConfig({ env: { MAILTRAIL_HTTP: 'off' }, cwd: '/srv' }).http).toBeNull();
  });

  it('reports a malformed MAILTRAIL_HTTP under the variable name', () => {
    expect(() => loadConfig({ env: { MAILTRAIL_HTTP: 'nope' }, cwd: '/srv' })).toThrow(/MAILTRAIL_HTTP: expected host:port/);
  });
});
