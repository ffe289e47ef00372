/**
 * Google Workspace: a service account with domain-wide delegation signs a JWT asserting `auth.user` as
 * its subject and exchanges it for an access token (the JWT-bearer grant, RFC 7523 §2.1), made by
 * google-auth-library's JWT client. A fresh client per request keeps the library's own cache out (it
 * renews 5 minutes before expiry by default, see token-cache.ts), and its retries are off: the token
 * cache decides when to ask again.
 *
 * The library's token endpoint is a constant (oauth2.googleapis.com); `auth.tokenUrl` (tests, a
 * forward proxy) is applied in the transport, which sends that request to the configured URL instead.
 */
import { JWT } from 'google-auth-library';
import { GOOGLE_TOKEN_URL, type OAuth2Auth, type ServiceAccountKey } from '../../config/upstream-auth.js';
import { issued, requestOver, type IssuedToken, type TokenEndpoint } from './token-endpoint.js';
import type { TokenHttp } from './token-http.js';

export class GoogleEndpoint implements TokenEndpoint {
  readonly url: string;
  #http: TokenHttp;
  #auth: OAuth2Auth;
  #key: ServiceAccountKey;

  constructor(auth: OAuth2Auth, http: TokenHttp, key: ServiceAccountKey) {
    this.url = auth.tokenUrl;
    this.#http = http;
    this.#auth = auth;
    this.#key = key;
  }

  async request(): Promise<IssuedToken> {
    const client = new JWT({
      email: this.#key.clientEmail,
      key: this.#key.privateKey,
      ...(this.#key.privateKeyId ? { keyId: this.#key.privateKeyId } : {}),
      subject: this.#auth.user,
      scopes: this.#auth.scope ?? undefined,
      transporterOptions: { fetchImplementation: this.#http.fetch, retryConfig: { retry: 0, noResponseRetries: 0 } },
    });
    const credentials = await requestOver(this.#http, this.url, () => client.authorize());
    return issued(this.url, credentials.access_token, credentials.expiry_date ?? null);
  }
}

/** Where the library's requests go: its constant endpoint, redirected when `auth.tokenUrl` differs. */
export function googleRedirect(auth: OAuth2Auth): { from: string; to: string } | null {
  return auth.tokenUrl === GOOGLE_TOKEN_URL ? null : { from: GOOGLE_TOKEN_URL, to: auth.tokenUrl };
}
