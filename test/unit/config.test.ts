import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/password.js';
import { ConfigError } from '../../src/config/config-error.js';
import { describeConfig, loadConfig, loadTrailConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { parseDuration, parseSize } from '../../src/config/units.js';

const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailtrail-config-'));
  dirs.push(dir);
  return dir;
}

/** Writes `yaml` as `<tmp>/etc/mailtrail.yaml` and returns the folder holding it. */
function writeConfig(yaml: string): { dir: string; file: string } {
  const dir = join(tempDir(), 'etc');
  mkdirSync(dir);
  const file = join(dir, 'mailtrail.yaml');
  writeFileSync(file, yaml);
  return { dir, file };
}

function load(yaml: string, env: NodeJS.ProcessEnv = {}): Config {
  const { file } = writeConfig(yaml);
  return loadConfig({ file, env, cwd: '/' });
}

/** The ConfigError thrown by `fn`; fails the test if none is thrown. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const MINIMAL = `
listen: [{ port: 2525 }]
upstreams: [{ name: ses, url: "smtp://smtp.example.com" }]
`;

describe('embedded default', () => {
  it('listens on loopback, lets loopback relay and delivers to the local sink', () => {
    const config = loadConfig({ env: {}, cwd: '/srv/app' });
    expect(config.listen).toEqual([{ host: '127.0.0.1', port: 2525, implicitTls: false, proxyProtocol: false, trustedProxies: [], mode: 'passthrough' }]);
    expect(config.clients).toEqual({
      networks: ['127.0.0.0/8', '::1/128'],
      users: [],
      requireTls: 'except-loopback',
      allowInsecureAuth: false,
      rateLimits: {
        perUser: { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null },
        perIp: { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null },
        maxTracked: 10_000,
      },
      authLockout: { failures: 10, window: 600_000, lockout: 300_000, maxLockout: 3_600_000, maxTracked: 10_000 },
    });
    expect(config.dataDir).toBe('/srv/app/data');
    expect(config.audit.file).toBe('/srv/app/data/audit.log');
    expect(config.localSink).toEqual({ dir: '/srv/app/data/sink', keep: 100 });
    expect(config.upstreams).toHaveLength(1);
    expect(config.upstreams[0]).toMatchObject({
      name: 'local-sink',
      host: '127.0.0.1',
      port: 0,
      implicitTls: false,
      auth: null,
      tls: { mode: 'none' },
    });
  });

  it('relays to MAILTRAIL_UPSTREAM instead of the local sink when it is set', () => {
    const config = loadConfig({ env: { MAILTRAIL_UPSTREAM: 'smtp://user:p%40ss@mail.example.com:2587' }, cwd: '/srv' });
    expect(config.localSink).toBeNull();
    expect(config.upstreams).toHaveLength(1);
    expect(config.upstreams[0]).toMatchObject({
      name: 'upstream',
      host: 'mail.example.com',
      port: 2587,
      auth: { user: 'user', pass: 'p@ss' },
      tls: { mode: 'required', verify: true },
    });
  });

  it('takes the upstream TLS mode from MAILTRAIL_UPSTREAM_TLS, for a plain local catcher', () => {
    const config = loadConfig({ env: { MAILTRAIL_UPSTREAM: 'smtp://127.0.0.1:1025', MAILTRAIL_UPSTREAM_TLS: 'none' }, cwd: '/srv' });
    expect(config.upstreams[0]).toMatchObject({ host: '127.0.0.1', port: 1025, tls: { mode: 'none' } });
  });

  it('reports an invalid MAILTRAIL_UPSTREAM_TLS under the variable name', () => {
    const err = configError(() => loadConfig({ env: { MAILTRAIL_UPSTREAM: 'smtp://127.0.0.1:1025', MAILTRAIL_UPSTREAM_TLS: 'off' }, cwd: '/' }));
    expect(err.problems.map((p) => p.path)).toEqual(['MAILTRAIL_UPSTREAM_TLS']);
  });

  it('says a port over 65535 is out of range instead of "not a URL", without echoing the URL', () => {
    const err = configError(() => loadConfig({ env: { MAILTRAIL_UPSTREAM: 'smtp://u:Hunter2Secret@h.example:99999' }, cwd: '/' }));
    expect(err.problems).toEqual([{ path: 'MAILTRAIL_UPSTREAM', message: 'port must be between 1 and 65535' }]);
    expect(err.message).not.toContain('Hunter2Secret');
  });

  it('reports an invalid MAILTRAIL_UPSTREAM under the variable name without echoing it', () => {
    const err = configError(() => loadConfig({ env: { MAILTRAIL_UPSTREAM: 'http://u:Hunter2Secret@x' }, cwd: '/' }));
    expect(err.problems).toEqual([{ path: 'MAILTRAIL_UPSTREAM', message: 'not an smtp:// or smtps:// URL' }]);
    expect(err.message).not.toContain('Hunter2Secret');
  });

  it('honours MAILTRAIL_LISTEN and MAILTRAIL_DATA_DIR', () => {
    const config = loadConfig({ env: { MAILTRAIL_LISTEN: '[::1]:2600', MAILTRAIL_DATA_DIR: 'var' }, cwd: '/srv' });
    expect(config.listen).toEqual([{ host: '::1', port: 2600, implicitTls: false, proxyProtocol: false, trustedProxies: [], mode: 'passthrough' }]);
    expect(config.dataDir).toBe('/srv/var');
    expect(config.localSink?.dir).toBe('/srv/var/sink');
  });

  it('reports a malformed MAILTRAIL_LISTEN under the variable name', () => {
    const err = configError(() => loadConfig({ env: { MAILTRAIL_LISTEN: 'localhost' }, cwd: '/' }));
    expect(err.problems.map((p) => p.path)).toEqual(['MAILTRAIL_LISTEN']);
  });

  it('loads the file named by MAILTRAIL_CONFIG when no file is given', () => {
    const { file } = writeConfig(MINIMAL);
    const config = loadConfig({ env: { MAILTRAIL_CONFIG: file }, cwd: '/' });
    expect(config.upstreams[0]?.name).toBe('ses');
    expect(config.localSink).toBeNull();
  });
});

describe('config file', () => {
  it('normalises a full valid file into the Config shape', async () => {
    const hash = await hashPassword('ops-password');
    const config = load(
      `
hostname: relay.example.com
dataDir: /var/lib/mailtrail
log: { level: debug }
listen:
  - host: 127.0.0.1
    port: 2525
  - host: 0.0.0.0
    port: 4650
    implicitTls: true
tls: { cert: /etc/certs/server.crt, key: /etc/certs/server.key }
clients:
  networks: [127.0.0.0/8, "::1/128", 10.1.2.3]
  users:
    - username: billing
      password: \${BILLING_SMTP_PASSWORD}
      allowedSenders: ["@example.com", "alerts@example.org"]
    - username: ops
      passwordHash: "${hash}"
  requireTls: true
  allowInsecureAuth: false
limits: { maxMessageSize: 35MB, maxRecipients: 100, maxConnections: 500, maxConnectionsPerIp: 50, memoryBufferSize: 512KB }
timeouts: { clientIdle: 5m, relay: 90s, shutdown: 0 }
upstreams:
  - name: ses
    url: smtp://AKIAEXAMPLE:pa%2Fss@email-smtp.eu-west-1.amazonaws.com:587
    tls: { mode: required, ca: null, verify: true }
    pool: { maxConnections: 10 }
    timeouts: { connect: 10s, greeting: 10s, socket: 60s, total: 120s }
  - name: backup
    url: smtps://[2001:db8::25]
    auth: { user: relay, pass: backup-pass }
    tls: { ca: /etc/certs/ca.pem, verify: false, servername: smtp.backup.example }
    pool: { maxConnections: 2, maxMessages: 20, idleTimeout: 30s }
    ehloName: relay.example.com
audit: { file: /var/log/mailtrail/audit.log, fsync: true, subject: true }
unknownOutcomeReply: 250
`,
      { BILLING_SMTP_PASSWORD: 'billing-password' },
    );
    const expected: Config = {
      listen: [
        { host: '127.0.0.1', port: 2525, implicitTls: false, proxyProtocol: false, trustedProxies: [], mode: 'passthrough' },
        { host: '0.0.0.0', port: 4650, implicitTls: true, proxyProtocol: false, trustedProxies: [], mode: 'passthrough' },
      ],
      tls: { cert: '/etc/certs/server.crt', key: '/etc/certs/server.key' },
      clients: {
        networks: ['127.0.0.0/8', '::1/128', '10.1.2.3/32'],
        users: [
          {
            username: 'billing',
            password: 'billing-password',
            passwordHash: null,
            allowedSenders: ['@example.com', 'alerts@example.org'],
            mode: null,
          },
          { username: 'ops', password: null, passwordHash: hash, allowedSenders: [], mode: null },
        ],
        requireTls: true,
        allowInsecureAuth: false,
        rateLimits: {
          perUser: { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null },
          perIp: { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null },
          maxTracked: 10_000,
        },
        authLockout: { failures: 10, window: 600_000, lockout: 300_000, maxLockout: 3_600_000, maxTracked: 10_000 },
      },
      limits: {
        maxMessageSize: 35 * 2 ** 20,
        maxRecipients: 100,
        maxConnections: 500,
        maxConnectionsPerIp: 50,
        memoryBufferSize: 512 * 1024,
        softErrorLimit: 10,
        hardErrorLimit: 20,
        errorDelay: 1_000,
        recordedRefusals: 5,
        connectionRatePerIp: 30,
        connectionRateExempt: ['127.0.0.0/8', '::1/128', '10.1.2.3/32'],
      },
      timeouts: { clientIdle: 300_000, command: 360_000, session: 600_000, dataMinRate: 500, relay: 90_000, proxyHeader: 5_000, shutdown: 0 },
      upstreams: [
        {
          name: 'ses',
          host: 'email-smtp.eu-west-1.amazonaws.com',
          port: 587,
          implicitTls: false,
          auth: { type: 'password', user: 'AKIAEXAMPLE', pass: 'pa/ss' },
          tls: { mode: 'required', ca: null, verify: true, servername: null },
          pool: { maxConnections: 10, maxMessages: 100, idleTimeout: 60_000, maxWait: 5_000, shared: false },
          timeouts: { connect: 10_000, greeting: 10_000, socket: 60_000, total: 120_000 },
          ehloName: null,
          breaker: { failures: 5, window: null, failureRate: 0.5, cooldown: 30_000 },
          rateLimit: { messagesPerSecond: null, burst: 1, maxWait: null, backoff: { initial: 100, max: 10_000, decay: 10_000 } },
          probe: { enabled: true, interval: 30_000, timeout: 10_000 },
        },
        {
          name: 'backup',
          host: '2001:db8::25',
          port: 465,
          implicitTls: true,
          auth: { type: 'password', user: 'relay', pass: 'backup-pass' },
          tls: { mode: 'required', ca: '/etc/certs/ca.pem', verify: false, servername: 'smtp.backup.example' },
          pool: { maxConnections: 2, maxMessages: 20, idleTimeout: 30_000, maxWait: 5_000, shared: false },
          timeouts: { connect: 10_000, greeting: 10_000, socket: 60_000, total: 120_000 },
          ehloName: 'relay.example.com',
          breaker: { failures: 5, window: null, failureRate: 0.5, cooldown: 30_000 },
          rateLimit: { messagesPerSecond: null, burst: 1, maxWait: null, backoff: { initial: 100, max: 10_000, decay: 10_000 } },
          probe: { enabled: true, interval: 30_000, timeout: 10_000 },
        },
      ],
      routes: [],
      audit: {
        file: '/var/log/mailtrail/audit.log',
        fsync: true,
        subject: true,
        chain: true,
        checkpoint: { every: 1000, interval: 60_000, signingKey: null, file: null },
        rotate: null,
        onWriteFailure: 'refuse',
        minFreeSpace: 8 * 1024 * 1024,
        privacy: 'clear',
        hmacKey: null,
        duplicateWindow: 86_400_000,
      },
      spool: {
        dir: '/var/lib/mailtrail/spool',
        hybridWait: 10_000,
        retry: { first: 300_000, max: 3_600_000 },
        maxAge: 5 * 86_400_000,
        minFreeSpace: 256 * 2 ** 20,
        dsn: true,
        unknownOutcome: 'hold',
        concurrency: 10,
        events: [],
      },
      http: null,
      console: { enabled: false, users: [], sessionIdle: 1_800_000, secureCookies: false },
      alerts: {
        cooldown: 600_000,
        sinks: [],
        rules: [],
        delivery: { queueSize: 100, retries: 3, timeout: 10_000, backoff: 1_000 },
        spool: { oldest: 3_600_000, growing: 1_800_000, growingMin: 100 },
      },
      log: { level: 'debug' },
      instance: { id: `${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}-2525` },
      workers: { count: 1, allowLocalLimits: false },
      state: { redis: null, prefix: 'mailtrail:', expectedInstances: 1, timeout: 250, leaseTtl: 30_000 },
      hostname: 'relay.example.com',
      dataDir: '/var/lib/mailtrail',
      localSink: null,
      unknownOutcomeReply: { code: 250 },
    };
    expect(config).toEqual(expected);
  });

  it('fills every default for a minimal file', () => {
    const config = load(MINIMAL);
    expect(config.listen).toEqual([{ host: '127.0.0.1', port: 2525, implicitTls: false, proxyProtocol: false, trustedProxies: [], mode: 'passthrough' }]);
    expect(config.tls).toBeNull();
    expect(config.clients).toEqual({
      networks: [],
      users: [],
      requireTls: 'except-loopback',
      allowInsecureAuth: false,
      rateLimits: {
        perUser: { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null },
        perIp: { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null },
        maxTracked: 10_000,
      },
      authLockout: { failures: 10, window: 600_000, lockout: 300_000, maxLockout: 3_600_000, maxTracked: 10_000 },
    });
    expect(config.limits).toEqual({
      maxMessageSize: 35 * 2 ** 20,
      maxRecipients: 100,
      maxConnections: 500,
      maxConnectionsPerIp: 50,
      memoryBufferSize: 2 ** 20,
      softErrorLimit: 10,
      hardErrorLimit: 20,
      errorDelay: 1_000,
      recordedRefusals: 5,
      connectionRatePerIp: 30,
      connectionRateExempt: [],
    });
    expect(config.timeouts).toEqual({
      clientIdle: 60_000,
      command: 120_000,
      session: 600_000,
      dataMinRate: 500,
      relay: 120_000,
      proxyHeader: 5_000,
      shutdown: 30_000,
    });
    expect(config.upstreams[0]).toMatchObject({
      port: 587,
      auth: null,
      tls: { mode: 'required', ca: null, verify: true, servername: null },
      pool: { maxConnections: 5, maxMessages: 100, idleTimeout: 60_000, maxWait: 5_000, shared: false },
      timeouts: { connect: 10_000, greeting: 10_000, socket: 60_000, total: 120_000 },
      ehloName: null,
      breaker: { failures: 5, window: null, failureRate: 0.5, cooldown: 30_000 },
      rateLimit: { messagesPerSecond: null, burst: 1, maxWait: null, backoff: { initial: 100, max: 10_000, decay: 10_000 } },
    });
    expect(config.routes).toEqual([]);
    expect(config.audit).toMatchObject({ fsync: false, subject: false });
    expect(config.log.level).toBe('info');
    expect(config.hostname).toBe(hostname());
    expect(config.unknownOutcomeReply).toEqual({ code: 451 });
  });

  it('gives smtps:// upstreams port 465 and implicit TLS', () => {
    const config = load(`
listen: [{ port: 2525 }]
upstreams: [{ name: a, url: "smtps://smtp.example.com", tls: { mode: opportunistic } }]
`);
    expect(config.upstreams[0]).toMatchObject({ port: 465, implicitTls: true, tls: { mode: 'required' } });
  });

  it('reports every problem at once, each with its key path', () => {
    const err = configError(() =>
      load(`
listen: [{ host: 127.0.0.1 }]
clients:
  networks: [10.0.0.0/33]
  users:
    - username: a
    - username: b
      password: x
      passwordHash: y
limits: { maxMessageSize: lots }
timeouts: { relay: soon }
upstreams:
  - name: ses
    url: http://example.com
  - name: ses
    url: smtp://example.com
log: { level: loud }
unknownOutcomeReply: 550
`),
    );
    expect(err.code).toBe('ECONFIG');
    expect(err.problems).toEqual(
      expect.arrayContaining([
        { path: 'listen[0].port', message: 'required' },
        { path: 'clients.networks[0]', message: 'not an IPv4 or IPv6 CIDR (e.g. 10.0.0.0/8)' },
        { path: 'clients.users[0]', message: 'needs exactly one of password or passwordHash' },
        { path: 'clients.users[1]', message: 'needs exactly one of password or passwordHash' },
        { path: 'clients.users[1].passwordHash', message: 'not a scrypt hash in the form scrypt$N$r$p$salt$hash' },
        { path: 'limits.maxMessageSize', message: 'not a size (e.g. 35MB)' },
        { path: 'timeouts.relay', message: 'not a duration (e.g. 10s)' },
        { path: 'upstreams[0].url', message: 'not an smtp:// or smtps:// URL' },
        { path: 'upstreams[1].name', message: 'duplicate upstream name' },
        { path: 'log.level', message: 'must be one of: fatal, error, warn, info, debug, trace, silent' },
        { path: 'unknownOutcomeReply', message: 'must be one of: 451, 250' },
      ]),
    );
    expect(err.message).toContain('\nlimits.maxMessageSize: not a size (e.g. 35MB)\n');
  });

  it('requires at least one listener and one upstream', () => {
    const err = configError(() => load('listen: []\nupstreams: []\n'));
    expect(err.problems).toEqual([
      { path: 'listen', message: 'needs at least 1 entry' },
      { path: 'upstreams', message: 'needs at least 1 entry' },
    ]);
  });

  it('never puts a secret in the error message', () => {
    const secret = 'Zebra-Quartz-9917';
    const err = configError(() =>
      load(`
listen: [{ port: 2525 }]
clients:
  users:
    - username: billing
      password: ${secret}
      passwordHash: ${secret}
upstreams:
  - name: ses
    url: "smtp://user:${secret}@smtp.example.com/path"
    auth: { user: other, pass: ${secret} }
  - name: bad
    url: "ftp://user:${secret}@smtp.example.com"
`),
    );
    expect(err.problems.length).toBeGreaterThanOrEqual(3);
    expect(err.message).not.toContain(secret);
    expect(JSON.stringify(err.problems)).not.toContain(secret);
  });

  it('does not echo the offending line of a YAML syntax error', () => {
    const secret = 'Zebra-Quartz-9917';
    const err = configError(() => load(`listen: [{ port: 2525 }]\nupstreams:\n  - url: "smtp://u:${secret}@h\n  bad: [\n`));
    expect(err.problems.length).toBeGreaterThan(0);
    expect(err.problems[0]?.message).toMatch(/^YAML: .*line \d+/);
    expect(err.message).not.toContain(secret);
  });

  it('reports the first YAML syntax error and only counts the follow-on ones', () => {
    const err = configError(() => load('http: { host: 127.0.0.1, port: 8025, token: ${TOKEN} }\nlisten: [{ port: 2525 }]\n'));
    expect(err.problems).toHaveLength(2);
    expect(err.problems[0]?.message).toMatch(/^YAML: .*line 1/);
    expect(err.problems[1]?.message).toMatch(/^YAML: \d+ more syntax error\(s\) after this one/);
  });

  it('rejects unknown keys at every level, naming each', () => {
    const err = configError(() =>
      load(`
listen: [{ port: 2525, tls: true }]
limit: { maxRecipients: 5 }
upstreams: [{ name: a, url: "smtp://h.example", timeout: { connect: 5s } }]
`),
    );
    expect(err.problems).toEqual([
      { path: 'listen[0].tls', message: 'unknown key' },
      { path: 'upstreams[0].timeout', message: 'unknown key' },
      { path: 'limit', message: 'unknown key' },
    ]);
  });

  it('refuses a soft error limit above the hard one, and exempts the listed networks from the connection rate unless told otherwise', () => {
    const err = configError(() =>
      load(`
listen: [{ port: 2525 }]
upstreams: [{ name: a, url: "smtp://h.example" }]
limits: { softErrorLimit: 30, hardErrorLimit: 20, connectionRateExempt: [not-a-network] }
`),
    );
    expect(err.problems).toEqual([
      { path: 'limits.connectionRateExempt[0]', message: 'not an IPv4 or IPv6 CIDR (e.g. 10.0.0.0/8)' },
      { path: 'limits.softErrorLimit', message: 'must not be above limits.hardErrorLimit' },
    ]);
    const own = load(`
listen: [{ port: 2525 }]
clients: { networks: [10.0.0.0/8] }
upstreams: [{ name: a, url: "smtp://h.example" }]
limits: { connectionRatePerIp: null, connectionRateExempt: [] }
`);
    expect(own.limits).toMatchObject({ connectionRatePerIp: null, connectionRateExempt: [] });
  });

  it('refuses credentials given both in the URL and in auth', () => {
    const err = configError(() =>
      load(`
listen: [{ port: 2525 }]
upstreams: [{ name: a, url: "smtp://u:p@h.example", auth: { user: u, pass: p } }]
`),
    );
    expect(err.problems).toEqual([{ path: 'upstreams[0].auth', message: 'credentials are given in both url and auth; keep one' }]);
  });
});

describe('environment interpolation', () => {
  it('replaces ${NAME} and ${NAME:-default} in string values, and $${ stays literal', () => {
    const config = load(
      `
hostname: \${MT_HOST:-relay.example.com}
listen: [{ port: "\${MT_PORT}" }]
clients:
  users: [{ username: app, password: "\${MT_PASS}-\${MT_EMPTY:-x}$\${NOT_A_REF}" }]
upstreams: [{ name: a, url: "smtp://\${MT_UPSTREAM_HOST}" }]
`,
      { MT_PORT: '2626', MT_PASS: 'pw', MT_EMPTY: '', MT_UPSTREAM_HOST: 'smtp.example.com' },
    );
    expect(config.hostname).toBe('relay.example.com');
    expect(config.listen[0]?.port).toBe(2626);
    expect(config.clients.users[0]?.password).toBe('pw-x${NOT_A_REF}');
    expect(config.upstreams[0]?.host).toBe('smtp.example.com');
  });

  it('reports an unset variable at its key path, naming the variable and nothing else about it', () => {
    const err = configError(() =>
      load(`
listen: [{ port: 2525 }]
clients:
  users: [{ username: billing, password: "\${BILLING_SMTP_PASSWORD}" }]
upstreams: [{ name: a, url: "smtp://h.example" }]
`),
    );
    expect(err.problems).toEqual([{ path: 'clients.users[0].password', message: 'environment variable BILLING_SMTP_PASSWORD is not set' }]);
  });
});

describe('units', () => {
  it.each([
    [1024, 1024],
    ['1024', 1024],
    ['512KB', 512 * 1024],
    ['35MB', 35 * 2 ** 20],
    ['1MiB', 2 ** 20],
    ['1.5 mb', 1.5 * 2 ** 20],
    ['2G', 2 * 2 ** 30],
    ['10B', 10],
  ])('parses the size %j as %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  it.each([['lots'], ['-1'], [-1], ['10 XB'], [''], [true], [null], [Number.NaN], ['1e3'], ['constructor']])('refuses %j as a size', (input) => {
    expect(parseSize(input)).toBeNull();
  });

  it.each([
    [250, 250],
    ['250', 250],
    ['500ms', 500],
    ['10s', 10_000],
    ['1.5s', 1_500],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['5d', 432_000_000],
  ])('parses the duration %j as %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each([['soon'], ['10 sec'], ['-5s'], [{}], [Infinity]])('refuses %j as a duration', (input) => {
    expect(parseDuration(input)).toBeNull();
  });

  it('refuses durations beyond what a Node timer can hold', () => {
    const err = configError(() => load(`${MINIMAL}timeouts: { relay: 1000h }\n`));
    expect(err.problems).toEqual([{ path: 'timeouts.relay', message: 'must be at most 2147483647' }]);
  });
});

describe('client deadlines and AUTH lockout', () => {
  it('derives timeouts.command from clientIdle when it is not given, so raising the idle timeout alone stays consistent', () => {
    expect(load(`${MINIMAL}timeouts: { clientIdle: 5m }\n`).timeouts).toMatchObject({ clientIdle: 300_000, command: 360_000 });
  });

  it('takes timeouts.command, session and dataMinRate as given, the rate as a size per second', () => {
    const config = load(`${MINIMAL}timeouts: { command: 90s, session: 30m, dataMinRate: 2KB }\n`);
    expect(config.timeouts).toMatchObject({ command: 90_000, session: 1_800_000, dataMinRate: 2048 });
  });

  it('refuses a timeouts.command below clientIdle, which would cut idle clients before their idle timeout', () => {
    const err = configError(() => load(`${MINIMAL}timeouts: { clientIdle: 2m, command: 1m }\n`));
    expect(err.problems).toEqual([{ path: 'timeouts.command', message: 'must be at least clientIdle' }]);
  });

  it('refuses a dataMinRate that is not a size, or 0', () => {
    const err = configError(() => load(`${MINIMAL}timeouts: { dataMinRate: fast }\n`));
    expect(err.problems).toEqual([{ path: 'timeouts.dataMinRate', message: 'not a size per second (e.g. 500 or 1KB)' }]);
    expect(configError(() => load(`${MINIMAL}timeouts: { dataMinRate: 0 }\n`)).problems).toEqual([
      { path: 'timeouts.dataMinRate', message: 'must be at least 1' },
    ]);
  });

  it('turns the AUTH lockout off with null and refuses a maxLockout below lockout', () => {
    expect(load(`${MINIMAL}clients: { authLockout: null }\n`).clients.authLockout).toBeNull();
    const err = configError(() => load(`${MINIMAL}clients: { authLockout: { lockout: 2h } }\n`));
    expect(err.problems).toEqual([{ path: 'clients.authLockout.maxLockout', message: 'must be at least lockout' }]);
  });
});

describe('spool mode', () => {
  it("takes a mode per listener and per user, the user's null meaning the listener's", () => {
    const config = load(`
listen: [{ port: 2525, mode: spool }, { port: 2526 }]
clients: { users: [{ username: printers, password: pw-1, mode: hybrid }, { username: app, password: pw-2 }] }
upstreams: [{ name: ses, url: "smtp://smtp.example.com" }]
`);
    expect(config.listen.map((l) => l.mode)).toEqual(['spool', 'passthrough']);
    expect(config.clients.users.map((u) => u.mode)).toEqual(['hybrid', null]);
  });

  it('reads the spool section with its units, the folder relative to the file', () => {
    const { dir, file } = writeConfig(
      `${MINIMAL}spool: { dir: q, hybridWait: 3s, retry: { first: 1m, max: 2h }, maxAge: 30d, minFreeSpace: 0, unknownOutcome: resend }\n`,
    );
    const config = loadConfig({ file, env: {}, cwd: '/' });
    expect(config.spool).toMatchObject({
      dir: join(dir, 'q'),
      hybridWait: 3_000,
      retry: { first: 60_000, max: 7_200_000 },
      // An age, never a timer: past the 24.8 days a timer can hold.
      maxAge: 30 * 86_400_000,
      minFreeSpace: 0,
      unknownOutcome: 'resend',
    });
  });

  it('refuses an unknown mode, a retry.max below retry.first and an event URL that is not http(s), each at its key path', () => {
    const err = configError(() =>
      load(`
listen: [{ port: 2525, mode: queue }]
clients: { users: [{ username: a, password: pw, mode: later }] }
upstreams: [{ name: ses, url: "smtp://smtp.example.com" }]
spool: { retry: { first: 2h, max: 1h }, unknownOutcome: drop, concurrency: 0, events: [{ url: "ftp://x.example" }] }
`),
    );
    expect(err.problems.map((p) => p.path)).toEqual([
      'listen[0].mode',
      'clients.users[0].mode',
      'spool.unknownOutcome',
      'spool.concurrency',
      'spool.events[0].url',
      'spool.retry.max',
    ]);
  });
});

describe('paths', () => {
  it('resolves relative paths against the config file folder', () => {
    const { dir, file } = writeConfig(`
dataDir: state
listen: [{ port: 2525 }]
tls: { cert: certs/server.crt, key: ../certs/server.key }
upstreams: [{ name: a, url: "smtp://h.example", tls: { ca: ca.pem } }]
audit: { file: logs/audit.log }
`);
    const config = loadConfig({ file, env: {}, cwd: '/somewhere/else' });
    expect(config.dataDir).toBe(join(dir, 'state'));
    expect(config.tls).toEqual({ cert: join(dir, 'certs/server.crt'), key: join(dir, '../certs/server.key') });
    expect(config.upstreams[0]?.tls.ca).toBe(join(dir, 'ca.pem'));
    expect(config.audit.file).toBe(join(dir, 'logs/audit.log'));
  });

  it('puts the spool in the data folder by default', () => {
    const { dir, file } = writeConfig(MINIMAL);
    expect(loadConfig({ file, env: {}, cwd: '/' }).spool.dir).toBe(join(dir, 'data/spool'));
  });

  it('puts the audit trail in the data folder by default and keeps "-" for stdout', () => {
    const { dir, file } = writeConfig(MINIMAL);
    expect(loadConfig({ file, env: {}, cwd: '/' }).audit.file).toBe(join(dir, 'data/audit.log'));
    expect(load(`${MINIMAL}audit: { file: "-" }\n`).audit.file).toBe('-');
  });

  it('reads a relative config file path against cwd', () => {
    const { dir } = writeConfig(MINIMAL);
    expect(loadConfig({ file: 'etc/mailtrail.yaml', env: {}, cwd: join(dir, '..') }).upstreams[0]?.name).toBe('ses');
  });

  it('reports a missing file without a stack of YAML noise', () => {
    const err = configError(() => loadConfig({ file: join(tempDir(), 'absent.yaml'), env: {}, cwd: '/' }));
    expect(err.problems).toEqual([{ path: '', message: 'cannot read the file (ENOENT)' }]);
  });
});

describe('result', () => {
  it('is deep-frozen', () => {
    const config = load(MINIMAL);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.listen[0])).toBe(true);
    expect(Object.isFrozen(config.upstreams[0]?.timeouts)).toBe(true);
    expect(Object.isFrozen(loadConfig({ env: {}, cwd: '/' }).upstreams[0]?.tls)).toBe(true);
    expect(() => {
      (config.limits as { maxRecipients: number }).maxRecipients = 1;
    }).toThrow(TypeError);
  });

  it('can be described without passwords, hashes or upstream secrets', async () => {
    const hash = await hashPassword('x');
    const config = load(`
listen: [{ port: 2525 }]
clients:
  users:
    - { username: a, password: Zebra-Quartz-9917 }
    - { username: b, passwordHash: "${hash}" }
upstreams: [{ name: a, url: "smtp://user:Zebra-Quartz-9917@h.example" }]
`);
    const text = JSON.stringify(describeConfig(config));
    expect(text).not.toContain('Zebra-Quartz-9917');
    expect(text).not.toContain(hash);
    expect(describeConfig(config)).toMatchObject({ upstreams: [{ auth: { user: 'user', pass: '[redacted]' } }] });
  });
});

describe('the configuration the trail tools read', () => {
  const FILE = [
    'listen: [{ port: 2525 }]',
    'upstreams:',
    '  - { name: ses, url: "smtp://${SES_USER}:${SES_PASS}@email-smtp.eu-west-1.amazonaws.com:587" }',
    'alerts: { sinks: [{ name: ops, webhook: { url: "https://hooks.example.com/x", secret: "${HOOK_SECRET}" } }] }',
    'audit: { file: trail/audit.log, privacy: pseudonymize, hmacKey: "${AUDIT_KEY}" }',
  ].join('\n');

  it('needs only the audit keys: the secrets of the rest of the file need not be set', () => {
    const { dir, file } = writeConfig(FILE);
    const config = loadTrailConfig({ file, env: { AUDIT_KEY: 'k3y-0123456789abcdef' }, cwd: '/' });
    expect(config.audit).toMatchObject({ file: join(dir, 'trail', 'audit.log'), privacy: 'pseudonymize', hmacKey: 'k3y-0123456789abcdef' });
  });

  it('still reports a problem in the audit keys with its key path', () => {
    const { file } = writeConfig(FILE);
    const err = configError(() => loadTrailConfig({ file, env: {}, cwd: '/' }));
    expect(err.problems.map((p) => p.path)).toEqual(['audit.hmacKey']);
  });

  it('uses the embedded default’s trail without a file', () => {
    expect(loadTrailConfig({ env: {}, cwd: '/srv' }).audit.file).toBe('/srv/data/audit.log');
  });
});
