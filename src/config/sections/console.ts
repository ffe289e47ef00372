/**
 * `console`: the web console served by the HTTP endpoint, its users and sessions (docs/config.md,
 * "Keys": `console.*`; docs/console.md). Checked against `http` by `consoleConsistency`, applied to
 * the whole file.
 */
import { z } from 'zod';
import { isPasswordHash } from '../../auth/password.js';
import { ALWAYS, duration, flag, isLoopbackHost, isRecord, unique } from '../fields.js';
import type { Loaded } from '../loaded.js';

const consoleUser = z
  .strictObject({
    username: z.string().min(1).max(200),
    /** Exactly one of password / passwordHash is set (as `clients.users`). */
    password: z.string().min(1).nullable().optional(),
    passwordHash: z.string().refine(isPasswordHash, 'not a scrypt hash in the form scrypt$N$r$p$salt$hash').nullable().optional(),
    /** Limits the user to the mail of these SMTP users (`client.user` of the records); null = all mail. */
    scope: z
      .strictObject({ users: z.array(z.string().min(1)).min(1) })
      .nullable()
      .default(null),
  })
  .superRefine((value: unknown, ctx) => {
    const given = isRecord(value) ? [value.password, value.passwordHash].filter((v) => v != null) : [];
    if (given.length !== 1) ctx.addIssue({ code: 'custom', message: 'needs exactly one of password or passwordHash' });
  }, ALWAYS);

export const consoleSection = z
  .strictObject({
    /** Serve the console at `/` and the JSON API at `/api/v1/` (needs `http`). */
    enabled: flag(false),
    /** Console accounts; none = the HTTP token logs in (or, on loopback without a token, no login). */
    users: z.array(consoleUser).default([]).superRefine(unique('username', 'duplicate username'), ALWAYS),
    /** A session unused this long is ended (ms). */
    sessionIdle: duration(30 * 60_000, 60_000),
    /** Mark the session cookie Secure on plain HTTP too (behind a proxy that terminates TLS). */
    secureCookies: flag(false),
  })
  .prefault({});

export type ConsoleConfig = Loaded<typeof consoleSection>;
export type ConsoleUserConfig = ConsoleConfig['users'][number];

/** Users with both password keys present (null when not given). */
export function toConsole(c: z.output<typeof consoleSection>): ConsoleConfig {
  return {
    ...c,
    users: c.users.map((u) => ({ username: u.username, password: u.password ?? null, passwordHash: u.passwordHash ?? null, scope: u.scope })),
  };
}

/**
 * The console needs the HTTP endpoint, and a login wherever the endpoint is reachable beyond loopback:
 * console users or `http.token` (docs/console.md, "Who may log in"). `value` is the whole file.
 */
export function consoleConsistency(value: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(value) || !isRecord(value.console) || (value.console.enabled !== true && value.console.enabled !== 'true')) return;
  const http = isRecord(value.http) ? value.http : null;
  if (http === null) {
    ctx.addIssue({ code: 'custom', message: 'the console is served by the HTTP endpoint: configure http', path: ['console', 'enabled'] });
    return;
  }
  const users = Array.isArray(value.console.users) ? value.console.users : [];
  const host = typeof http.host === 'string' ? http.host : '127.0.0.1';
  if (users.length === 0 && http.token == null && !isLoopbackHost(host)) {
    ctx.addIssue({
      code: 'custom',
      message: 'the HTTP endpoint is reachable beyond loopback: give console.users or http.token, so that the console asks for a login',
      path: ['console', 'enabled'],
    });
  }
  const smtpUsers = new Set(
    (isRecord(value.clients) && Array.isArray(value.clients.users) ? value.clients.users : []).map((u) => (isRecord(u) ? u.username : undefined)),
  );
  users.forEach((u: unknown, i) => {
    const scoped = isRecord(u) && isRecord(u.scope) && Array.isArray(u.scope.users) ? u.scope.users : [];
    scoped.forEach((name: unknown, j) => {
      if (typeof name === 'string' && !smtpUsers.has(name)) {
        ctx.addIssue({ code: 'custom', message: 'names no user of clients.users', path: ['console', 'users', i, 'scope', 'users', j] });
      }
    });
  });
}
