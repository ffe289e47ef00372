/**
 * `mailtrail check-upstream NAME` (docs/oauth2.md, "Checking an upstream"), run from the command line
 * against a real authorization server on loopback (test/helpers/oauth-server.ts, standing in for
 * Microsoft Entra ID and Google through `tokenUrl`) and the fake upstream over STARTTLS: what each
 * set-up prints, the advice for each usual mistake, the exit code, and that no secret is ever printed.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { CLI, ensureBuilt } from '../../soak/mailtrail-child.js';
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from '../helpers/fake-upstream.js';
import { makeOAuthCredentials, startOAuthServer, type OAuthCredentials, type OAuthServer } from '../helpers/oauth-server.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';

const run = promisify(execFile);
const SECRET = 'Client-Secret-Quartz-c41e77';
const WRONG_SECRET = 'Wrong-Secret-Quartz-5ad0e2';
const REFRESH_TOKEN = 'Refresh-Token-Quartz-09b3f1';
const PASSWORD = 'Mailbox-Password-Quartz-7f21';
const MAILBOX = 'printer@contoso.example';
const TENANT_ID = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const OBJECT_ID = '6d0e8f2a-3b4c-4d5e-8f9a-0b1c2d3e4f5a';

/** An app-only token as Microsoft Entra ID issues it for https://outlook.office365.com/.default. */
const OUTLOOK_CLAIMS = {
  aud: 'https://outlook.office365.com',
  tid: TENANT_ID,
  appid: '5c7a3e1d-2f4b-4c8e-9d0a-1b2c3d4e5f60',
  app_displayname: 'mailtrail',
  idtyp: 'app',
  oid: OBJECT_ID,
  roles: ['SMTP.SendAsApp'],
  ver: '1.0',
};

let pki: TestPki;
let idp: OAuthServer;
let dir: string;
let creds: OAuthCredentials;
/** Every output of every run, searched for secrets at the end. */
const outputs: string[] = [];
const upstreams: FakeUpstream[] = [];

beforeAll(async () => {
  await ensureBuilt();
  pki = await makeTestPki();
  dir = await mkdtemp(join(tmpdir(), 'mailtrail-check-upstream-'));
  creds = await makeOAuthCredentials(dir);
  idp = await startOAuthServer({ tls: { key: pki.server.key, cert: pki.server.cert } });
  idp.addClient('mailtrail', { secret: SECRET });
  idp.addServiceAccount(creds.serviceAccount.email, creds.serviceAccount.publicKeyPem);
  idp.addRefreshToken(REFRESH_TOKEN, { clientId: 'mailtrail', user: 'someone@example.net' });
}, 60_000);

afterEach(async () => {
  for (const u of upstreams.splice(0)) await u.close();
  await idp.idle();
  idp.knobs.claims = null;
  idp.knobs.opaque = false;
  idp.knobs.refuse = null;
  idp.knobs.delayMs = 0;
  await idp.up();
});

afterAll(async () => {
  await idp.close();
  await pki.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function upstream(opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const u = await startFakeUpstream({
    tls: { key: pki.server.key, cert: pki.server.cert },
    authRequiresTls: true,
    xoauth2: { verify: (token, user) => idp.verify(token, user), style: 'microsoft' },
    ...opts,
  });
  upstreams.push(u);
  return u;
}

/** A config with one upstream `name` on `u`'s port (STARTTLS, or implicit TLS with smtps, verified against the test CA), `auth` as given. */
async function configFor(u: FakeUpstream, auth: Record<string, unknown>, name = 'm365', scheme = 'smtp'): Promise<string> {
  const file = join(dir, `${name}-${u.port}.yaml`);
  const config = {
    listen: [{ host: '127.0.0.1', port: 0 }],
    clients: { networks: ['127.0.0.0/8'] },
    dataDir: join(dir, 'data'),
    upstreams: [
      {
        name,
        url: `${scheme}://127.0.0.1:${u.port}`,
        tls: { mode: 'required', ca: pki.caPath, servername: 'localhost' },
        auth,
        probe: { timeout: '10s' },
      },
    ],
  };
  await writeFile(file, YAML.stringify(config));
  return file;
}

/** Microsoft 365 app-only, the secret from the environment (M365_CLIENT_SECRET). */
const m365 = (overrides: Record<string, unknown> = {}) => ({
  type: 'oauth2',
  user: MAILBOX,
  tenantId: 'contoso.example',
  clientId: 'mailtrail',
  clientSecret: '${M365_CLIENT_SECRET}',
  tokenUrl: idp.tokenUrl('/contoso.example/oauth2/v2.0/token'),
  ca: pki.caPath,
  timeout: '3s',
  ...overrides,
});

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function checkUpstream(args: string[], secret = SECRET): Promise<Run> {
  const env = { PATH: process.env.PATH ?? '', M365_CLIENT_SECRET: secret, REFRESH_TOKEN, MAILBOX_PASSWORD: PASSWORD };
  let r: Run;
  try {
    const out = await run(process.execPath, [CLI, 'check-upstream', ...args], { env, cwd: dir, timeout: 30_000 });
    r = { code: 0, stdout: out.stdout, stderr: out.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    r = { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
  outputs.push(r.stdout, r.stderr);
  return r;
}

/** The status and detail of the step `name` (the last one of that name). */
function step(out: string, name: string): { status: string; detail: string } | undefined {
  const lines = [...out.matchAll(new RegExp(`^  (ok|FAILED|retried|skipped) +${name} +(.*)$`, 'gm'))];
  const last = lines.at(-1);
  return last ? { status: last[1]!, detail: last[2]! } : undefined;
}

describe('mailtrail check-upstream, Microsoft 365 app-only (client credentials)', () => {
  it('a good set-up: shows the token it got (audience, tenant, role, expiry) and every step working, exit 0', async () => {
    idp.knobs.claims = OUTLOOK_CLAIMS;
    const u = await upstream();
    const r = await checkUpstream(['m365', '--config', await configFor(u, m365())]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^mailtrail check-upstream m365: smtp:\/\/127\.0\.0\.1:\d+ \(tls\.mode required\), logs in with OAuth2 \(XOAUTH2\) as printer@contoso\.example/,
    );
    expect(step(r.stdout, 'token')?.status).toBe('ok');
    expect(r.stdout).toMatch(/issued a JWT in \d+ ms, valid until \S+Z \((59|60) min\)/);
    expect(r.stdout).toContain('audience https://outlook.office365.com');
    expect(r.stdout).toContain(`tenant ${TENANT_ID}`);
    expect(r.stdout).toContain(`app-only, service principal object ID ${OBJECT_ID}`);
    expect(r.stdout).toContain('roles SMTP.SendAsApp');
    expect(['connect', 'greeting', 'EHLO', 'STARTTLS', 'AUTH', 'QUIT'].map((s) => step(r.stdout, s)?.status)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    expect(step(r.stdout, 'STARTTLS')?.detail).toMatch(/TLSv1\.[23].*verified/);
    expect(step(r.stdout, 'AUTH')?.detail).toMatch(/^AUTH XOAUTH2: 235/);
    expect(r.stdout).not.toMatch(/^problem:/m);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('OK: mailtrail can log in to m365.');
    expect(u.xoauth2Logins.map((l) => [l.user, l.accepted])).toEqual([[MAILBOX, true]]);
  });

  it("a wrong client secret: names the identity provider's error code and what to do, still greets the mail server, exit 1", async () => {
    const u = await upstream();
    const r = await checkUpstream(['m365', '--config', await configFor(u, m365())], WRONG_SECRET);
    expect(r.code).toBe(1);
    expect(step(r.stdout, 'token')).toMatchObject({
      status: 'FAILED',
      detail: expect.stringMatching(/refused the token request \(HTTP 401 invalid_client\): AADSTS7000215/) as string,
    });
    expect(r.stdout).toMatch(/^problem: Microsoft Entra ID does not take auth\.clientSecret as a secret of application mailtrail$/m);
    expect(r.stdout).toMatch(/what to do: auth\.clientSecret must be the secret's Value/);
    expect(step(r.stdout, 'greeting')?.status).toBe('ok');
    expect(step(r.stdout, 'STARTTLS')?.status).toBe('ok');
    expect(step(r.stdout, 'AUTH')).toEqual({ status: 'skipped', detail: 'not tried: there is no token (see the token step)' });
    expect(r.stdout).toMatch(/^ {2}skipped +AUTH .*\n {2}ok +QUIT /m);
    expect(r.stdout).toContain('class upstream_auth (rule identity-provider-bad-client');
    expect(r.stdout.trim().split('\n').at(-1)).toMatch(/^NOT OK: the token request failed/);
    expect(u.xoauth2Logins).toEqual([]);
  });

  it('a token for Microsoft Graph instead of Outlook: says so, and names the audience and the permission to use, exit 1', async () => {
    idp.knobs.claims = { ...OUTLOOK_CLAIMS, aud: 'https://graph.microsoft.com', roles: ['Mail.Send'] };
    // Exchange Online refuses such a token as any other: 535 5.7.3.
    const u = await upstream();
    await u.setFaults({ xoauth2Reply: { code: 535, text: '5.7.3 Authentication unsuccessful' } });
    const r = await checkUpstream(['m365', '--config', await configFor(u, m365({ scope: 'https://graph.microsoft.com/.default' }))]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('audience https://graph.microsoft.com');
    expect(r.stdout).toMatch(
      /^problem: the token is for Microsoft Graph \(audience https:\/\/graph\.microsoft\.com\); Exchange Online's SMTP takes only tokens for Outlook/m,
    );
    expect(r.stdout).toMatch(/SMTP\.SendAsApp, not Microsoft Graph > Mail\.Send/);
    expect(step(r.stdout, 'AUTH')).toMatchObject({ status: 'FAILED', detail: expect.stringContaining('535 5.7.3 Authentication unsuccessful') as string });
    // Not mistaken for a missing service principal: the token itself is wrong.
    expect(r.stdout).not.toContain('New-ServicePrincipal');
  });

  it('a token without the SMTP.SendAsApp role (no admin consent): names the permission to grant, exit 1', async () => {
    idp.knobs.claims = { ...OUTLOOK_CLAIMS, roles: [] };
    const u = await upstream();
    await u.setFaults({ xoauth2Reply: { code: 535, text: '5.7.3 Authentication unsuccessful' } });
    const r = await checkUpstream(['m365', '--config', await configFor(u, m365())]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^ {22}roles none$/m);
    expect(r.stdout).toMatch(/^problem: the app-only token has no SMTP\.SendAsApp role \(roles: none\)/m);
    expect(r.stdout).toContain('Office 365 Exchange Online > Application permissions > SMTP.SendAsApp > Add permissions, then Grant admin consent');
    expect(r.stdout).not.toContain('New-ServicePrincipal');
  });

  it('the identity provider down: says it could not be reached, and what the relay would advise, exit 1', async () => {
    await idp.down();
    const u = await upstream();
    const r = await checkUpstream(['m365', '--config', await configFor(u, m365())]);
    expect(r.code).toBe(1);
    expect(step(r.stdout, 'token')?.detail).toMatch(/^identity provider 127\.0\.0\.1:\d+ could not be reached for a token: .*ECONNREFUSED/);
    expect(r.stdout).toMatch(/^what to do: .+/m);
    expect(r.stdout).toContain('class connect (rule identity-provider-unreachable');
    expect(step(r.stdout, 'EHLO')?.status).toBe('ok');
  });

  it('the identity provider too slow: the token step fails after auth.timeout, filed as a timeout, exit 1', async () => {
    idp.knobs.delayMs = 3_000;
    const u = await upstream();
    const r = await checkUpstream(['m365', '--config', await configFor(u, m365({ timeout: '1s' }))]);
    expect(r.code).toBe(1);
    expect(step(r.stdout, 'token')?.status).toBe('FAILED');
    expect(r.stdout).toContain('class timeout (rule identity-provider-timeout');
    expect(r.stdout).toMatch(/^what to do: the identity provider did not answer the token request within auth\.timeout/m);
  });

  it('a good token the mail server refuses: Exchange service principal or mailbox permission, with the PowerShell to run, exit 1', async () => {
    idp.knobs.claims = OUTLOOK_CLAIMS;
    const u = await upstream();
    await u.setFaults({ xoauth2Reply: { code: 535, text: '5.7.3 Authentication unsuccessful [SN2PR00CA0018.namprd00.prod.outlook.com]' } });
    const r = await checkUpstream(['m365', '--config', await configFor(u, m365())]);
    expect(r.code).toBe(1);
    expect(step(r.stdout, 'token')?.status).toBe('ok');
    // The relay replaces a refused token once: the check does the same, and shows it.
    expect(r.stdout).toMatch(/^ {2}retried +AUTH +AUTH XOAUTH2: 535 5\.7\.3 .*fetched a fresh token and tried once more/m);
    expect(step(r.stdout, 'AUTH')?.status).toBe('FAILED');
    expect(r.stdout).toMatch(/^problem: Exchange Online refused a good app-only token/m);
    expect(r.stdout).toContain(`New-ServicePrincipal -AppId 5c7a3e1d-2f4b-4c8e-9d0a-1b2c3d4e5f60 -ObjectId ${OBJECT_ID}`);
    expect(r.stdout).toContain(`Add-MailboxPermission -Identity ${MAILBOX} -User ${OBJECT_ID} -AccessRights FullAccess`);
    expect(step(r.stdout, 'QUIT')?.status).toBe('ok');
  });

  it('SMTP AUTH off for the mailbox (535 5.7.139): names Set-CASMailbox, exit 1', async () => {
    idp.knobs.claims = OUTLOOK_CLAIMS;
    const u = await upstream();
    await u.setFaults({
      xoauth2Reply: {
        code: 535,
        text: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled',
      },
    });
    const r = await checkUpstream(['m365', '--config', await configFor(u, m365())]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^problem: SMTP AUTH is switched off for printer@contoso\.example/m);
    expect(r.stdout).toContain(`Set-CASMailbox -Identity ${MAILBOX} -SmtpClientAuthenticationDisabled $false`);
    expect(r.stdout).not.toContain('New-ServicePrincipal');
  });
});

describe('mailtrail check-upstream, other logins', () => {
  it('a Google service account (JWT bearer): an opaque token, every step working, exit 0', async () => {
    idp.knobs.opaque = true;
    const u = await upstream({ xoauth2: { verify: (token, user) => idp.verify(token, user), style: 'google' } });
    const auth = {
      type: 'oauth2',
      user: 'app@example.com',
      serviceAccountKeyFile: creds.serviceAccount.file,
      tokenUrl: idp.tokenUrl('/token'),
      ca: pki.caPath,
    };
    const r = await checkUpstream(['gmail', '--config', await configFor(u, auth, 'gmail')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Google Workspace, service account, JWT bearer');
    expect(r.stdout).toContain('an opaque token (as Google issues them)');
    expect(step(r.stdout, 'AUTH')?.status).toBe('ok');
  });

  it('a token Gmail refuses: its 334 challenge decoded, and the scope and user to check, exit 1', async () => {
    idp.knobs.opaque = true;
    const u = await upstream({ xoauth2: { verify: (token, user) => idp.verify(token, user), style: 'google' } });
    // The token and its replacement refused, as for a delegation without https://mail.google.com/.
    await u.setFaults({ refuseTokens: 2 });
    const auth = {
      type: 'oauth2',
      user: 'app@example.com',
      serviceAccountKeyFile: creds.serviceAccount.file,
      tokenUrl: idp.tokenUrl('/token'),
      ca: pki.caPath,
    };
    const r = await checkUpstream(['gmail', '--config', await configFor(u, auth, 'gmail')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^ {2}retried +AUTH +AUTH XOAUTH2: 334 \{"status":"401".*\} \(the error, decoded from base64\), then 535/m);
    expect(step(r.stdout, 'AUTH')?.status).toBe('FAILED');
    expect(r.stdout).toMatch(/^problem: Gmail refused the token for app@example\.com \(its error: \{"status":"401"/m);
    expect(r.stdout).toContain('https://mail.google.com/');
  });

  it('a refresh token: works the same, exit 0', async () => {
    const u = await upstream();
    const auth = {
      type: 'oauth2',
      user: 'someone@example.net',
      tokenUrl: idp.tokenUrl('/oauth2/token'),
      clientId: 'mailtrail',
      clientSecret: '${M365_CLIENT_SECRET}',
      refreshToken: '${REFRESH_TOKEN}',
      ca: pki.caPath,
    };
    const r = await checkUpstream(['other', '--config', await configFor(u, auth, 'other')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('OAuth2, refresh token');
  });

  it('a password upstream: no token step, AUTH with the password, exit 0', async () => {
    const u = await upstream({ xoauth2: undefined, auth: { user: MAILBOX, pass: PASSWORD } });
    const r = await checkUpstream(['pw', '--config', await configFor(u, { user: MAILBOX, pass: '${MAILBOX_PASSWORD}' }, 'pw')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('logs in with a password (AUTH PLAIN or LOGIN) as printer@contoso.example');
    expect(step(r.stdout, 'token')).toBeUndefined();
    expect(step(r.stdout, 'AUTH')?.detail).toMatch(/^AUTH (PLAIN|LOGIN): 235/);
  });

  it('an smtps:// upstream (implicit TLS): the TLS shown on connect, no STARTTLS step, exit 0', async () => {
    const u = await upstream({ xoauth2: undefined, implicitTls: true, auth: { user: MAILBOX, pass: PASSWORD } });
    const r = await checkUpstream(['pw', '--config', await configFor(u, { user: MAILBOX, pass: '${MAILBOX_PASSWORD}' }, 'pw', 'smtps')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^mailtrail check-upstream pw: smtps:\/\/127\.0\.0\.1:\d+ \(implicit TLS\)/);
    expect(step(r.stdout, 'connect')?.detail).toMatch(/^127\.0\.0\.1:\d+, TLSv1\.[23] .*verified$/);
    expect(step(r.stdout, 'STARTTLS')).toBeUndefined();
    expect(step(r.stdout, 'AUTH')?.status).toBe('ok');
  });

  it('a password refused because Basic authentication is off (550 5.7.30): advises auth.type oauth2, exit 1', async () => {
    const u = await upstream({ xoauth2: undefined, auth: { user: MAILBOX, pass: PASSWORD } });
    await u.setFaults({ authReply: { code: 550, text: '5.7.30 Basic authentication is not supported for Client Submission.' } });
    const r = await checkUpstream(['pw', '--config', await configFor(u, { user: MAILBOX, pass: '${MAILBOX_PASSWORD}' }, 'pw')]);
    expect(r.code).toBe(1);
    expect(step(r.stdout, 'AUTH')?.detail).toContain('550 5.7.30 Basic authentication is not supported');
    expect(r.stdout).toMatch(/^problem: the provider no longer takes a password for SMTP AUTH$/m);
    expect(r.stdout).toContain('auth.type oauth2');
  });
});

describe('mailtrail check-upstream, the mail server', () => {
  it('one that refuses connections: the token still fetched, connect failed with the reason, the rest not reached, exit 1', async () => {
    idp.knobs.claims = OUTLOOK_CLAIMS;
    const u = await upstream();
    const file = await configFor(u, m365());
    await u.close();
    const r = await checkUpstream(['m365', '--config', file]);
    expect(r.code).toBe(1);
    expect(step(r.stdout, 'token')?.status).toBe('ok');
    expect(step(r.stdout, 'connect')).toMatchObject({ status: 'FAILED', detail: expect.stringContaining('ECONNREFUSED') as string });
    expect(['greeting', 'EHLO', 'STARTTLS', 'AUTH'].map((s) => step(r.stdout, s))).toEqual(Array(4).fill({ status: 'skipped', detail: 'not reached' }));
    expect(step(r.stdout, 'QUIT')).toEqual({ status: 'skipped', detail: 'not sent: the connection is closed' });
    expect(r.stdout).toContain('class connect');
  });
});

describe('mailtrail check-upstream, bad usage', () => {
  it('without a name: exit 2, listing the upstreams of the config', async () => {
    const u = await upstream();
    const r = await checkUpstream(['--config', await configFor(u, m365())]);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
    expect(r.stderr.split('\n')[0]).toBe('mailtrail check-upstream: name the upstream to check (the config has: m365)');
  });

  it('an unknown name: exit 2, naming the one it probably was', async () => {
    const u = await upstream();
    const r = await checkUpstream(['m356', '--config', await configFor(u, m365())]);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
    expect(r.stderr.split('\n')[0]).toBe('mailtrail check-upstream: no upstream named m356 in the config; did you mean m365?');
  });

  it('a config that does not load: exit 1 with its problems, as check-config says them', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'upstreams:\n  - { name: m365, url: "smtp://127.0.0.1:1", auth: { type: oauth2, user: a@b.example } }\n');
    const r = await checkUpstream(['m365', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^mailtrail: .*broken\.yaml/);
    expect(r.stderr).toContain('upstreams[0].auth');
  });
});

describe('mailtrail check-upstream, secrets', () => {
  it('no client secret, refresh token, password, access token or private key in any output of the runs above', () => {
    expect(outputs.length).toBeGreaterThan(20);
    const keyLines = (pem: string) => pem.split('\n').filter((l) => l.length > 40 && !l.startsWith('-----'));
    const plain = Buffer.from(`\0${MAILBOX}\0${PASSWORD}`).toString('base64');
    const secrets = [SECRET, WRONG_SECRET, REFRESH_TOKEN, PASSWORD, plain, ...idp.issued.map((t) => t.token), ...keyLines(creds.serviceAccount.privateKeyPem)];
    expect(idp.issued.length).toBeGreaterThan(5);
    const all = outputs.join('\n');
    for (const s of secrets) expect(all.includes(s), `a secret in the output: ${s.slice(0, 12)}…`).toBe(false);
    // Nor the base64 of an XOAUTH2 string (`user=`).
    expect(all).not.toMatch(/dXNlcj/);
  });
});
