/**
 * `console`: loading, the checks against `http`, and what the embedded default gives a user who
 * configured nothing (docs/config.md, docs/console.md "Who may log in").
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/config-error.js';
import { embeddedDefault } from '../../src/config/embedded-default.js';
import { parseConfig } from '../../src/config/load.js';

const BASE = {
  listen: [{ port: 2525 }],
  upstreams: [{ name: 'ses', url: 'smtp://smtp.example.com' }],
  clients: { users: [{ username: 'billing', password: 'billing-password' }] },
};

function problems(raw: object): readonly { path: string; message: string }[] {
  try {
    parseConfig(raw, { env: {}, baseDir: '/etc/mailtrail' });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('the configuration was accepted');
}

describe('console configuration', () => {
  it('is off by default, with a 30 minute idle session', () => {
    const config = parseConfig(BASE, { env: {}, baseDir: '/etc/mailtrail' });
    expect(config.console).toEqual({ enabled: false, users: [], sessionIdle: 1_800_000, secureCookies: false });
  });

  it('loads users with a password or a hash, and a scope', () => {
    const config = parseConfig(
      { ...BASE, http: { port: 8025 }, console: { enabled: true, users: [{ username: 'ana', password: 'x', scope: { users: ['billing'] } }] } },
      { env: {}, baseDir: '/etc/mailtrail' },
    );
    expect(config.console.users).toEqual([{ username: 'ana', password: 'x', passwordHash: null, scope: { users: ['billing'] } }]);
  });

  it('needs the http endpoint', () => {
    expect(problems({ ...BASE, console: { enabled: true } })).toEqual([
      { path: 'console.enabled', message: expect.stringContaining('configure http') as string },
    ]);
  });

  it('needs a login when the endpoint is reachable beyond loopback', () => {
    expect(problems({ ...BASE, http: { host: '0.0.0.0', port: 8025 }, console: { enabled: true } })[0]?.path).toBe('console.enabled');
    expect(() =>
      parseConfig({ ...BASE, http: { host: '0.0.0.0', port: 8025, token: 'a-token-of-sixteen-chars' }, console: { enabled: true } }, { env: {}, baseDir: '/' }),
    ).not.toThrow();
  });

  it('refuses a scope naming no SMTP user, and a user with no password', () => {
    const found = problems({ ...BASE, http: { port: 8025 }, console: { enabled: true, users: [{ username: 'ana', scope: { users: ['nobody'] } }] } });
    expect(found.map((p) => p.path).sort()).toEqual(['console.users[0]', 'console.users[0].scope.users[0]']);
  });

  it('is on in the embedded default on loopback, and off when MAILTRAIL_HTTP binds beyond it', () => {
    expect(embeddedDefault({}, '/tmp').console.enabled).toBe(true);
    expect(embeddedDefault({ MAILTRAIL_HTTP: '0.0.0.0:8025' }, '/tmp').console.enabled).toBe(false);
    expect(embeddedDefault({ MAILTRAIL_HTTP: 'off' }, '/tmp').console.enabled).toBe(false);
  });
});
