/**
 * An SMTP server mailtrail connects to, as the config file names it: the `smtp[s]://` URL and the TLS
 * settings that `upstreams[]` and alert mail (`alerts.sinks[].email`) share (docs/config.md, "Keys":
 * `upstreams[].url`, `upstreams[].tls.*`).
 */
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';
import { flag, HOST_NAME, path } from './fields.js';
import type { Loaded } from './loaded.js';

export interface SmtpUrl {
  readonly implicitTls: boolean;
  readonly host: string;
  readonly port: number;
  /** Percent-decoded userinfo, or null when the URL has none. */
  readonly credentials: { readonly user: string; readonly pass: string } | null;
}

/**
 * Splits `smtp[s]://user:pass@host:port`. Returns a value-free problem text on failure: the URL may
 * carry credentials, so it is never quoted.
 */
export function parseSmtpUrl(text: string): SmtpUrl | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // WHATWG URL refuses a port over 65535 outright; say so rather than "not a URL".
    const port = /^smtps?:\/\/(?:[^@/?#]*@)?(?:\[[^\]]*\]|[^:/?#]*):(\d+)(?:[/?#]|$)/i.exec(text)?.[1];
    if (port !== undefined && Number(port) > 65535) return 'port must be between 1 and 65535';
    return 'not an smtp:// or smtps:// URL';
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') return 'not an smtp:// or smtps:// URL';
  if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
    return 'must not have a path, query or fragment';
  }
  // Non-special schemes keep IPv6 brackets and case in `hostname`.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (isIP(host) === 0 && !HOST_NAME.test(host)) return 'has no valid host';
  const implicitTls = url.protocol === 'smtps:';
  const port = url.port === '' ? (implicitTls ? 465 : 587) : Number(url.port);
  if (port === 0) return 'port must be between 1 and 65535';
  const credentials = urlCredentials(url);
  if (typeof credentials === 'string') return credentials;
  return { implicitTls, host, port, credentials };
}

function urlCredentials(url: URL): SmtpUrl['credentials'] | string {
  if (url.username === '' && url.password === '') return null;
  if (url.username === '' || url.password === '') return 'credentials need both a user and a password';
  try {
    return { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) };
  } catch {
    return 'credentials are not valid percent-encoding';
  }
}

export const smtpUrl = z.string().transform((text, ctx) => {
  const parsed = parseSmtpUrl(text);
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
  return typeof parsed === 'string' ? z.NEVER : parsed;
});

const tlsMode = z.enum(['required', 'opportunistic', 'none']);

/** `tls` towards the server; `upstreams[].tls` adds `servername` to these keys. */
export const smtpTlsShape = {
  /** For smtp:// URLs; with smtps:// TLS is not negotiable (loaded as `required`). */
  mode: tlsMode.optional(),
  /** PEM file with the CA(s) to trust instead of the system store, or null. */
  ca: path().nullable().optional(),
  verify: flag(true),
};

export type UpstreamTlsMode = z.output<typeof tlsMode>;

/** TLS towards the server, as loaded: the mode settled by the URL, the CA path resolved. */
export type SmtpTlsConfig = Loaded<z.ZodObject<typeof smtpTlsShape>, { mode: UpstreamTlsMode }>;

/** `tls` as loaded; relative `ca` paths resolve against `baseDir`. */
export function toSmtpTls(url: SmtpUrl, tls: z.output<z.ZodObject<typeof smtpTlsShape>>, baseDir: string): SmtpTlsConfig {
  return {
    // With smtps:// TLS is not negotiable, so the mode is moot; `required` describes what happens.
    mode: url.implicitTls ? 'required' : (tls.mode ?? 'required'),
    ca: tls.ca == null ? null : resolve(baseDir, tls.ca),
    verify: tls.verify,
  };
}
