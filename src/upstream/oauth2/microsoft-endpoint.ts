/**
 * Microsoft 365 app-only tokens: the client credentials grant of Microsoft Entra ID, made by msal-node
 * (ConfidentialClientApplication.acquireTokenByClientCredential) with a client secret or a certificate
 * (msal signs the client assertion). Two settings keep msal to exactly one request per call:
 *
 * - msal's own cache is bypassed (`skipCache`): it treats a token as expired 5 minutes before its end
 *   (its default renewal offset), which with a short-lived token would mean a request per message; the
 *   token cache (token-cache.ts) renews at a share of the lifetime instead.
 * - the authority's metadata is given (`authorityMetadata`, `cloudDiscoveryMetadata`, `knownAuthorities`)
 *   rather than discovered, so msal sends no instance-discovery or openid-configuration request, and the
 *   token endpoint is `auth.tokenUrl` (sovereign clouds, tests) or the public cloud's. msal insists on an
 *   https authority: the authority is named after the endpoint's host and never contacted.
 */
import { ConfidentialClientApplication, LogLevel, type Configuration, type INetworkModule, type NetworkResponse } from '@azure/msal-node';
import type { OAuth2Auth } from '../../config/upstream-auth.js';
import type { ClientCertificate } from '../../config/upstream-auth.js';
import { issued, requestOver, type IssuedToken, type TokenEndpoint } from './token-endpoint.js';
import type { TokenHttp } from './token-http.js';

export class MicrosoftEndpoint implements TokenEndpoint {
  readonly url: string;
  #app: ConfidentialClientApplication;
  #http: TokenHttp;
  #scope: string;

  constructor(auth: OAuth2Auth, http: TokenHttp, certificate: ClientCertificate | null) {
    this.url = auth.tokenUrl;
    this.#http = http;
    this.#scope = auth.scope ?? '';
    this.#app = new ConfidentialClientApplication(msalConfiguration(auth, http, certificate));
  }

  async request(): Promise<IssuedToken> {
    const result = await requestOver(this.#http, this.url, () => this.#app.acquireTokenByClientCredential({ scopes: [this.#scope], skipCache: true }));
    return issued(this.url, result?.accessToken, result?.expiresOn ? result.expiresOn.getTime() : null);
  }
}

function msalConfiguration(auth: OAuth2Auth, http: TokenHttp, certificate: ClientCertificate | null): Configuration {
  const endpoint = new URL(auth.tokenUrl);
  const host = endpoint.host;
  const tenant = auth.tenantId ?? '';
  const authority = `https://${host}/${tenant}`;
  return {
    auth: {
      clientId: auth.clientId ?? '',
      authority,
      knownAuthorities: [host],
      authorityMetadata: JSON.stringify({
        token_endpoint: auth.tokenUrl,
        issuer: `${authority}/v2.0`,
        authorization_endpoint: `${authority}/oauth2/v2.0/authorize`,
        end_session_endpoint: `${authority}/oauth2/v2.0/logout`,
        jwks_uri: `https://${host}/${tenant}/discovery/v2.0/keys`,
      }),
      cloudDiscoveryMetadata: JSON.stringify({
        tenant_discovery_endpoint: `${authority}/v2.0/.well-known/openid-configuration`,
        'api-version': '1.1',
        metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
      }),
      ...(certificate
        ? { clientCertificate: { thumbprintSha256: certificate.thumbprintSha256, privateKey: certificate.privateKey } }
        : { clientSecret: auth.clientSecret ?? '' }),
    },
    system: {
      networkClient: networkClient(http),
      // msal's log is not ours to print: it may name the tenant and the client, and it is noise.
      loggerOptions: { loggerCallback: () => undefined, piiLoggingEnabled: false, logLevel: LogLevel.Error },
    },
  };
}

/** msal's transport interface over TokenHttp; msal parses the JSON and judges the status itself. */
function networkClient(http: TokenHttp): INetworkModule {
  const send = async <T>(url: string, method: 'GET' | 'POST', options?: { headers?: Record<string, string>; body?: string }): Promise<NetworkResponse<T>> => {
    const response = await http.fetch(url, { method, headers: options?.headers ?? {}, ...(method === 'POST' ? { body: options?.body ?? '' } : {}) });
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = {};
    }
    return { headers: Object.fromEntries(response.headers.entries()), body: body as T, status: response.status };
  };
  return {
    sendGetRequestAsync: (url, options) => send(url, 'GET', options),
    sendPostRequestAsync: (url, options) => send(url, 'POST', options),
  };
}
