import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { ConfigError } from '../../src/config/config-error.js';
import { describeConfig, parseConfig } from '../../src/config/load.js';
import { workersProblem } from '../../src/config/local-limits.js';
import { toInstance } from '../../src/config/sections/instance.js';
import type { Config } from '../../src/config/types.js';

const BASE = `
listen: [{ port: 2525 }]
upstreams: [{ name: ses, url: "smtp://smtp.example.com" }]
`;

function load(extra: string, base = BASE): Config {
  return parseConfig(YAML.parse(base + extra) as unknown, { env: {}, baseDir: '/' });
}

function problems(extra: string, base = BASE): string[] {
  try {
    load(extra, base);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('instance.id', () => {
  it('is the configured name', () => {
    expect(load('instance: { id: mt-a }').instance.id).toBe('mt-a');
  });

  it('defaults to the host name and the first listener port, made a safe name', () => {
    expect(toInstance({}, 2525, 'mail1.example.com')).toEqual({ id: 'mail1.example.com-2525' });
    expect(toInstance({}, 25, 'weird host/name')).toEqual({ id: 'weird-host-name-25' });
    expect(toInstance({}, 2525, 'x'.repeat(80)).id).toHaveLength(63);
    expect(load('').instance.id).toMatch(/-2525$/);
  });

  it('refuses a name that is not safe in a file name, a label or a shell', () => {
    for (const bad of ['"a b"', '"../x"', '"-lead"', '"x;rm"', `"${'a'.repeat(64)}"`]) {
      expect(problems(`instance: { id: ${bad} }`)).toEqual([expect.stringMatching(/^instance\.id: must be letters, digits/)]);
    }
  });
});

describe('listen[].proxyProtocol', () => {
  it('takes trusted proxies as CIDRs', () => {
    const config = parseConfig(
      YAML.parse(`
listen: [{ port: 2525, proxyProtocol: true, trustedProxies: [10.0.0.0/24, "fd00::1"] }]
upstreams: [{ name: ses, url: "smtp://smtp.example.com" }]
`) as unknown,
      { env: {}, baseDir: '/' },
    );
    expect(config.listen[0]).toMatchObject({ proxyProtocol: true, trustedProxies: ['10.0.0.0/24', 'fd00::1/128'] });
  });

  it('needs trustedProxies, and trustedProxies needs it', () => {
    const raw = (listen: string) => () =>
      parseConfig(YAML.parse(`listen: [${listen}]\nupstreams: [{ name: ses, url: "smtp://smtp.example.com" }]`) as unknown, { env: {}, baseDir: '/' });
    expect(() => raw('{ port: 2525, proxyProtocol: true }')()).toThrow(/listen\[0\]\.trustedProxies: is required with proxyProtocol: true/);
    expect(() => raw('{ port: 2525, trustedProxies: [10.0.0.1] }')()).toThrow(/listen\[0\]\.trustedProxies: only applies with proxyProtocol: true/);
    expect(() => raw('{ port: 2525, proxyProtocol: true, trustedProxies: [nonsense] }')()).toThrow(
      /listen\[0\]\.trustedProxies\[0\]: not an IPv4 or IPv6 CIDR/,
    );
  });
});

describe('workers', () => {
  it('is one process by default; a number is short for { count }', () => {
    expect(load('').workers).toEqual({ count: 1, allowLocalLimits: false });
    expect(load('workers: 1').workers).toEqual({ count: 1, allowLocalLimits: false });
    expect(load('workers: { count: "3", allowLocalLimits: true }').workers).toEqual({ count: 3, allowLocalLimits: true });
    expect(problems('workers: 0')).toEqual([expect.stringMatching(/^workers(\.count)?: /)]);
  });

  it('refuses more than one process while limits are kept per process, naming every such key', () => {
    const found = problems(
      `
workers: 2
clients:
  users: [{ username: app, password: secret-password }]
  rateLimits: { perIp: { messagesPerMinute: 60 } }
upstreams: [{ name: ses, url: "smtp://smtp.example.com", rateLimit: { messagesPerSecond: 14 } }]
`,
      'listen: [{ port: 2525 }]',
    );
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^workers\.count: 2 processes would each allow the full limit of /);
    for (const key of [
      'clients.rateLimits.perIp.messagesPerMinute',
      'upstreams[0].rateLimit.messagesPerSecond',
      'limits.connectionRatePerIp',
      'clients.authLockout',
    ]) {
      expect(found[0]).toContain(key);
    }
    expect(found[0]).toMatch(/set state\.redis .* or workers\.allowLocalLimits: true/);
  });

  it('starts several processes with state.redis, with allowLocalLimits, or with no per-process limit on', () => {
    expect(load('workers: 2\nstate: { redis: "redis://127.0.0.1:6379", expectedInstances: 2 }').workers.count).toBe(2);
    expect(load('workers: { count: 2, allowLocalLimits: true }').workers.count).toBe(2);
    expect(load('workers: 2\nlimits: { connectionRatePerIp: null }').workers.count).toBe(2);
  });

  it('judges a count given on the command line the same way', () => {
    const config = load('');
    expect(workersProblem(config, 1)).toBeNull();
    expect(workersProblem(config, 4)).toMatch(/4 processes would each allow the full limit of limits\.connectionRatePerIp/);
  });
});

describe('state.redis', () => {
  it('takes a redis:// or rediss:// URL and hides its password wherever the config is described', () => {
    const config = load('state: { redis: "rediss://default:Hunter2-Redis@cache.example.org:6380" }');
    expect(config.state.redis).toBe('rediss://default:Hunter2-Redis@cache.example.org:6380');
    expect(JSON.stringify(describeConfig(config))).not.toContain('Hunter2');
    expect(problems('state: { redis: "http://cache.example.org" }')).toEqual(['state.redis: must start with redis:// or rediss://']);
    expect(problems('state: { redis: "redis://cache.example.org/zero" }')).toEqual([
      'state.redis: may name a database number (/0) and nothing else after the host',
    ]);
  });

  it('shares nothing by default, and fills in the rest of the section when state.redis is set', () => {
    expect(load('').state).toEqual({ redis: null, prefix: 'mailtrail:', expectedInstances: 1, timeout: 250, leaseTtl: 30_000 });
    expect(load('state: { redis: "redis://10.0.0.5/2", expectedInstances: 6, timeout: 100ms }').state).toEqual({
      redis: 'redis://10.0.0.5/2',
      prefix: 'mailtrail:',
      expectedInstances: 6,
      timeout: 100,
      leaseTtl: 30_000,
    });
  });

  it('refuses more processes than state.expectedInstances, since each would keep too large a share while Redis is unreachable', () => {
    expect(problems('workers: 3\nstate: { redis: "redis://127.0.0.1:6379", expectedInstances: 2 }')).toEqual([
      expect.stringMatching(/^workers\.count: state\.expectedInstances is 2, fewer than the 3 processes: .* set it to the number of processes in the fleet/),
    ]);
    const config = load('state: { redis: "redis://127.0.0.1:6379", expectedInstances: 4 }');
    expect(workersProblem(config, 4)).toBeNull();
    expect(workersProblem(config, 5)).toMatch(/expectedInstances is 4, fewer than the 5 processes/);
  });
});
