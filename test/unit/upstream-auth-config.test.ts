/**
 * `upstreams[].auth`: a password as before, or OAuth2 for Microsoft 365, Google Workspace or any RFC 6749
 * token endpoint; every wrong combination reported with its key path, files checked at load.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/config-error.js';
import { describeConfig, parseConfig } from '../../src/config/load.js';
import type { UpstreamConfig } from '../../src/config/types.js';
import { makeOAuthCredentials, type OAuthCredentials } from '../helpers/oauth-server.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';

let dir: string;
let creds: OAuthCredentials;
let pki: TestPki;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailtrail-auth-config-'));
  creds = await makeOAuthCredentials(dir);
  pki = await makeTestPki();
  await writeFile(join(dir, 'not-json.json'), 'hello');
  await writeFile(join(dir, 'user-credentials.json'), JSON.stringify({ type: 'authorized_user', client_id: 'x', refresh_token: 'y' }));
}, 30_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await pki.cleanup();
});

function upstreamWith(auth: unknown, url = 'smtp://smtp.example.net:587'): unknown {
  return { listen: [{ port: 2525 }], upstreams: [{ name: 'up', url, auth }] };
}

function loaded(auth: unknown, url?: string): UpstreamConfig {
  return parseConfig(upstreamWith(auth, url), { env: {}, baseDir: dir }).upstreams[0]!;
}

function problems(auth: unknown, url?: string): string[] {
  try {
    parseConfig(upstreamWith(auth, url), { env: {}, baseDir: dir });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

const M365 = { type: 'oauth2', user: 'printer@contoso.com', tenantId: 'contoso.onmicrosoft.com', clientId: 'app-id', clientSecret: 's3cret' };

describe('a password login', () => {
  it('is implied by user and pass, as before', () => {
    expect(loaded({ user: 'u', pass: 'p' }).auth).toEqual({ type: 'password', user: 'u', pass: 'p' });
    expect(loaded({ type: 'password', user: 'u', pass: 'p' }).auth).toEqual({ type: 'password', user: 'u', pass: 'p' });
  });

  it('comes from the URL user info too', () => {
    expect(loaded(undefined, 'smtp://relay%40example.com:p%2Fw@smtp.example.net').auth).toEqual({ type: 'password', user: 'relay@example.com', pass: 'p/w' });
  });

  it('needs pass, and takes no OAuth2 key', () => {
    expect(problems({ user: 'u' })).toEqual(['upstreams[0].auth.pass: required (or set type: oauth2)']);
    expect(problems({ type: 'password', user: 'u', pass: 'p', clientId: 'x' })).toEqual(['upstreams[0].auth.clientId: only with type: oauth2']);
  });

  it('asks for type: oauth2 when OAuth2 keys come without it', () => {
    expect(problems({ user: 'u', tenantId: 'contoso.onmicrosoft.com', clientId: 'x', clientSecret: 'y' })).toEqual([
      'upstreams[0].auth.type: needed with tenantId: set type: oauth2',
    ]);
  });
});

describe('an OAuth2 login for Microsoft 365', () => {
  it('loads with the public cloud endpoint and the Exchange Online scope by default', () => {
    expect(loaded(M365).auth).toMatchObject({
      type: 'oauth2',
      provider: 'microsoft',
      grant: 'client_credentials',
      tokenUrl: 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token',
      scope: 'https://outlook.office365.com/.default',
      timeout: 10_000,
      ca: null,
    });
  });

  it('takes another token endpoint and scope (a sovereign cloud)', () => {
    const auth = loaded({ ...M365, tokenUrl: 'https://login.microsoftonline.us/t/oauth2/v2.0/token', scope: 'https://outlook.office365.us/.default' }).auth;
    expect(auth).toMatchObject({ tokenUrl: 'https://login.microsoftonline.us/t/oauth2/v2.0/token', scope: 'https://outlook.office365.us/.default' });
  });

  it('needs clientId with tenantId', () => {
    expect(problems({ type: 'oauth2', user: 'p@c.com', tenantId: 'contoso.onmicrosoft.com', clientSecret: 's' })).toEqual([
      'upstreams[0].auth.clientId: required with tenantId',
    ]);
  });

  it('needs exactly one of a secret and a certificate', () => {
    const cert = { key: creds.certificate.keyPath, cert: creds.certificate.certPath };
    expect(problems({ ...M365, clientCertificate: cert })).toEqual(['upstreams[0].auth.clientCertificate: not with clientSecret: give one of them']);
    expect(problems({ ...M365, clientSecret: undefined })).toEqual(['upstreams[0].auth.clientSecret: required with tenantId (or clientCertificate)']);
    expect(loaded({ ...M365, clientSecret: undefined, clientCertificate: cert }).auth).toMatchObject({ clientSecret: null, clientCertificate: cert });
  });

  it('refuses a multi-tenant alias, a password, a refresh token and a service account key', () => {
    expect(problems({ ...M365, tenantId: 'common' })).toEqual([
      "upstreams[0].auth.tenantId: must be the tenant's id or domain (common and organizations issue no app-only tokens)",
    ]);
    expect(problems({ ...M365, pass: 'p' })).toEqual(['upstreams[0].auth.pass: not with type: oauth2 (the access token replaces the password)']);
    expect(problems({ ...M365, refreshToken: 'r' })).toEqual([
      'upstreams[0].auth.refreshToken: not with tenantId: Microsoft 365 app-only tokens come from the client credentials grant',
    ]);
    expect(problems({ ...M365, serviceAccountKeyFile: creds.serviceAccount.file })).toEqual([
      'upstreams[0].auth.serviceAccountKeyFile: not with tenantId: one identity provider per upstream entry',
    ]);
  });

  it('checks the certificate files: readable, an RSA key, the certificate of that key', () => {
    const cert = (key: string, c: string) => ({ ...M365, clientSecret: undefined, clientCertificate: { key, cert: c } });
    expect(problems(cert('missing.pem', creds.certificate.certPath))).toEqual(['upstreams[0].auth.clientCertificate.key: cannot read the file (ENOENT)']);
    expect(problems(cert(pki.server.keyPath, creds.certificate.certPath))).toEqual([
      'upstreams[0].auth.clientCertificate.key: not an RSA key (Microsoft Entra ID signs with RSA)',
    ]);
    expect(problems(cert(creds.certificate.keyPath, pki.server.certPath))).toEqual([
      'upstreams[0].auth.clientCertificate.cert: does not belong to clientCertificate.key',
    ]);
    expect(problems(cert(creds.certificate.keyPath, creds.certificate.keyPath))).toEqual(['upstreams[0].auth.clientCertificate.cert: not a PEM certificate']);
  });

  it('refuses credentials in the URL as well as in auth', () => {
    expect(problems(M365, 'smtp://u:p@smtp.office365.com:587')).toEqual(['upstreams[0].auth: credentials are given in both url and auth; keep one']);
  });
});

describe('an OAuth2 login for Google Workspace', () => {
  it('loads a service account key, with Google endpoint and the mail scope by default', () => {
    expect(loaded({ type: 'oauth2', user: 'app@example.com', serviceAccountKeyFile: 'service-account.json' }).auth).toMatchObject({
      provider: 'google',
      grant: 'jwt_bearer',
      tokenUrl: 'https://oauth2.googleapis.com/token',
      scope: 'https://mail.google.com/',
      serviceAccountKeyFile: creds.serviceAccount.file,
    });
  });

  it('reports a key file that is missing, not JSON, or not a service account key', () => {
    const google = (file: string) => ({ type: 'oauth2', user: 'app@example.com', serviceAccountKeyFile: file });
    expect(problems(google('nowhere.json'))).toEqual(['upstreams[0].auth.serviceAccountKeyFile: cannot read the file (ENOENT)']);
    expect(problems(google('not-json.json'))).toEqual(['upstreams[0].auth.serviceAccountKeyFile: not a Google service account key (not JSON)']);
    expect(problems(google('user-credentials.json'))).toEqual([
      'upstreams[0].auth.serviceAccountKeyFile: not a Google service account key (needs type service_account, client_email and private_key)',
    ]);
  });

  it('takes no client id, secret or refresh token: the key file holds the credentials', () => {
    expect(problems({ type: 'oauth2', user: 'a@example.com', serviceAccountKeyFile: creds.serviceAccount.file, clientSecret: 's' })).toEqual([
      'upstreams[0].auth.clientSecret: not with serviceAccountKeyFile: the key file holds the credentials',
    ]);
  });
});

describe('an OAuth2 login for any RFC 6749 token endpoint', () => {
  const generic = { type: 'oauth2', user: 'app@example.net', tokenUrl: 'https://idp.example.net/oauth2/token', clientId: 'mailtrail' };

  it('uses the client credentials grant with a secret, the refresh token grant with a refresh token', () => {
    expect(loaded({ ...generic, clientSecret: 's' }).auth).toMatchObject({ provider: 'generic', grant: 'client_credentials', scope: null });
    expect(loaded({ ...generic, refreshToken: 'r' }).auth).toMatchObject({ grant: 'refresh_token', clientSecret: null, refreshToken: 'r' });
    expect(loaded({ ...generic, clientSecret: 's', refreshToken: 'r' }).auth).toMatchObject({ grant: 'refresh_token' });
  });

  it('needs a token URL, a client id, and a secret or a refresh token', () => {
    expect(problems({ type: 'oauth2', user: 'a@example.net' })).toEqual([
      'upstreams[0].auth.tokenUrl: required with type: oauth2 unless tenantId (Microsoft 365) or serviceAccountKeyFile (Google) is given',
      'upstreams[0].auth.clientId: required with tokenUrl',
      'upstreams[0].auth.clientSecret: required with tokenUrl (client credentials grant), unless refreshToken is given',
    ]);
  });

  it('wants https, http only to loopback, and no credentials in the URL', () => {
    const withUrl = (tokenUrl: string) => problems({ ...generic, clientSecret: 's', tokenUrl });
    expect(withUrl('http://idp.example.net/token')).toEqual(['upstreams[0].auth.tokenUrl: http:// only to a loopback address; use https://']);
    expect(withUrl('https://id:secret@idp.example.net/token')).toEqual([
      'upstreams[0].auth.tokenUrl: must not carry credentials (use clientId and clientSecret)',
    ]);
    expect(withUrl('ftp://idp.example.net/token')).toEqual(['upstreams[0].auth.tokenUrl: not an https:// URL']);
    expect(withUrl('http://127.0.0.1:9100/token')).toEqual([]);
  });

  it('reports an unreadable CA file', () => {
    expect(problems({ ...generic, clientSecret: 's', ca: 'no-ca.pem' })).toEqual(['upstreams[0].auth.ca: cannot read the file (ENOENT)']);
  });

  it('shows the configuration without the secret and the refresh token', () => {
    const config = parseConfig(upstreamWith({ ...generic, clientSecret: 'Secret-Quartz-1', refreshToken: 'Refresh-Quartz-2' }), { env: {}, baseDir: dir });
    const text = JSON.stringify(describeConfig(config));
    expect(text).not.toMatch(/Secret-Quartz-1|Refresh-Quartz-2/);
    expect(text).toMatch(/"clientId":"mailtrail"/);
  });
});
