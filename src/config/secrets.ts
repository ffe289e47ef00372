/**
 * Which configuration keys hold secrets: the one list `describeConfig` and the operational log's
 * redaction go by. A key is named the same in the config file and in the loaded `Config`, so one list
 * of names covers both; a unit test walks every text field of the schema and fails on any it finds in
 * neither this list nor its own list of public fields, so a secret added later cannot go unnoticed.
 */

/** What a secret is replaced by. */
export const REDACTED = '[redacted]';

/**
 * A value under one of these keys is a secret wherever it appears (`clients.users[].password`, `http.token`,
 * an OAuth2 upstream's `clientSecret` and `refreshToken`...). `accessToken` and `privateKey` are in no
 * configuration (tokens are fetched, keys read from files) but are named here so the log redacts them too.
 */
export const SECRET_KEYS: ReadonlySet<string> = new Set([
  'password',
  'passwordHash',
  'pass',
  'token',
  'hmacKey',
  'secret',
  'clientSecret',
  'refreshToken',
  'accessToken',
  'privateKey',
]);

/** Mappings whose every value is a secret: webhook `headers` (`Authorization`, API keys). The names stay readable. */
export const SECRET_MAP_KEYS: ReadonlySet<string> = new Set(['headers']);

/**
 * URLs: their user info, path and query may carry credentials (`smtp://user:pass@host`,
 * `redis://:pass@host`, a chat webhook's token in its path). Only the scheme, host and port are shown.
 */
export const URL_KEYS: ReadonlySet<string> = new Set(['url', 'redis']);

/** A deep copy of `value` with every secret (by the key it is under) replaced by `[redacted]`; null stays null. */
export function withoutSecrets(value: unknown, key = ''): unknown {
  if (value === null || value === undefined) return value;
  if (SECRET_KEYS.has(key)) return REDACTED;
  if (URL_KEYS.has(key)) return typeof value === 'string' ? urlWithoutSecrets(value) : REDACTED;
  if (Array.isArray(value)) return value.map((item) => withoutSecrets(item));
  if (typeof value !== 'object') return value;
  const hideAll = SECRET_MAP_KEYS.has(key);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, hideAll ? REDACTED : withoutSecrets(v, k)]));
}

/** `https://hooks.example.com/[redacted]`: where it points, without what may open it. */
function urlWithoutSecrets(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return REDACTED;
  }
  const origin = `${url.protocol}//${url.host}`;
  const rest = url.username !== '' || url.password !== '' || !['', '/'].includes(url.pathname) || url.search !== '' || url.hash !== '';
  return rest ? `${origin}/${REDACTED}` : origin;
}

/**
 * pino redaction paths for the secret keys, at the top of a log line's object and one level down: a
 * second line of defence behind never logging secrets at all.
 */
export function secretLogPaths(): string[] {
  return [...SECRET_KEYS, ...SECRET_MAP_KEYS].flatMap((key) => [key, `*.${key}`]);
}
