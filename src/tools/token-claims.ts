/**
 * What an access token says about itself, for `mailtrail check-upstream` (docs/oauth2.md, "Checking an
 * upstream"): the claims of a JWT, decoded, or that the token is opaque.
 *
 * The payload is read, not verified: mailtrail is not the token's audience and holds no key to verify
 * it with; only the mail server's answer says whether the token is good. What it is read for is the
 * configuration mistakes that show in the claims (an audience that is not the mail server, a missing
 * permission). Microsoft Entra ID issues JWTs (learn.microsoft.com/entra/identity-platform/access-token-claims-reference);
 * Google's access tokens are opaque strings; other identity providers issue either.
 *
 * Nothing here keeps or returns the token itself, nor the JWT's signature.
 */

/** A JWT's payload, or `opaque` for anything else (a random string, an encrypted JWT). */
export type TokenShape = { readonly kind: 'jwt'; readonly claims: TokenClaims } | { readonly kind: 'opaque' };

/** The claims check-upstream shows and reasons about, under one name whatever the token's version. */
export interface TokenClaims {
  /** `aud`: one audience or several. */
  readonly audiences: readonly string[];
  readonly issuer: string | null;
  /** Microsoft `tid`: the directory (tenant) that issued the token. */
  readonly tenant: string | null;
  /** Microsoft `appid` (v1.0 tokens) or `azp` (v2.0): the application (client) ID. */
  readonly appId: string | null;
  /** Microsoft `app_displayname`. */
  readonly appName: string | null;
  /** Microsoft `oid`: in an app-only token, the object ID of the application's service principal (its enterprise application). */
  readonly objectId: string | null;
  readonly subject: string | null;
  /** The signed-in user of a delegated token: `upn`, `unique_name`, `preferred_username` or `email`. */
  readonly user: string | null;
  /** `roles`: application permissions (app-only tokens). */
  readonly roles: readonly string[];
  /** `scp` (Microsoft) or `scope`: delegated permissions, space-separated in the token. */
  readonly scopes: readonly string[];
  /** An application's own token (no user): `idtyp: app`, or no `scp`. */
  readonly appOnly: boolean;
  /** `iat`, `nbf`, `exp` as epoch ms. */
  readonly issuedAt: number | null;
  readonly notBefore: number | null;
  readonly expiresAt: number | null;
  /** `ver`: Microsoft's token version (`1.0`, `2.0`). */
  readonly version: string | null;
}

/** Longest token read: a JWT with many claims is a few KB; past this it is not one worth decoding. */
const MAX_TOKEN_CHARS = 64 * 1024;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * The shape of `token`. A JWS in compact form (RFC 7515 §7.1: three base64url parts, the first a JSON
 * header with `alg`, the second a JSON object) is decoded; everything else is opaque, an encrypted JWT
 * (five parts, RFC 7516) included.
 */
export function tokenShape(token: string): TokenShape {
  if (token.length > MAX_TOKEN_CHARS) return { kind: 'opaque' };
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.slice(0, 2).every((p) => BASE64URL.test(p))) return { kind: 'opaque' };
  const header = jsonObject(parts[0]!);
  const payload = jsonObject(parts[1]!);
  if (header === null || typeof header.alg !== 'string' || payload === null) return { kind: 'opaque' };
  return { kind: 'jwt', claims: readClaims(payload) };
}

/** The claims of a decoded payload, each read only when it has the type the JWT and Microsoft's reference give it. */
export function readClaims(payload: Readonly<Record<string, unknown>>): TokenClaims {
  const text = (name: string): string | null => {
    const value = payload[name];
    return typeof value === 'string' && value !== '' ? value : null;
  };
  const time = (name: string): number | null => {
    const value = payload[name];
    return typeof value === 'number' && Number.isFinite(value) ? value * 1000 : null;
  };
  const aud = payload.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
  const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === 'string') : [];
  const scopeText = text('scp') ?? text('scope');
  const scopes = scopeText === null ? [] : scopeText.split(/\s+/).filter((s) => s !== '');
  const idtyp = text('idtyp');
  return {
    audiences,
    issuer: text('iss'),
    tenant: text('tid'),
    appId: text('appid') ?? text('azp'),
    appName: text('app_displayname'),
    objectId: text('oid'),
    subject: text('sub'),
    user: text('upn') ?? text('unique_name') ?? text('preferred_username') ?? text('email'),
    roles,
    scopes,
    appOnly: idtyp !== null ? idtyp === 'app' : scopeText === null,
    issuedAt: time('iat'),
    notBefore: time('nbf'),
    expiresAt: time('exp'),
    version: text('ver'),
  };
}

function jsonObject(part: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
