/**
 * Any RFC 6749 token endpoint, through oauth4webapi: the client credentials grant (§4.4) with
 * `clientSecret`, or the refresh token grant (§6) with `refreshToken`. The client authenticates with
 * HTTP Basic, the one method every server must support (§2.3.1); a refresh token without a secret is
 * a public client's (`client_id` in the body).
 *
 * Refresh token rotation (RFC 9700 §4.14.2): when the answer carries a new refresh token, the next
 * request uses it; it is kept in memory only, so a restart begins again from the configured one.
 */
import * as oauth from 'oauth4webapi';
import type { OAuth2Auth } from '../../config/upstream-auth.js';
import { issued, requestOver, type IssuedToken, type TokenEndpoint } from './token-endpoint.js';
import type { TokenHttp } from './token-http.js';

export class GenericEndpoint implements TokenEndpoint {
  readonly url: string;
  #http: TokenHttp;
  #server: oauth.AuthorizationServer;
  #client: oauth.Client;
  #clientAuth: oauth.ClientAuth;
  #scope: string | null;
  #refreshToken: string | null;

  constructor(auth: OAuth2Auth, http: TokenHttp) {
    this.url = auth.tokenUrl;
    this.#http = http;
    this.#server = { issuer: new URL(auth.tokenUrl).origin, token_endpoint: auth.tokenUrl };
    this.#client = { client_id: auth.clientId ?? '' };
    this.#clientAuth = auth.clientSecret === null ? oauth.None() : oauth.ClientSecretBasic(auth.clientSecret);
    this.#scope = auth.scope;
    this.#refreshToken = auth.grant === 'refresh_token' ? auth.refreshToken : null;
  }

  async request(): Promise<IssuedToken> {
    const options = {
      [oauth.customFetch]: this.#http.fetch,
      // Only a loopback token server may be plain http (config/upstream-auth.ts checks it).
      [oauth.allowInsecureRequests]: this.url.startsWith('http:'),
    };
    const scope: Record<string, string> = this.#scope === null ? {} : { scope: this.#scope };
    const refreshToken = this.#refreshToken;
    const response = await requestOver(this.#http, this.url, async () => {
      if (refreshToken === null) {
        const answer = await oauth.clientCredentialsGrantRequest(this.#server, this.#client, this.#clientAuth, scope, options);
        return oauth.processClientCredentialsResponse(this.#server, this.#client, answer);
      }
      const answer = await oauth.refreshTokenGrantRequest(this.#server, this.#client, this.#clientAuth, refreshToken, {
        ...options,
        additionalParameters: scope,
      });
      return oauth.processRefreshTokenResponse(this.#server, this.#client, answer);
    });
    if (refreshToken !== null && typeof response.refresh_token === 'string' && response.refresh_token !== '') this.#refreshToken = response.refresh_token;
    const obtainedAt = Date.now();
    const expiresAt = typeof response.expires_in === 'number' ? obtainedAt + response.expires_in * 1000 : null;
    return issued(this.url, response.access_token, expiresAt, obtainedAt);
  }
}
