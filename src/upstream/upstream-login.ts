/**
 * How a connection to an upstream logs in: with a password (AUTH PLAIN or LOGIN, chosen by nodemailer
 * from what the server offers), or with an OAuth2 access token (AUTH XOAUTH2) from the upstream's token
 * cache. One login per upstream entry, shared by its pool and its health probe (docs/oauth2.md).
 */
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { UpstreamConfig } from '../config/types.js';
import type { StopSignal } from './deadline.js';
import { TokenCache } from './oauth2/token-cache.js';
import { tokenEndpointFor } from './oauth2/token-endpoints.js';
import type { TokenFetch } from './oauth2/token-events.js';

export type UpstreamLogin =
  | { readonly kind: 'password'; readonly user: string; readonly pass: string }
  | { readonly kind: 'xoauth2'; readonly user: string; readonly tokens: TokenCache };

/**
 * The login `upstream.auth` asks for; null = no AUTH. Builds the token source of an OAuth2 login
 * (reading its credential files: throws CredentialFileError when one is gone since the check at load).
 */
export function upstreamLogin(upstream: UpstreamConfig, onTokenFetch: (fetch: TokenFetch) => void = () => undefined): UpstreamLogin | null {
  const auth = upstream.auth;
  if (auth === null) return null;
  if (auth.type === 'oauth2') {
    return { kind: 'xoauth2', user: auth.user, tokens: new TokenCache(tokenEndpointFor(auth), { upstream: upstream.name, onFetch: onTokenFetch }) };
  }
  return { kind: 'password', user: auth.user, pass: auth.pass };
}

/**
 * The initial client response of AUTH XOAUTH2: `user=<mailbox>^Aauth=Bearer <token>^A^A`, base64
 * (developers.google.com/workspace/gmail/imap/xoauth2-protocol; Microsoft's SMTP AUTH takes the same).
 */
export function xoauth2Response(user: string, token: string): string {
  return Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`, 'utf8').toString('base64');
}

/** What nodemailer hands a custom AUTH handler (its `customAuth` option). */
interface CustomAuthContext {
  sendCommand(command: string): Promise<{ status: number; response: string }>;
}

/**
 * The XOAUTH2 exchange as a nodemailer custom AUTH handler, so the refusal handling is ours: a refused
 * token (a 334 challenge, or a 535) is replaced once by a fresh one and the login tried again.
 *
 * After a 334, whose text is the error as base64 JSON, the client must send an empty line; the server
 * then ends the exchange with a 535 (RFC 7628 §3.2.3; Google's XOAUTH2 protocol page). Microsoft answers
 * a bad token with a 535 at once. nodemailer turns a rejection of the handler into an EAUTH error
 * carrying the last reply and the command `AUTH XOAUTH2` (never the token).
 */
export function xoauth2Handler(
  login: Extract<UpstreamLogin, { kind: 'xoauth2' }>,
  firstToken: () => string,
  signal: StopSignal,
): (ctx: CustomAuthContext) => Promise<void> {
  return async (ctx) => {
    let token = firstToken();
    for (let retried = false; ; retried = true) {
      let reply = await ctx.sendCommand(`AUTH XOAUTH2 ${xoauth2Response(login.user, token)}`);
      const challenged = reply.status === 334;
      if (challenged) reply = await ctx.sendCommand('');
      if (reply.status === 235) return;
      if (!retried && (challenged || reply.status === 535)) {
        // A failed token request here leaves the server's refusal as the answer: the next attempt meets
        // the identity provider's failure on its own.
        const fresh = await login.tokens.replace(token, signal).catch(() => null);
        if (fresh !== null) {
          token = fresh;
          continue;
        }
      }
      throw new Error('XOAUTH2 login refused');
    }
  };
}

/** Options for nodemailer's SMTPConnection that let `xoauth2Handler` run AUTH XOAUTH2. */
export function withXoauth2(options: SMTPConnection.Options, handler: (ctx: CustomAuthContext) => Promise<void>): SMTPConnection.Options {
  return { ...options, customAuth: { XOAUTH2: handler as unknown as NonNullable<SMTPConnection.Options['customAuth']>[string] } };
}
