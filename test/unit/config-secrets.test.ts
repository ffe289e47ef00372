/**
 * `describeConfig` is what may be printed or logged of a configuration. The secret-bearing keys are
 * derived from the schema: every field that can hold text is either a secret by the one list in
 * src/config/secrets.ts or named below as public, so a text field added later fails here until
 * someone decides which it is; and a configuration that sets every secret the schema knows must come
 * out without any of them.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { z } from 'zod';
import { hashPassword } from '../../src/auth/password.js';
import { describeConfig, parseConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { SECRET_KEYS, SECRET_MAP_KEYS, URL_KEYS } from '../../src/config/secrets.js';
import { createLogger } from '../../src/logger.js';
import { schemaFields, unwrap, yamlKeyPaths } from '../helpers/config-schema.js';

/** Text fields that are not secrets, and why where it is not obvious. */
const PUBLIC_TEXT = new Set([
  'listen[].host',
  'listen[].trustedProxies',
  'instance.id',
  // Paths to the certificate and its key: the key file's contents never enter the configuration.
  'tls.cert',
  'tls.key',
  'clients.networks',
  'limits.connectionRateExempt',
  'clients.users[].username',
  'clients.users[].allowedSenders',
  'limits.connectionRateExempt',
  'upstreams[].name',
  // The SMTP user name (an SES access key id is one): identifies the account, does not open it.
  'upstreams[].auth.user',
  // OAuth2: who the application is and where it asks; the secrets are clientSecret and refreshToken.
  'upstreams[].auth.tenantId',
  'upstreams[].auth.clientId',
  'upstreams[].auth.tokenUrl',
  'upstreams[].auth.scope',
  'upstreams[].auth.ca',
  // Paths: the private keys they hold are read by the token sources and never enter the configuration.
  'upstreams[].auth.clientCertificate.key',
  'upstreams[].auth.clientCertificate.cert',
  'upstreams[].auth.serviceAccountKeyFile',
  'upstreams[].tls.ca',
  'upstreams[].tls.servername',
  'upstreams[].ehloName',
  'routes[].name',
  // The key prefix in Redis.
  'state.prefix',
  'routes[].match.users',
  'routes[].match.senders',
  'routes[].match.networks',
  'routes[].upstreams',
  'audit.file',
  // A path; the signing key itself is read by the checkpoint signer and never enters the configuration.
  'audit.checkpoint.signingKey',
  'audit.checkpoint.file',
  'spool.dir',
  'http.host',
  'console.users[].username',
  // SMTP usernames, as routes[].match.users.
  'console.users[].scope.users',
  'alerts.sinks[].name',
  'alerts.sinks[].email.tls.ca',
  'alerts.sinks[].email.from',
  'alerts.sinks[].email.to',
  'alerts.rules[].name',
  'alerts.rules[].sinks',
  'hostname',
  'dataDir',
]);

/** True when the field can hold free text: a string, or a list or mapping of strings. */
function holdsText(schema: z.ZodType): boolean {
  const s = unwrap(schema);
  if (s instanceof z.ZodString) return true;
  if (s instanceof z.ZodArray) return holdsText(s.element as z.ZodType);
  if (s instanceof z.ZodRecord) return holdsText(s.valueType as z.ZodType);
  if (s instanceof z.ZodUnion) return (s.options as z.ZodType[]).some(holdsText);
  return false;
}

const isSecretKey = (key: string): boolean => SECRET_KEYS.has(key) || SECRET_MAP_KEYS.has(key) || URL_KEYS.has(key);

const textFields = schemaFields(configSchema).filter((f) => holdsText(f.schema));
const secretPaths = textFields.filter((f) => isSecretKey(f.key)).map((f) => f.path);

/**
 * The secret parts of the values in a raw config document, found by key like the code does: the
 * whole value; every value of a secret mapping; a URL's password, path and query.
 */
function secretValues(value: unknown, key = ''): string[] {
  if (value === null || value === undefined) return [];
  if (URL_KEYS.has(key) && typeof value === 'string') {
    const url = new URL(value);
    return [url.password, url.pathname.replace(/^\/+/, ''), url.search.slice(1)].filter((part) => part !== '');
  }
  if (SECRET_KEYS.has(key)) return [typeof value === 'string' ? value : JSON.stringify(value)];
  if (SECRET_MAP_KEYS.has(key)) return Object.values(value as Record<string, unknown>).map(String);
  if (Array.isArray(value)) return value.flatMap((item) => secretValues(item));
  if (typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => secretValues(v, k));
  return [];
}

/** A configuration that sets every secret the schema knows, each to a value found nowhere else. */
async function everySecret(): Promise<Record<string, unknown>> {
  return YAML.parse(`
listen: [{ port: 2525 }]
tls: { cert: /etc/mailtrail/cert.pem, key: /etc/mailtrail/key.pem }
clients:
  users:
    - { username: ana, password: Ana-Password-Quartz-1 }
    - { username: bo, passwordHash: "${await hashPassword('Bo-Password-Quartz-2')}" }
upstreams:
  - { name: ses, url: "smtp://AKIAEXAMPLE:Upstream-Url-Pass-Quartz-3@email-smtp.eu-west-1.amazonaws.com:587" }
  - { name: backup, url: "smtps://smtp.backup.example", auth: { user: relay, pass: Upstream-Auth-Pass-Quartz-4 } }
  - name: idp
    url: smtp://smtp.example.net:587
    auth:
      type: oauth2
      user: app@example.net
      tokenUrl: https://idp.example.net/oauth2/token
      clientId: mailtrail
      clientSecret: Client-Secret-Quartz-14
      refreshToken: Refresh-Token-Quartz-15
      scope: https://mail.example.net/send
audit:
  privacy: pseudonymize
  hmacKey: Hmac-Key-Quartz-5-0123456789
  checkpoint: { signingKey: /etc/mailtrail/checkpoint.key }
spool:
  events:
    - { url: "https://events.example.com/hooks/Events-Path-Quartz-14?key=Events-Query-Quartz-15", secret: Events-Secret-Quartz-16 }
http: { host: 127.0.0.1, port: 8025, token: Http-Token-Quartz-6-0123456789 }
state: { redis: "rediss://default:Redis-Pass-Quartz-14@redis.example.org:6380" }
console:
  enabled: true
  users:
    - { username: ops, password: Console-Password-Quartz-14 }
    - { username: bo-console, passwordHash: "${await hashPassword('Console-Password-Quartz-15')}", scope: { users: [bo] } }
alerts:
  sinks:
    - name: chat
      webhook:
        url: "https://hook-user:Webhook-Userinfo-Quartz-7@hooks.example.com/services/Webhook-Path-Quartz-8?key=Webhook-Query-Quartz-9"
        secret: Webhook-Secret-Quartz-10
        headers: { Authorization: "Bearer Webhook-Header-Quartz-11", X-Api-Key: Webhook-Header-Quartz-12 }
    - name: mail
      email:
        url: "smtps://alerts:Email-Pass-Quartz-13@mail.example.org"
        from: mailtrail@example.org
        to: [ops@example.org]
`) as Record<string, unknown>;
}

describe('the secrets of a configuration', () => {
  it('are known for every text field of the schema: each is a secret key or named public here', () => {
    const unclassified = textFields.filter((f) => !isSecretKey(f.key) && !PUBLIC_TEXT.has(f.path)).map((f) => f.path);
    expect(unclassified, 'text fields neither in src/config/secrets.ts nor in PUBLIC_TEXT').toEqual([]);
    const stale = [...PUBLIC_TEXT].filter((p) => !textFields.some((f) => f.path === p));
    expect(stale, 'PUBLIC_TEXT names fields the schema no longer has').toEqual([]);
  });

  it('include the ones everybody would name', () => {
    expect(secretPaths).toEqual(
      expect.arrayContaining([
        'clients.users[].password',
        'clients.users[].passwordHash',
        'upstreams[].url',
        'upstreams[].auth.pass',
        'upstreams[].auth.clientSecret',
        'upstreams[].auth.refreshToken',
        'audit.hmacKey',
        'http.token',
        'alerts.sinks[].webhook.url',
        'alerts.sinks[].webhook.secret',
        'alerts.sinks[].webhook.headers',
        'alerts.sinks[].email.url',
        'spool.events[].url',
        'spool.events[].secret',
      ]),
    );
  });

  it('are all set by the test configuration', async () => {
    const set = new Set(yamlKeyPaths(await everySecret()));
    expect(secretPaths.filter((p) => !set.has(p))).toEqual([]);
  });

  it('never appear in describeConfig, which still says what is configured', async () => {
    const raw = await everySecret();
    const secrets = secretValues(raw);
    expect(secrets.length).toBeGreaterThanOrEqual(secretPaths.length);
    const described = describeConfig(parseConfig(raw, { env: {}, baseDir: '/etc/mailtrail' }));
    const text = JSON.stringify(described);
    expect(secrets.filter((s) => text.includes(s))).toEqual([]);
    // Only the secrets went: names, hosts, header names and key paths are there to read.
    expect(described).toMatchObject({
      clients: {
        users: [
          { username: 'ana', password: '[redacted]', passwordHash: null },
          { username: 'bo', password: null, passwordHash: '[redacted]' },
        ],
      },
      upstreams: [
        { name: 'ses', host: 'email-smtp.eu-west-1.amazonaws.com', auth: { user: 'AKIAEXAMPLE', pass: '[redacted]' } },
        { name: 'backup', auth: { user: 'relay', pass: '[redacted]' } },
        { name: 'idp', auth: { type: 'oauth2', user: 'app@example.net', clientId: 'mailtrail', clientSecret: '[redacted]', refreshToken: '[redacted]' } },
      ],
      audit: { hmacKey: '[redacted]', checkpoint: { signingKey: '/etc/mailtrail/checkpoint.key' } },
      spool: { events: [{ url: 'https://events.example.com/[redacted]', secret: '[redacted]' }] },
      http: { host: '127.0.0.1', token: '[redacted]' },
      alerts: {
        sinks: [
          {
            name: 'chat',
            url: 'https://hooks.example.com/[redacted]',
            secret: '[redacted]',
            headers: { Authorization: '[redacted]', 'X-Api-Key': '[redacted]' },
          },
          { name: 'mail', smtp: { host: 'mail.example.org', auth: { user: 'alerts', pass: '[redacted]' } } },
        ],
      },
      state: { redis: 'rediss://redis.example.org:6380/[redacted]' },
    });
  });

  it('never appear in the operational log, even if a whole configuration were logged', async () => {
    const raw = await everySecret();
    const config = parseConfig(raw, { env: {}, baseDir: '/etc/mailtrail' });
    let logged = '';
    const log = createLogger('info', new Writable({ write: (chunk: Buffer, _enc, done) => ((logged += chunk.toString()), done()) }));
    log.info({ config: describeConfig(config) }, 'configuration');
    log.info({ http: config.http, audit: config.audit }, 'parts of it');
    expect(logged).toContain('configuration');
    expect(secretValues(raw).filter((s) => logged.includes(s))).toEqual([]);
  });
});
