/**
 * The token source for an OAuth2 `auth` (config/upstream-auth.ts): which library makes the request,
 * over a transport that trusts `auth.ca` and stops after `auth.timeout`. Reads the credential files
 * (the service account key, the certificate): throws CredentialFileError when one went missing since
 * the configuration was checked.
 */
import { readClientCertificate, readServiceAccountKey, readTokenCa, type OAuth2Auth } from '../../config/upstream-auth.js';
import { GenericEndpoint } from './generic-endpoint.js';
import { GoogleEndpoint, googleRedirect } from './google-endpoint.js';
import { MicrosoftEndpoint } from './microsoft-endpoint.js';
import type { TokenEndpoint } from './token-endpoint.js';
import { TokenHttp } from './token-http.js';

export function tokenEndpointFor(auth: OAuth2Auth): TokenEndpoint {
  const ca = auth.ca === null ? null : readTokenCa(auth.ca);
  switch (auth.provider) {
    case 'microsoft':
      return new MicrosoftEndpoint(
        auth,
        new TokenHttp({ ca, timeoutMs: auth.timeout }),
        auth.clientCertificate === null ? null : readClientCertificate(auth.clientCertificate),
      );
    case 'google':
      return new GoogleEndpoint(
        auth,
        new TokenHttp({ ca, timeoutMs: auth.timeout, redirect: googleRedirect(auth) }),
        readServiceAccountKey(auth.serviceAccountKeyFile ?? ''),
      );
    case 'generic':
      return new GenericEndpoint(auth, new TokenHttp({ ca, timeoutMs: auth.timeout }));
  }
}
