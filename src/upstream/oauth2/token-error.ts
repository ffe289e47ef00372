/**
 * A token request that failed, explained from the wire facts the transport kept (token-http.ts), the
 * same way whichever library made the request. Code ETOKEN (error-codes.ts); `originalCode` becomes the
 * attempt's `cause`, which the classifier's identity-provider rules read (classify/rules.ts):
 *
 * - no answer: the system code (`ECONNREFUSED`, `ENOTFOUND`, `ETIMEDOUT`, `CERT_HAS_EXPIRED`...);
 * - a refusal with an OAuth2 error (RFC 6749 §5.2): its `error` code, followed by the provider's own
 *   number where it gives one (Microsoft Entra ID's `error_codes`: `invalid_client AADSTS7000215`);
 * - a refusal without one: `http_<status>`;
 * - a 2xx the library could not use: `invalid_token_response`.
 *
 * The message names the identity provider (never "the upstream") and carries its own description;
 * never a secret: the request body (which holds the client secret, the refresh token or the signed
 * assertion) is not kept, and an answer is read for its error fields only.
 */
import { ERR } from '../../error-codes.js';
import type { TokenExchange } from './token-http.js';

export class TokenError extends Error {
  readonly code = ERR.TOKEN;
  /** The attempt's `cause` (see above). */
  readonly originalCode: string;
  readonly syscall: string | null;
  /** The HTTP status of a refusal; null when no answer came. */
  readonly status: number | null;

  constructor(message: string, originalCode: string, status: number | null, syscall: string | null = null) {
    super(message);
    this.name = 'TokenError';
    this.originalCode = originalCode;
    this.status = status;
    this.syscall = syscall;
  }
}

/** Microsoft appends per-request noise to every description; the trace ids are in its sign-in logs. */
const DESCRIPTION_NOISE = /\s*(?:Trace ID|Correlation ID|Timestamp):.*$/s;
const MAX_DESCRIPTION = 300;

/**
 * The failure of one token request: from what the transport saw when it saw anything (`exchange`),
 * else from the library's own error (`thrown`: a request refused before it was sent).
 */
export function tokenError(endpoint: string, exchange: TokenExchange | null, thrown: unknown): TokenError {
  if (thrown instanceof TokenError) return thrown;
  const who = `identity provider ${hostOf(exchange?.url ?? endpoint)}`;
  if (exchange?.error) {
    const err = exchange.error;
    const code = err.code ?? 'ECONNECTION';
    return new TokenError(`${who} could not be reached for a token: ${oneLine(err.message)}`, code, null, err.syscall ?? null);
  }
  if (exchange?.status != null && (exchange.status < 200 || exchange.status > 299)) {
    const oauth = oauthError(exchange.body);
    if (oauth === null) return new TokenError(`${who} answered the token request with HTTP ${exchange.status}`, `http_${exchange.status}`, exchange.status);
    const cause = oauth.number === null ? oauth.error : `${oauth.error} ${oauth.number}`;
    const description = oauth.description ? `: ${oauth.description}` : '';
    return new TokenError(`${who} refused the token request (HTTP ${exchange.status} ${oauth.error})${description}`, cause, exchange.status);
  }
  const kind = thrown instanceof Error ? thrown.name : 'error';
  // msal-node sends nothing while the Retry-After of a provider's 429 or 5xx runs, and throws its
  // ServerError again: the provider cannot issue tokens right now.
  if (exchange === null && kind === 'ServerError') {
    return new TokenError(`${who} asked to wait before the next token request (Retry-After)`, 'temporarily_unavailable', null);
  }
  // Answered 2xx, and the library still failed: a response it cannot use (no access_token, not JSON).
  // The library's text is not quoted: it may echo the response, which holds a token.
  return new TokenError(`${who} sent a token response mailtrail cannot use (${kind})`, 'invalid_token_response', exchange?.status ?? null);
}

/** A token response without a usable access token or lifetime (checked by the token sources themselves). */
export function unusableResponse(endpoint: string, what: string): TokenError {
  return new TokenError(`identity provider ${hostOf(endpoint)} sent a token response mailtrail cannot use (${what})`, 'invalid_token_response', null);
}

interface OAuthErrorBody {
  readonly error: string;
  readonly description: string | null;
  /** `AADSTS7000215` from Microsoft's `error_codes: [7000215]`. */
  readonly number: string | null;
}

/** RFC 6749 §5.2 error response fields, when the body is one. */
function oauthError(body: string | null): OAuthErrorBody | null {
  if (body === null) return null;
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return null;
  }
  if (typeof json !== 'object' || json === null) return null;
  const fields = json as { error?: unknown; error_description?: unknown; error_codes?: unknown };
  if (typeof fields.error !== 'string' || !/^[\x20-\x7e]{1,64}$/.test(fields.error)) return null;
  const codes = Array.isArray(fields.error_codes) ? fields.error_codes.filter((c): c is number => Number.isInteger(c)) : [];
  const description = typeof fields.error_description === 'string' ? shorten(oneLine(fields.error_description.replace(DESCRIPTION_NOISE, ''))) : null;
  return { error: fields.error, description: description === '' ? null : description, number: codes.length > 0 ? `AADSTS${codes[0]}` : null };
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'at the configured token URL';
  }
}

function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
}

function shorten(text: string): string {
  return text.length <= MAX_DESCRIPTION ? text : `${text.slice(0, MAX_DESCRIPTION - 1)}…`;
}
