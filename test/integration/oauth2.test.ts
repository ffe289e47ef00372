/**
 * OAuth2 upstreams end to end (docs/oauth2.md): a real authorization server on loopback over TLS
 * (test/helpers/oauth-server.ts) issues signed tokens, and the fake upstream takes AUTH XOAUTH2 only
 * with an unexpired token that server signed, refusing others as Microsoft or Google do.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AlertRecord, AuditRecord } from '../../src/audit/records.js';
import { GOOGLE_SCOPE, MICROSOFT_SCOPE, type OAuth2Auth } from '../../src/config/upstream-auth.js';
import { startFakeUpstream, waitFor, type FakeUpstream, type FakeUpstreamOptions } from '../helpers/fake-upstream.js';
import { makeOAuthCredentials, startOAuthServer, type OAuthCredentials, type OAuthServer } from '../helpers/oauth-server.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { simpleMessage, startRelay, type RelaySpec, type RunningRelay, type UpstreamSpec } from '../helpers/relay-harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const TENANT = 'contoso.example';
const MAILBOX = 'printer@contoso.example';
const SECRET = 'Client-Secret-Quartz-7e1d';

let pki: TestPki;
let idp: OAuthServer;
let dir: string;
let creds: OAuthCredentials;
const open: { relays: RunningRelay[]; upstreams: FakeUpstream[]; hooks: WebhookReceiver[] } = { relays: [], upstreams: [], hooks: [] };

beforeAll(async () => {
  pki = await makeTestPki();
  dir = await mkdtemp(join(tmpdir(), 'mailtrail-oauth2-'));
  creds = await makeOAuthCredentials(dir);
  idp = await startOAuthServer({ tls: { key: pki.server.key, cert: pki.server.cert } });
  idp.addClient('mailtrail', { secret: SECRET });
  idp.addClient('mailtrail-cert', { certificate: creds.certificate.cert });
  idp.addServiceAccount(creds.serviceAccount.email, creds.serviceAccount.publicKeyPem);
}, 30_000);

afterAll(async () => {
  await idp.close();
  await pki.cleanup();
  await rm(dir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const r of open.relays.splice(0)) await r.stop();
  for (const u of open.upstreams.splice(0)) await u.close();
  for (const h of open.hooks.splice(0)) await h.close();
  await idp.idle();
  idp.knobs.lifetimeSeconds = 3600;
  idp.knobs.refuse = null;
  idp.knobs.delayMs = 0;
  idp.knobs.rotateRefreshTokens = false;
  await idp.up();
});

/** Microsoft 365 app-only login against the test server (`tokenUrl` overrides login.microsoftonline.com). */
function m365(overrides: Partial<OAuth2Auth> = {}): OAuth2Auth {
  return {
    type: 'oauth2',
    user: MAILBOX,
    provider: 'microsoft',
    grant: 'client_credentials',
    tokenUrl: idp.tokenUrl(`/${TENANT}/oauth2/v2.0/token`),
    scope: MICROSOFT_SCOPE,
    tenantId: TENANT,
    clientId: 'mailtrail',
    clientSecret: SECRET,
    clientCertificate: null,
    serviceAccountKeyFile: null,
    refreshToken: null,
    ca: pki.caPath,
    timeout: 5_000,
    ...overrides,
  };
}

async function upstreamFor(style: 'microsoft' | 'google' = 'microsoft', opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const upstream = await startFakeUpstream({ xoauth2: { verify: (token, user) => idp.verify(token, user), style }, ...opts });
  open.upstreams.push(upstream);
  return upstream;
}

async function relayFor(upstream: FakeUpstream, auth: OAuth2Auth, spec: Partial<UpstreamSpec> = {}, relaySpec: Partial<RelaySpec> = {}): Promise<RunningRelay> {
  const relay = await startRelay({ upstreams: [{ name: 'm365', port: upstream.port, auth, ...spec }], ...relaySpec });
  open.relays.push(relay);
  return relay;
}

const send = (relay: RunningRelay, subject = 'Hello') =>
  relay.send({ from: 'printer@contoso.example', to: ['ana@example.org'], raw: simpleMessage({ from: 'printer@contoso.example', subject }) });

describe('an OAuth2 upstream (Microsoft 365, client credentials)', () => {
  it('fetches one token and reuses it across messages and connections', async () => {
    const upstream = await upstreamFor();
    // One message per connection: every message logs in anew.
    const relay = await relayFor(upstream, m365(), { pool: { maxMessages: 1 } });
    const before = idp.count();
    for (let i = 0; i < 5; i++) expect((await send(relay)).code).toBe(250);
    expect(idp.count() - before).toBe(1);
    expect(upstream.xoauth2Logins).toHaveLength(5);
    expect(upstream.xoauth2Logins.every((l) => l.accepted && l.user === MAILBOX)).toBe(true);
    expect(new Set(upstream.xoauth2Logins.map((l) => l.token)).size).toBe(1);
  });

  it('logs in with a certificate instead of a secret (a signed client assertion)', async () => {
    const upstream = await upstreamFor();
    const relay = await relayFor(
      upstream,
      m365({ clientId: 'mailtrail-cert', clientSecret: null, clientCertificate: { key: creds.certificate.keyPath, cert: creds.certificate.certPath } }),
    );
    const r = await send(relay);
    expect((await relay.relayRecords())[0]!.failure).toBeNull();
    expect(r.code).toBe(250);
    expect(upstream.xoauth2Logins.map((l) => l.accepted)).toEqual([true]);
  });

  it('renews a short-lived token before it expires, and no message fails or is refused meanwhile', async () => {
    idp.knobs.lifetimeSeconds = 2;
    const upstream = await upstreamFor();
    const relay = await relayFor(upstream, m365(), { pool: { maxMessages: 1 } });
    const before = idp.count();
    const started = Date.now();
    const codes: number[] = [];
    // Bounded: 20 messages over ~5 s, across two renewals.
    for (let i = 0; i < 20 && Date.now() - started < 15_000; i++) {
      codes.push((await send(relay)).code ?? 0);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(codes.every((c) => c === 250)).toBe(true);
    expect(upstream.xoauth2Logins.every((l) => l.accepted)).toBe(true);
    expect(idp.count() - before).toBeGreaterThanOrEqual(2);
    // Renewed at 80 % of 2 s, never once per message.
    expect(idp.count() - before).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 1600) + 1);
  }, 30_000);

  it('makes one token request for 100 messages sent at once when the token has expired', async () => {
    idp.knobs.lifetimeSeconds = 2;
    const upstream = await upstreamFor();
    const relay = await relayFor(upstream, m365(), { pool: { maxMessages: 1, maxConnections: 100 } });
    expect((await send(relay)).code).toBe(250);
    const before = idp.count();
    // A slow identity provider: the renewal at 1.6 s is still in flight when the token ends at 2 s. The
    // token it brings lasts a minute, so no later renewal falls within the burst.
    idp.knobs.delayMs = 1_500;
    idp.knobs.lifetimeSeconds = 60;
    const issuedAt = idp.issued.at(-1)!.expiresAt - 2_000;
    await new Promise((r) => setTimeout(r, Math.max(0, issuedAt + 2_100 - Date.now())));
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => send(relay, `burst ${i}`)));
    expect(results.filter((r) => r.code !== 250)).toEqual([]);
    expect(idp.count() - before).toBe(1);
  }, 30_000);

  it('answers 451 when the client secret is wrong, records upstream_auth with the provider error, and alerts once', async () => {
    const hook = await startWebhookReceiver();
    open.hooks.push(hook);
    const upstream = await upstreamFor();
    const relay = await relayFor(
      upstream,
      m365({ clientSecret: 'wrong-secret' }),
      {},
      {
        alerts: {
          sinks: [{ kind: 'webhook', name: 'hook', url: hook.url, secret: null, headers: {} }],
          rules: [{ name: 'provider-config', condition: { kind: 'class', classes: ['upstream_auth'] }, sinks: ['hook'] }],
        },
      },
    );
    for (let i = 0; i < 3; i++) {
      const r = await send(relay);
      expect(r.code).toBe(451);
      expect(r.response).toMatch(/^451 4\.7\.0 Relay not authorised by upstream \(identity provider refused the token request\)/);
    }
    const failure = (await relay.relayRecords())[0]!.failure!;
    expect(failure).toMatchObject({
      class: 'upstream_auth',
      detail: { rule: 'identity-provider-bad-client', code: 'ETOKEN', cause: 'invalid_client AADSTS7000215' },
    });
    expect(failure.detail.message).toMatch(
      /^identity provider 127\.0\.0\.1:\d+ refused the token request \(HTTP 401 invalid_client\): AADSTS7000215: Invalid client secret provided/,
    );
    expect(failure.detail.message).not.toMatch(/Trace ID/);
    expect(upstream.xoauth2Logins).toHaveLength(0);
    await hook.waitFor((r) => r.length >= 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(hook.received).toHaveLength(1);
    expect(hook.received[0]!.json.text).toMatch(/AADSTS7000215/);
    expect(hook.received[0]!.json.text).toMatch(/identity provider does not accept the application's credentials/);
    const alerts = (await relay.records()).filter((r: AuditRecord): r is AlertRecord => r.type === 'alert');
    expect(alerts).toHaveLength(1);
  });

  it('answers 451 naming the identity provider when it is down, and sends again once it is back', async () => {
    const upstream = await upstreamFor();
    const relay = await relayFor(upstream, m365());
    await idp.down();
    const r = await send(relay);
    expect(r.code).toBe(451);
    expect(r.response).toMatch(/^451 4\.4\.1 Upstream login failed: identity provider unreachable \(connection refused\)/);
    const failure = (await relay.relayRecords())[0]!.failure!;
    expect(failure).toMatchObject({ class: 'connect', detail: { rule: 'identity-provider-unreachable', code: 'ETOKEN', cause: 'ECONNREFUSED' } });
    expect(failure.detail.message).toMatch(/^identity provider 127\.0\.0\.1:\d+ could not be reached for a token/);
    expect(failure.detail.hint).toMatch(/identity provider/);
    await idp.up();
    // Failures are held for a second, so the provider is not asked once per message while it is down.
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await send(relay)).code).toBe(250);
  });

  it('answers 451 with the timeout class when the identity provider is too slow', async () => {
    const upstream = await upstreamFor();
    const relay = await relayFor(upstream, m365({ timeout: 300 }));
    idp.knobs.delayMs = 2_000;
    const r = await send(relay);
    expect(r.response).toMatch(/^451 4\.4\.2 Upstream login failed: identity provider timed out/);
    expect((await relay.relayRecords())[0]!.failure).toMatchObject({ class: 'timeout', detail: { rule: 'identity-provider-timeout', cause: 'ETIMEDOUT' } });
  });

  it('replaces a token the mail server refuses once, and the message goes through', async () => {
    const upstream = await upstreamFor();
    const relay = await relayFor(upstream, m365());
    expect((await send(relay)).code).toBe(250);
    upstream.dropConnections();
    // The next token is refused as revoked: 535 5.7.3, then a fresh one is asked for and taken.
    upstream.faults.refuseTokens = 1;
    const before = idp.count();
    expect((await send(relay)).code).toBe(250);
    const logins = upstream.xoauth2Logins.slice(1);
    expect(logins.map((l) => l.accepted)).toEqual([false, true]);
    expect(logins[0]!.token).not.toBe(logins[1]!.token);
    expect(idp.count() - before).toBe(1);
  });

  it('tries a fresh token only once when the mail server refuses every token, and says SMTP AUTH is off', async () => {
    const upstream = await upstreamFor();
    upstream.faults.xoauth2Reply = {
      code: 535,
      text: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.',
    };
    const relay = await relayFor(upstream, m365());
    const r = await send(relay);
    expect(r.response).toMatch(/^451 4\.7\.0 Relay not authorised by upstream \(upstream replied 535 5\.7\.139\)/);
    expect(upstream.xoauth2Logins).toHaveLength(2);
    const failure = (await relay.relayRecords())[0]!.failure!;
    expect(failure).toMatchObject({ class: 'upstream_auth', detail: { rule: 'xoauth2-smtp-auth-disabled' } });
    expect(failure.detail.hint).toMatch(/Set-CASMailbox/);
    // The replacement was refused too: the next message does not ask for yet another token.
    const before = idp.count();
    expect((await send(relay)).code).toBe(451);
    expect(upstream.xoauth2Logins).toHaveLength(3);
    expect(idp.count()).toBe(before);
  });

  it('probes with the same token cache: the first message after a passing probe asks for no token', async () => {
    const upstream = await upstreamFor();
    const before = idp.count();
    const relay = await relayFor(upstream, m365(), { probe: { enabled: true, interval: 60_000, timeout: 5_000 } }, { http: { port: 0 } });
    await waitFor(() => upstream.xoauth2Logins.length === 1, 5_000);
    expect(idp.requests.slice(before)).toHaveLength(1);
    expect((await send(relay)).code).toBe(250);
    expect(idp.count() - before).toBe(1);
    const metrics = await (await fetch(`${relay.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/mailtrail_upstream_token_requests_total\{upstream="m365",result="ok"\} 1/);
    const expiry = Number(/mailtrail_upstream_token_expiry_seconds\{upstream="m365"\} ([\d.]+)/.exec(metrics)?.[1]);
    expect(expiry).toBeGreaterThan(3500);
    expect(expiry).toBeLessThanOrEqual(3601);
  });

  it('reports a refused client secret from the health probe, before any message', async () => {
    const upstream = await upstreamFor();
    const relay = await relayFor(
      upstream,
      m365({ clientSecret: 'wrong-secret' }),
      { probe: { enabled: true, interval: 60_000, timeout: 5_000 } },
      { http: { port: 0 } },
    );
    await waitFor(() => idp.count({ ok: false }) > 0, 5_000);
    let ready = '';
    for (let i = 0; i < 50 && !ready.includes('upstream_auth'); i++) {
      ready = await (await fetch(`${relay.httpUrl}/readyz`)).text();
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(ready).toMatch(/upstream_auth/);
    expect(ready).toMatch(/invalid_client AADSTS7000215/);
  });
});

describe('an OAuth2 upstream (Google Workspace, service account)', () => {
  /** A service account acting for app@example.com, against the test server instead of Google's endpoint. */
  const gmail = (): OAuth2Auth => ({
    ...m365(),
    provider: 'google',
    grant: 'jwt_bearer',
    user: 'app@example.com',
    tokenUrl: idp.tokenUrl('/token'),
    scope: GOOGLE_SCOPE,
    tenantId: null,
    clientId: null,
    clientSecret: null,
    serviceAccountKeyFile: creds.serviceAccount.file,
  });

  it('signs a JWT for the mailbox and logs in with the token Google would issue', async () => {
    const upstream = await upstreamFor('google');
    const relay = await relayFor(upstream, gmail());
    const before = idp.count({ grant: 'urn:ietf:params:oauth:grant-type:jwt-bearer', ok: true });
    expect((await send(relay)).code).toBe(250);
    expect(idp.count({ grant: 'urn:ietf:params:oauth:grant-type:jwt-bearer', ok: true }) - before).toBe(1);
    expect(idp.issued.at(-1)!.subject).toBe('app@example.com');
    expect(upstream.xoauth2Logins.map((l) => [l.user, l.accepted])).toEqual([['app@example.com', true]]);
  });

  it('answers the 334 challenge with an empty line and retries once with a fresh token', async () => {
    const upstream = await upstreamFor('google');
    const relay = await relayFor(upstream, gmail());
    upstream.faults.refuseTokens = 1;
    expect((await send(relay)).code).toBe(250);
    expect(upstream.xoauth2Logins.map((l) => l.accepted)).toEqual([false, true]);
  });
});

describe('an OAuth2 upstream (any RFC 6749 token endpoint)', () => {
  const generic = (overrides: Partial<OAuth2Auth>): OAuth2Auth => ({
    ...m365(),
    provider: 'generic',
    user: 'app@example.net',
    tokenUrl: idp.tokenUrl('/oauth2/token'),
    scope: 'https://mail.example.net/send',
    tenantId: null,
    ...overrides,
  });

  it('uses the client credentials grant with a secret', async () => {
    const upstream = await upstreamFor();
    const relay = await relayFor(upstream, generic({}));
    expect((await send(relay)).code).toBe(250);
    expect(idp.requests.at(-1)).toMatchObject({ grant: 'client_credentials', status: 200 });
  });

  it('uses the refresh token grant, and the rotated refresh token for the next renewal', async () => {
    idp.knobs.lifetimeSeconds = 2;
    idp.knobs.rotateRefreshTokens = true;
    idp.addRefreshToken('Refresh-Token-Quartz-1', { clientId: 'mailtrail', user: 'app@example.net' });
    const upstream = await upstreamFor();
    const relay = await relayFor(upstream, generic({ grant: 'refresh_token', refreshToken: 'Refresh-Token-Quartz-1' }), { pool: { maxMessages: 1 } });
    expect((await send(relay)).code).toBe(250);
    // Past two renewals: each used the refresh token the one before it returned.
    await waitFor(() => idp.count({ grant: 'refresh_token', ok: true }) >= 3, 8_000);
    expect(idp.count({ grant: 'refresh_token', ok: false })).toBe(0);
    expect((await send(relay)).code).toBe(250);
  }, 15_000);
});
