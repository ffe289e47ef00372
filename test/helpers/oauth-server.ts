/**
 * A real OAuth2 authorization server on loopback for the tests of OAuth2 upstreams, built on node:https
 * and jose: it issues access tokens as ES256-signed JWTs (its JWKS verifies them, see `verify`) for
 *
 * - the client credentials grant (RFC 6749 §4.4), the client authenticated by HTTP Basic, by
 *   `client_secret` in the body, or by a signed client assertion (RFC 7523 §2.2, what msal-node sends
 *   for a certificate: verified against the registered certificate);
 * - the refresh token grant (§6), with rotation of refresh tokens as a knob;
 * - the JWT-bearer grant (RFC 7523 §2.1, Google's service accounts): the assertion verified against the
 *   service account's public key, its `sub` becoming the token's subject.
 *
 * It answers wrong credentials as Microsoft Entra ID does (HTTP 401 invalid_client with an AADSTS
 * number), and has knobs: token lifetime, a forced refusal, down (connections refused), slow, and a
 * count of every request.
 *
 * @example
 * const idp = await startOAuthServer({ tls: { key: pki.server.key, cert: pki.server.cert } });
 * idp.addClient('mailtrail', { secret: 'client-secret' });
 * // tokenUrl: idp.tokenUrl('/contoso.example/oauth2/v2.0/token'); auth.ca: pki.caPath
 * await idp.close();
 */
import { execFile } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import {
  SignJWT,
  exportJWK,
  generateKeyPair,
  importX509,
  jwtVerify,
  createLocalJWKSet,
  decodeProtectedHeader,
  type JSONWebKeySet,
  type JWTPayload,
} from 'jose';

/** A refusal as a token endpoint sends it (RFC 6749 §5.2), `errorCodes` as Microsoft adds them. */
export interface TokenRefusal {
  readonly status: number;
  readonly error: string;
  readonly description?: string;
  readonly errorCodes?: readonly number[];
}

export interface OAuthServerKnobs {
  /** Lifetime of the tokens issued, in whole seconds (the `expires_in` of the answer). */
  lifetimeSeconds: number;
  /** Answer every token request with this refusal. */
  refuse: TokenRefusal | null;
  /** Wait this long before answering a token request. */
  delayMs: number;
  /** With the refresh token grant, issue a new refresh token each time (the old one stops working). */
  rotateRefreshTokens: boolean;
}

/** One request to a token path and how it was answered. */
export interface TokenRequestSeen {
  readonly grant: string;
  readonly clientId: string | null;
  readonly status: number;
  readonly at: number;
}

export interface IssuedAccessToken {
  readonly token: string;
  readonly subject: string;
  readonly expiresAt: number;
}

export interface OAuthServer {
  /** `https://127.0.0.1:PORT` (or http:// without `tls`). */
  readonly origin: string;
  readonly port: number;
  readonly knobs: OAuthServerKnobs;
  readonly requests: TokenRequestSeen[];
  readonly issued: IssuedAccessToken[];
  /** Refresh tokens issued by rotation, newest last. */
  readonly refreshTokensIssued: string[];
  readonly jwks: JSONWebKeySet;
  /** `origin + path`: any path ending in `/token` is a token endpoint. */
  tokenUrl(path?: string): string;
  addClient(clientId: string, credentials: { secret?: string; certificate?: string }): void;
  addRefreshToken(refreshToken: string, grant: { clientId: string; user: string }): void;
  /** A service account (its client_email) and the PEM public key of its private key. */
  addServiceAccount(email: string, publicKeyPem: string): void;
  /** True when `token` was issued here, is unexpired, is signed by this server, and is for `user` (when it names one). */
  verify(token: string, user?: string): Promise<boolean>;
  /** Stop listening: token requests get ECONNREFUSED. */
  down(): Promise<void>;
  /** Listen again on the same port. */
  up(): Promise<void>;
  /** Resolves once no token request is being answered (a slow one from an earlier test would be counted in the next). */
  idle(): Promise<void>;
  /** Token requests by grant (and whether they were answered 200). */
  count(filter?: { grant?: string; ok?: boolean }): number;
  close(): Promise<void>;
}

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

export async function startOAuthServer(opts: { tls?: { key: string; cert: string }; knobs?: Partial<OAuthServerKnobs> } = {}): Promise<OAuthServer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const kid = randomBytes(8).toString('hex');
  const jwks: JSONWebKeySet = { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] };
  const keySet = createLocalJWKSet(jwks);
  const knobs: OAuthServerKnobs = { lifetimeSeconds: 3600, refuse: null, delayMs: 0, rotateRefreshTokens: false, ...opts.knobs };
  const clients = new Map<string, { secret?: string; certificate?: string }>();
  const refreshTokens = new Map<string, { clientId: string; user: string }>();
  const serviceAccounts = new Map<string, KeyObject>();
  const requests: TokenRequestSeen[] = [];
  const issued: IssuedAccessToken[] = [];
  const refreshTokensIssued: string[] = [];
  const sockets = new Set<net.Socket>();
  let port = 0;
  let origin = '';
  let answering = 0;

  const issuer = (): string => `${origin}/`;

  async function issue(subject: string, clientId: string | null, scope: string | null): Promise<object> {
    const lifetime = knobs.lifetimeSeconds;
    const nowMs = Date.now();
    const now = Math.floor(nowMs / 1000);
    // `exp` is in whole seconds: rounded up, so the token is good for at least `expires_in` from now.
    const exp = Math.ceil(nowMs / 1000 + lifetime);
    const token = await new SignJWT({ scp: scope ?? '', azp: clientId ?? undefined })
      .setProtectedHeader({ alg: 'ES256', kid })
      .setIssuer(issuer())
      .setSubject(subject)
      .setAudience(scope ?? 'mail')
      .setIssuedAt(now)
      .setExpirationTime(exp)
      .setJti(randomBytes(12).toString('hex'))
      .sign(privateKey);
    issued.push({ token, subject, expiresAt: nowMs + lifetime * 1000 });
    return { token_type: 'Bearer', access_token: token, expires_in: lifetime, ...(scope ? { scope } : {}) };
  }

  /** The client as it authenticated, or a refusal. */
  async function client(req: http.IncomingMessage, form: URLSearchParams): Promise<{ id: string } | TokenRefusal> {
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    let id = form.get('client_id');
    let secret = form.get('client_secret');
    if (basic) {
      const [user = '', pass = ''] = Buffer.from(basic, 'base64').toString('utf8').split(':');
      id = decodeURIComponent(user.replace(/\+/g, ' '));
      secret = decodeURIComponent(pass.replace(/\+/g, ' '));
    }
    const assertion = form.get('client_assertion_type') === ASSERTION_TYPE ? form.get('client_assertion') : null;
    if (assertion && id === null) id = decodeJwtClaim(assertion, 'iss');
    const registered = id === null ? undefined : clients.get(id);
    if (id === null || registered === undefined) {
      return invalidClient(
        700016,
        `AADSTS700016: Application with identifier '${id ?? ''}' was not found in the directory 'test'.`,
        'unauthorized_client',
        400,
      );
    }
    if (assertion) {
      if (!registered.certificate)
        return invalidClient(700027, 'AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application.');
      try {
        const header = decodeProtectedHeader(assertion);
        const key = await importX509(registered.certificate, header.alg ?? 'PS256');
        // Entra ID allows minutes of clock skew; msal rounds `nbf` up to the next second.
        const { payload } = await jwtVerify(assertion, key, { clockTolerance: 300 });
        if (payload.iss !== id || payload.sub !== id) throw new Error('iss/sub');
        return { id };
      } catch {
        return invalidClient(700027, 'AADSTS700027: Client assertion failed signature validation.');
      }
    }
    if (registered.secret === undefined) return { id };
    if (secret !== registered.secret) {
      return invalidClient(
        7000215,
        `AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${id}'.\r\nTrace ID: 6f6c4645-0202-4486-b625-fa957dfc4700\r\nCorrelation ID: 5fc87507-4086-4e77-b415-cee677eb232e\r\nTimestamp: 2026-12-01 06:03:00Z`,
      );
    }
    return { id };
  }

  async function token(req: http.IncomingMessage, form: URLSearchParams): Promise<{ status: number; body: object }> {
    if (knobs.refuse) return refusalBody(knobs.refuse);
    const grant = form.get('grant_type') ?? '';
    const scope = form.get('scope');
    if (grant === JWT_BEARER) {
      const assertion = form.get('assertion') ?? '';
      const iss = decodeJwtClaim(assertion, 'iss');
      const key = iss === null ? undefined : serviceAccounts.get(iss);
      if (key === undefined) return refusalBody({ status: 400, error: 'invalid_grant', description: 'Invalid grant: account not found' });
      try {
        const { payload } = await jwtVerify(assertion, key, { clockTolerance: 300 });
        const subject = typeof payload.sub === 'string' ? payload.sub : iss!;
        return { status: 200, body: await issue(subject, iss, typeof payload.scope === 'string' ? payload.scope : scope) };
      } catch {
        return refusalBody({ status: 400, error: 'invalid_grant', description: 'Invalid JWT Signature.' });
      }
    }
    const who = await client(req, form);
    if ('status' in who) return refusalBody(who);
    if (grant === 'client_credentials') return { status: 200, body: await issue(who.id, who.id, scope) };
    if (grant === 'refresh_token') {
      const presented = form.get('refresh_token') ?? '';
      const known = refreshTokens.get(presented);
      if (known === undefined || known.clientId !== who.id) {
        return refusalBody({
          status: 400,
          error: 'invalid_grant',
          description: 'AADSTS700082: The refresh token has expired due to inactivity.',
          errorCodes: [700082],
        });
      }
      const body = await issue(known.user, who.id, scope);
      if (!knobs.rotateRefreshTokens) return { status: 200, body };
      refreshTokens.delete(presented);
      const next = `rt-${randomBytes(16).toString('hex')}`;
      refreshTokens.set(next, known);
      refreshTokensIssued.push(next);
      return { status: 200, body: { ...body, refresh_token: next } };
    }
    return refusalBody({ status: 400, error: 'unsupported_grant_type', description: `grant ${grant} is not supported` });
  }

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const path = (req.url ?? '/').split('?')[0] ?? '/';
        if (req.method === 'GET' && path === '/jwks') return send(res, 200, jwks);
        if (req.method !== 'POST' || !path.endsWith('/token')) return send(res, 404, { error: 'not_found' });
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        answering++;
        try {
          if (knobs.delayMs > 0) await new Promise((r) => setTimeout(r, knobs.delayMs));
          const answer = await token(req, form);
          requests.push({ grant: form.get('grant_type') ?? '', clientId: form.get('client_id'), status: answer.status, at: Date.now() });
          send(res, answer.status, answer.body);
        } finally {
          answering--;
        }
      })();
    });
  };

  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : http.createServer(handler);
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const listen = (p: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(p, '127.0.0.1', () => {
        server.off('error', reject);
        port = (server.address() as net.AddressInfo).port;
        origin = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
        resolve();
      });
    });
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  await listen(0);

  return {
    get origin() {
      return origin;
    },
    get port() {
      return port;
    },
    knobs,
    requests,
    issued,
    refreshTokensIssued,
    jwks,
    tokenUrl: (path = '/token') => `${origin}${path}`,
    addClient: (clientId, credentials) => void clients.set(clientId, credentials),
    addRefreshToken: (refreshToken, grant) => void refreshTokens.set(refreshToken, grant),
    addServiceAccount: (email, publicKeyPem) => void serviceAccounts.set(email, createPublicKey(publicKeyPem)),
    async verify(accessToken, user) {
      try {
        const { payload } = await jwtVerify(accessToken, keySet, { issuer: issuer(), clockTolerance: 0 });
        return user === undefined || subjectAllows(payload, user, clients);
      } catch {
        return false;
      }
    },
    async idle() {
      while (answering > 0) await new Promise((r) => setTimeout(r, 20));
    },
    down: stop,
    up: () => (server.listening ? Promise.resolve() : listen(port)),
    count: (filter = {}) =>
      requests.filter((r) => (filter.grant === undefined || r.grant === filter.grant) && (filter.ok === undefined || (r.status === 200) === filter.ok)).length,
    close: stop,
  };
}

/** An app-only token (subject: the client) may send as any mailbox; a user's token only as that user. */
function subjectAllows(payload: JWTPayload, user: string, clients: Map<string, unknown>): boolean {
  return payload.sub === user || (typeof payload.sub === 'string' && clients.has(payload.sub));
}

function invalidClient(code: number, description: string, error = 'invalid_client', status = 401): TokenRefusal {
  return { status, error, description, errorCodes: [code] };
}

function refusalBody(r: TokenRefusal): { status: number; body: object } {
  return {
    status: r.status,
    body: {
      error: r.error,
      ...(r.description ? { error_description: r.description } : {}),
      ...(r.errorCodes ? { error_codes: r.errorCodes, timestamp: '2026-12-01 06:03:00Z', trace_id: '6f6c4645-0202-4486-b625-fa957dfc4700' } : {}),
    },
  };
}

function send(res: http.ServerResponse, status: number, body: object): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function decodeJwtClaim(jwt: string, claim: string): string | null {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
    return typeof payload[claim] === 'string' ? payload[claim] : null;
  } catch {
    return null;
  }
}

/** Credentials for the three kinds of OAuth2 upstream, written as files the configuration names. */
export interface OAuthCredentials {
  /** An application certificate (RSA, self-signed) and its key, as Microsoft Entra ID would have it registered. */
  readonly certificate: { readonly cert: string; readonly certPath: string; readonly keyPath: string; readonly keyPem: string };
  /** A Google service account key file (JSON) and the public half of its key. */
  readonly serviceAccount: { readonly file: string; readonly email: string; readonly publicKeyPem: string; readonly privateKeyPem: string };
}

/** Writes fresh credentials into `dir` (a test's temp dir): openssl for the certificate, node:crypto for the service account. */
export async function makeOAuthCredentials(dir: string): Promise<OAuthCredentials> {
  const certPath = join(dir, 'app-cert.pem');
  const keyPath = join(dir, 'app-key.pem');
  await promisify(execFile)('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    keyPath,
    '-out',
    certPath,
    '-subj',
    '/CN=mailtrail-test-app',
    '-days',
    '2',
  ]);
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const email = 'mailtrail@mailtrail-test.iam.gserviceaccount.com';
  const file = join(dir, 'service-account.json');
  await writeFile(
    file,
    JSON.stringify({
      type: 'service_account',
      project_id: 'mailtrail-test',
      private_key_id: randomBytes(20).toString('hex'),
      private_key: privateKeyPem,
      client_email: email,
      client_id: '100000000000000000001',
      token_uri: 'https://oauth2.googleapis.com/token',
    }),
  );
  return {
    certificate: { cert: await readFile(certPath, 'utf8'), certPath, keyPath, keyPem: await readFile(keyPath, 'utf8') },
    serviceAccount: { file, email, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), privateKeyPem },
  };
}
