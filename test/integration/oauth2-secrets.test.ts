/**
 * No OAuth2 secret ever leaves mailtrail: a relay started from the command line with every kind of
 * OAuth2 upstream (client secret, certificate, service account, a rotating refresh token, a wrong secret
 * that raises an alert), a real token flow and debug logging; afterwards stdout, stderr, the trail, the
 * alert webhook bodies and check-config's output are searched for the client secrets, every refresh
 * token, every access token issued and the private keys.
 */
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { CLI, ensureBuilt, startMailtrail, type MailtrailChild } from '../../soak/mailtrail-child.js';
import { startFakeUpstream, waitFor, type FakeUpstream } from '../helpers/fake-upstream.js';
import { makeOAuthCredentials, startOAuthServer, type OAuthCredentials, type OAuthServer } from '../helpers/oauth-server.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { simpleMessage } from '../helpers/relay-harness.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const run = promisify(execFile);
const CLIENT_SECRET = 'Client-Secret-Quartz-3f9a61';
const WRONG_SECRET = 'Wrong-Secret-Quartz-b27c05';
const REFRESH_TOKEN = 'Refresh-Token-Quartz-8d4e12';

let pki: TestPki;
let idp: OAuthServer;
let dir: string;
let creds: OAuthCredentials;
let microsoft: FakeUpstream;
let google: FakeUpstream;
let hook: WebhookReceiver;
let child: MailtrailChild | null = null;

beforeAll(async () => {
  await ensureBuilt();
  pki = await makeTestPki();
  dir = await mkdtemp(join(tmpdir(), 'mailtrail-oauth2-secrets-'));
  creds = await makeOAuthCredentials(dir);
  // Short-lived tokens: several renewals, and refresh token rotations, within the test.
  idp = await startOAuthServer({ tls: { key: pki.server.key, cert: pki.server.cert }, knobs: { lifetimeSeconds: 2, rotateRefreshTokens: true } });
  idp.addClient('mailtrail', { secret: CLIENT_SECRET });
  idp.addClient('mailtrail-cert', { certificate: creds.certificate.cert });
  idp.addServiceAccount(creds.serviceAccount.email, creds.serviceAccount.publicKeyPem);
  idp.addRefreshToken(REFRESH_TOKEN, { clientId: 'mailtrail', user: 'app@example.net' });
  const verify = (token: string, user: string) => idp.verify(token, user);
  microsoft = await startFakeUpstream({ xoauth2: { verify, style: 'microsoft' } });
  google = await startFakeUpstream({ xoauth2: { verify, style: 'google' } });
  hook = await startWebhookReceiver();
}, 60_000);

afterAll(async () => {
  await child?.kill();
  await Promise.all([microsoft.close(), google.close(), hook.close(), idp.close()]);
  await pki.cleanup();
  await rm(dir, { recursive: true, force: true });
});

function configFile(): Record<string, unknown> {
  const tokenUrl = idp.tokenUrl('/contoso.example/oauth2/v2.0/token');
  const common = { ca: pki.caPath, timeout: '5s' };
  const upstream = (name: string, port: number, auth: Record<string, unknown>) => ({
    name,
    url: `smtp://127.0.0.1:${port}`,
    tls: { mode: 'none' },
    auth: { type: 'oauth2', ...common, ...auth },
    pool: { maxMessages: 1 },
    probe: { enabled: true, interval: '1s', timeout: '5s' },
  });
  return {
    listen: [{ host: '127.0.0.1', port: 0 }],
    clients: { networks: ['127.0.0.0/8'] },
    dataDir: join(dir, 'data'),
    log: { level: 'debug' },
    upstreams: [
      upstream('m365', microsoft.port, {
        user: 'printer@contoso.example',
        tenantId: 'contoso.example',
        clientId: 'mailtrail',
        clientSecret: CLIENT_SECRET,
        tokenUrl,
      }),
      upstream('m365cert', microsoft.port, {
        user: 'scanner@contoso.example',
        tenantId: 'contoso.example',
        clientId: 'mailtrail-cert',
        clientCertificate: { key: creds.certificate.keyPath, cert: creds.certificate.certPath },
        tokenUrl,
      }),
      upstream('m365bad', microsoft.port, {
        user: 'fax@contoso.example',
        tenantId: 'contoso.example',
        clientId: 'mailtrail',
        clientSecret: WRONG_SECRET,
        tokenUrl,
      }),
      upstream('gmail', google.port, { user: 'app@example.com', serviceAccountKeyFile: creds.serviceAccount.file, tokenUrl: idp.tokenUrl('/token') }),
      upstream('other', microsoft.port, {
        user: 'app@example.net',
        tokenUrl: idp.tokenUrl('/oauth2/token'),
        clientId: 'mailtrail',
        clientSecret: CLIENT_SECRET,
        refreshToken: REFRESH_TOKEN,
        scope: 'https://mail.example.net/send',
      }),
    ],
    routes: ['m365', 'm365cert', 'm365bad', 'gmail', 'other'].map((name) => ({ name, match: { senders: [`@${name}.test`] }, upstreams: [name] })),
    alerts: {
      sinks: [{ name: 'hook', webhook: { url: hook.url } }],
      rules: [{ name: 'provider-config', class: ['upstream_auth'], sinks: ['hook'] }],
    },
  };
}

/** The strings that must appear nowhere: secrets as configured, and everything issued or read. */
function secrets(): string[] {
  const keyLines = (pem: string) => pem.split('\n').filter((l) => l.length > 40 && !l.startsWith('-----'));
  return [
    CLIENT_SECRET,
    WRONG_SECRET,
    REFRESH_TOKEN,
    ...idp.refreshTokensIssued,
    ...idp.issued.map((t) => t.token),
    // The signature part alone, in case a token were cut.
    ...idp.issued.map((t) => t.token.split('.')[2]!),
    ...keyLines(creds.certificate.keyPem).slice(1, 3),
    ...keyLines(creds.serviceAccount.privateKeyPem).slice(1, 3),
  ];
}

describe('a relay with OAuth2 upstreams, run from the command line', () => {
  it('never writes a secret, a refresh token, an access token or a private key to any output', async () => {
    const file = join(dir, 'mailtrail.yaml');
    await writeFile(file, YAML.stringify(configFile()));
    const checked = await run(process.execPath, [CLI, 'check-config', '--config', file]);
    expect(checked.stdout).toMatch(/^config ok: /);
    child = await startMailtrail(file, 1);
    const port = Number(/SMTP\s+127\.0\.0\.1:(\d+)/.exec(child.stdout())?.[1]);
    const send = (route: string, i: number) =>
      sendMessage({
        port,
        startTls: false,
        from: `app@${route}.test`,
        to: ['ana@example.org'],
        raw: simpleMessage({ from: `app@${route}.test`, subject: `${route} ${i}` }),
      });
    // Bounded: 5 rounds over ~4 s, across token renewals and refresh token rotations.
    const codes: Record<string, number[]> = {};
    for (let i = 0; i < 5; i++) {
      for (const route of ['m365', 'm365cert', 'm365bad', 'gmail', 'other']) (codes[route] ??= []).push((await send(route, i)).code ?? 0);
      await new Promise((r) => setTimeout(r, 800));
    }
    await hook.waitFor((r) => r.length >= 1, 10_000);
    await waitFor(() => idp.refreshTokensIssued.length >= 2, 10_000);
    await child.stop();

    expect(codes).toEqual({
      m365: [250, 250, 250, 250, 250],
      m365cert: [250, 250, 250, 250, 250],
      m365bad: [451, 451, 451, 451, 451],
      gmail: [250, 250, 250, 250, 250],
      other: [250, 250, 250, 250, 250],
    });
    expect(hook.received[0]!.json.text).toMatch(/AADSTS7000215/);
    const outputs: Record<string, string> = {
      stdout: child.stdout(),
      stderr: child.stderr(),
      trail: await readFile(join(dir, 'data', 'audit.log'), 'utf8'),
      webhooks: hook.received.map((h) => h.body.toString('utf8')).join('\n'),
      checkConfig: checked.stdout + checked.stderr,
    };
    // The outputs are not empty: the test looks at what a real run writes.
    expect(outputs.stderr).toMatch(/upstream OAuth2 token request failed/);
    expect(outputs.trail).toMatch(/identity-provider-bad-client/);
    const found = secrets().flatMap((secret) =>
      Object.entries(outputs)
        .filter(([, text]) => text.includes(secret))
        .map(([where]) => `${where}: ${secret.slice(0, 12)}…`),
    );
    expect(idp.issued.length).toBeGreaterThan(5);
    expect(found).toEqual([]);
  }, 60_000);
});
