/**
 * `upstreams[].auth`: how mailtrail logs in to an upstream (docs/config.md, "Keys": `upstreams[].auth.*`;
 * docs/oauth2.md). Either a password (AUTH PLAIN/LOGIN; `type: password`, implied when `pass` is given)
 * or OAuth2 (AUTH XOAUTH2 with an access token mailtrail fetches itself):
 *
 * - Microsoft 365: `tenantId` + `clientId` + `clientSecret` or `clientCertificate` (app-only, client
 *   credentials grant);
 * - Google Workspace: `serviceAccountKeyFile` (the JWT-bearer grant, RFC 7523, with `user` as subject:
 *   domain-wide delegation);
 * - any RFC 6749 token endpoint: `tokenUrl` + `clientId` + `clientSecret` (client credentials grant) or
 *   `refreshToken` (refresh token grant, the secret then optional for public clients).
 *
 * The files named here (the service account key, the certificate and its key) are read and checked at
 * load (`authFileProblems`), so `check-config` names a missing or wrong file; their contents never enter
 * the loaded configuration: the token sources read them again at start-up.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';
import type { ConfigProblem } from './config-error.js';
import { ALWAYS, hostName, isRecord, path, requiredDuration } from './fields.js';

/** The token endpoints and scopes used when `tokenUrl` and `scope` are not given. */
export const MICROSOFT_TOKEN_URL = (tenantId: string): string => `https://login.microsoftonline.com/${encodeURIComponent(tenantId)}/oauth2/v2.0/token`;
/** Exchange Online's resource with `.default`: every application permission granted (SMTP.SendAsApp). */
export const MICROSOFT_SCOPE = 'https://outlook.office365.com/.default';
export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
/** The only scope Gmail's SMTP server takes for XOAUTH2 (developers.google.com/workspace/gmail/imap/xoauth2-protocol). */
export const GOOGLE_SCOPE = 'https://mail.google.com/';
/** Longest token request when `auth.timeout` is not given. */
export const DEFAULT_TOKEN_TIMEOUT_MS = 10_000;

/** Tenants that name no directory: the client credentials grant needs the tenant that owns the application. */
const MULTI_TENANT_ALIASES = new Set(['common', 'organizations', 'consumers']);

/** Keys that make `auth` an OAuth2 login; with a password they are mistakes. */
const OAUTH2_KEYS = [
  'tenantId',
  'clientId',
  'clientSecret',
  'clientCertificate',
  'serviceAccountKeyFile',
  'refreshToken',
  'tokenUrl',
  'scope',
  'ca',
  'timeout',
] as const;

/**
 * The token endpoint: https, or http to a loopback address only (a token server on the same host); no
 * credentials in the URL (they belong in `clientId` / `clientSecret`, where they are redacted).
 */
function tokenUrlProblem(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'not an https:// URL';
  }
  if (url.username !== '' || url.password !== '') return 'must not carry credentials (use clientId and clientSecret)';
  if (url.hash !== '') return 'must not have a fragment';
  if (url.protocol === 'https:') return null;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const loopback = host === 'localhost' || (isIP(host) === 4 && host.startsWith('127.')) || host === '::1';
  if (url.protocol === 'http:' && loopback) return null;
  return url.protocol === 'http:' ? 'http:// only to a loopback address; use https://' : 'not an https:// URL';
}

const tokenUrl = z.string().superRefine((text, ctx) => {
  const problem = tokenUrlProblem(text);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
});

const tenantId = hostName().refine(
  (s) => !MULTI_TENANT_ALIASES.has(s.toLowerCase()),
  "must be the tenant's id or domain (common and organizations issue no app-only tokens)",
);

export const upstreamAuthSchema = z
  .strictObject({
    /** `password` (the default when `pass` is given) or `oauth2`. */
    type: z.enum(['password', 'oauth2']).optional(),
    /** The AUTH user name; with OAuth2 the mailbox named in the XOAUTH2 string. */
    user: z.string().min(1),
    pass: z.string().min(1).optional(),
    tenantId: tenantId.optional(),
    clientId: z.string().min(1).optional(),
    clientSecret: z.string().min(1).optional(),
    /** PEM files: the application's certificate, as uploaded to the app registration, and its RSA key. */
    clientCertificate: z.strictObject({ key: path(), cert: path() }).optional(),
    serviceAccountKeyFile: path().optional(),
    refreshToken: z.string().min(1).optional(),
    tokenUrl: tokenUrl.optional(),
    scope: z.string().min(1).optional(),
    /** PEM CA file to trust for the token endpoint instead of the system store. */
    ca: path().nullable().optional(),
    /** Longest token request. */
    timeout: requiredDuration().optional(),
  })
  .superRefine((value: unknown, ctx) => authConsistency(value, ctx), ALWAYS);

type ParsedAuth = z.output<typeof upstreamAuthSchema>;

/** Which OAuth2 flavour the keys ask for: tenantId says Microsoft, serviceAccountKeyFile Google, else generic. */
function providerOf(auth: Record<string, unknown>): OAuth2Auth['provider'] {
  if (auth.tenantId !== undefined) return 'microsoft';
  if (auth.serviceAccountKeyFile !== undefined) return 'google';
  return 'generic';
}

/** Checks between the keys of one `auth`; `value` may be partly invalid (see ALWAYS). */
function authConsistency(value: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(value)) return;
  const issue = (key: string, message: string): void => ctx.addIssue({ code: 'custom', message, path: [key] });
  const given = (key: string): boolean => value[key] !== undefined && value[key] !== null;
  const oauthKeys = OAUTH2_KEYS.filter(given);
  if (value.type !== 'oauth2') {
    if (value.type === undefined && !given('pass') && oauthKeys.length > 0) {
      issue('type', `needed with ${oauthKeys[0]}: set type: oauth2`);
      return;
    }
    if (!given('pass')) issue('pass', 'required (or set type: oauth2)');
    for (const key of oauthKeys) issue(key, 'only with type: oauth2');
    return;
  }
  if (given('pass')) issue('pass', 'not with type: oauth2 (the access token replaces the password)');
  const provider = providerOf(value);
  if (provider === 'microsoft') {
    if (given('serviceAccountKeyFile')) issue('serviceAccountKeyFile', 'not with tenantId: one identity provider per upstream entry');
    if (!given('clientId')) issue('clientId', 'required with tenantId');
    if (given('clientSecret') && given('clientCertificate')) issue('clientCertificate', 'not with clientSecret: give one of them');
    else if (!given('clientSecret') && !given('clientCertificate')) issue('clientSecret', 'required with tenantId (or clientCertificate)');
    if (given('refreshToken')) issue('refreshToken', 'not with tenantId: Microsoft 365 app-only tokens come from the client credentials grant');
  } else if (provider === 'google') {
    for (const key of ['clientId', 'clientSecret', 'clientCertificate', 'refreshToken']) {
      if (given(key)) issue(key, 'not with serviceAccountKeyFile: the key file holds the credentials');
    }
  } else {
    if (!given('tokenUrl')) issue('tokenUrl', 'required with type: oauth2 unless tenantId (Microsoft 365) or serviceAccountKeyFile (Google) is given');
    if (!given('clientId')) issue('clientId', 'required with tokenUrl');
    if (!given('clientSecret') && !given('refreshToken'))
      issue('clientSecret', 'required with tokenUrl (client credentials grant), unless refreshToken is given');
    if (given('clientCertificate')) issue('clientCertificate', 'only with tenantId (Microsoft 365)');
  }
}

/** A password login (AUTH PLAIN or LOGIN), from `auth` or the URL's user info. */
export interface PasswordAuth {
  readonly type: 'password';
  readonly user: string;
  readonly pass: string;
}

/** An OAuth2 login (AUTH XOAUTH2), every default made explicit and every path resolved. */
export interface OAuth2Auth {
  readonly type: 'oauth2';
  /** The mailbox named in the XOAUTH2 string (and, for Google, the subject of the token). */
  readonly user: string;
  readonly provider: 'microsoft' | 'google' | 'generic';
  /** `client_credentials` (Microsoft, generic with a secret), `refresh_token`, or `jwt_bearer` (Google). */
  readonly grant: 'client_credentials' | 'refresh_token' | 'jwt_bearer';
  /** The token endpoint: `auth.tokenUrl`, else the provider's. */
  readonly tokenUrl: string;
  /** The scope asked for: `auth.scope`, else the provider's; null = none (the identity provider's default). */
  readonly scope: string | null;
  readonly tenantId: string | null;
  readonly clientId: string | null;
  readonly clientSecret: string | null;
  readonly clientCertificate: { readonly key: string; readonly cert: string } | null;
  readonly serviceAccountKeyFile: string | null;
  readonly refreshToken: string | null;
  readonly ca: string | null;
  readonly timeout: number;
}

export type UpstreamAuth = PasswordAuth | OAuth2Auth;

/** The loaded `auth`: the URL's credentials when `auth` is absent; paths resolved against `baseDir`. */
export function toUpstreamAuth(
  auth: ParsedAuth | null | undefined,
  urlCredentials: { user: string; pass: string } | null,
  baseDir: string,
): UpstreamAuth | null {
  if (auth == null) return urlCredentials === null ? null : { type: 'password', ...urlCredentials };
  if (auth.type !== 'oauth2') return { type: 'password', user: auth.user, pass: auth.pass ?? '' };
  const provider = providerOf(auth);
  const file = (p: string | undefined): string | null => (p === undefined ? null : resolve(baseDir, p));
  return {
    type: 'oauth2',
    user: auth.user,
    provider,
    grant: provider === 'google' ? 'jwt_bearer' : provider === 'generic' && auth.refreshToken !== undefined ? 'refresh_token' : 'client_credentials',
    tokenUrl: auth.tokenUrl ?? (provider === 'microsoft' ? MICROSOFT_TOKEN_URL(auth.tenantId ?? '') : GOOGLE_TOKEN_URL),
    scope: auth.scope ?? (provider === 'microsoft' ? MICROSOFT_SCOPE : provider === 'google' ? GOOGLE_SCOPE : null),
    tenantId: auth.tenantId ?? null,
    clientId: auth.clientId ?? null,
    clientSecret: auth.clientSecret ?? null,
    clientCertificate: auth.clientCertificate
      ? { key: resolve(baseDir, auth.clientCertificate.key), cert: resolve(baseDir, auth.clientCertificate.cert) }
      : null,
    serviceAccountKeyFile: file(auth.serviceAccountKeyFile),
    refreshToken: auth.refreshToken ?? null,
    ca: file(auth.ca ?? undefined),
    timeout: auth.timeout ?? DEFAULT_TOKEN_TIMEOUT_MS,
  };
}

// ---------------------------------------------------------------------------------------------------
// The files an OAuth2 login names, read and checked at load and again at start-up.

/** What a Google service account key file gives the token source. */
export interface ServiceAccountKey {
  readonly clientEmail: string;
  readonly privateKey: string;
  readonly privateKeyId: string | null;
}

/** An application certificate for Microsoft: the RSA key and the certificate's SHA-256 thumbprint (hex). */
export interface ClientCertificate {
  readonly privateKey: string;
  readonly thumbprintSha256: string;
}

/** Thrown by the readers below; `message` names no value of the file (it holds a private key). */
export class CredentialFileError extends Error {
  /** The key under `auth` the problem is about (`serviceAccountKeyFile`, `clientCertificate.key`...). */
  readonly key: string;
  constructor(key: string, message: string) {
    super(message);
    this.name = 'CredentialFileError';
    this.key = key;
  }
}

function readText(key: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CredentialFileError(key, `cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'unknown error'})`);
  }
}

function privateKeyOf(key: string, pem: string, what: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch {
    throw new CredentialFileError(key, `not ${what}`);
  }
}

/** A service account key as the Google Cloud console downloads it (JSON with type, client_email, private_key). */
export function readServiceAccountKey(file: string): ServiceAccountKey {
  const key = 'serviceAccountKeyFile';
  let json: unknown;
  try {
    json = JSON.parse(readText(key, file));
  } catch (err) {
    if (err instanceof CredentialFileError) throw err;
    throw new CredentialFileError(key, 'not a Google service account key (not JSON)');
  }
  if (!isRecord(json) || json.type !== 'service_account' || typeof json.client_email !== 'string' || typeof json.private_key !== 'string') {
    throw new CredentialFileError(key, 'not a Google service account key (needs type service_account, client_email and private_key)');
  }
  const privateKey = privateKeyOf(key, json.private_key, 'a Google service account key (its private_key is not a PEM private key)');
  if (privateKey.asymmetricKeyType !== 'rsa') throw new CredentialFileError(key, 'not a Google service account key (its private_key is not an RSA key)');
  return { clientEmail: json.client_email, privateKey: json.private_key, privateKeyId: typeof json.private_key_id === 'string' ? json.private_key_id : null };
}

/** The certificate registered with the Entra ID application and its private key (RSA: the token request is signed PS256). */
export function readClientCertificate(paths: { readonly key: string; readonly cert: string }): ClientCertificate {
  const pem = readText('clientCertificate.key', paths.key);
  const privateKey = privateKeyOf('clientCertificate.key', pem, 'a PEM private key');
  if (privateKey.asymmetricKeyType !== 'rsa') throw new CredentialFileError('clientCertificate.key', 'not an RSA key (Microsoft Entra ID signs with RSA)');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readText('clientCertificate.cert', paths.cert));
  } catch (err) {
    if (err instanceof CredentialFileError) throw err;
    throw new CredentialFileError('clientCertificate.cert', 'not a PEM certificate');
  }
  if (!cert.checkPrivateKey(privateKey)) throw new CredentialFileError('clientCertificate.cert', 'does not belong to clientCertificate.key');
  return { privateKey: pem, thumbprintSha256: cert.fingerprint256.replaceAll(':', '').toLowerCase() };
}

/** `auth.ca` read; a missing file is a start-up problem, not a surprise at the first token request. */
export function readTokenCa(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new CredentialFileError('ca', `cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'unknown error'})`);
  }
}

/** Every problem with the files `upstreams[].auth` names, by key path (`upstreams[2].auth.serviceAccountKeyFile`). */
export function authFileProblems(auths: readonly (UpstreamAuth | null)[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  auths.forEach((auth, i) => {
    if (auth?.type !== 'oauth2') return;
    const readers: (() => unknown)[] = [];
    if (auth.serviceAccountKeyFile !== null) readers.push(() => readServiceAccountKey(auth.serviceAccountKeyFile!));
    if (auth.clientCertificate !== null) readers.push(() => readClientCertificate(auth.clientCertificate!));
    if (auth.ca !== null) readers.push(() => readTokenCa(auth.ca!));
    for (const read of readers) {
      try {
        read();
      } catch (err) {
        if (!(err instanceof CredentialFileError)) throw err;
        problems.push({ path: `upstreams[${i}].auth.${err.key}`, message: err.message });
      }
    }
  });
  return problems;
}
