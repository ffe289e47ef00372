/**
 * `clients`: who may relay, by network or SMTP AUTH, and the ingress limits per user and address
 * (docs/config.md, "Keys": `clients.*`).
 */
import { z } from 'zod';
import { isPasswordHash } from '../../auth/password.js';
import { ALWAYS, cidr, count, deliveryMode, duration, flag, fromBooleanString, isRecord, optionalCount, sender, unique } from '../fields.js';
import type { Loaded } from '../loaded.js';

const user = z
  .strictObject({
    username: z.string().min(1),
    /** Exactly one of password / passwordHash is set. */
    password: z.string().min(1).nullable().optional(),
    /** scrypt hash in the form `scrypt$N$r$p$saltBase64$hashBase64`. */
    passwordHash: z.string().refine(isPasswordHash, 'not a scrypt hash in the form scrypt$N$r$p$salt$hash').nullable().optional(),
    /** Allowed MAIL FROM: "@domain" or a full address; empty = any sender. */
    allowedSenders: z.array(sender()).default([]),
    /** How this user's messages are delivered, over the listener's `mode`; null = the listener's. */
    mode: deliveryMode().nullable().default(null),
  })
  .superRefine((value: unknown, ctx) => {
    const given = isRecord(value) ? [value.password, value.passwordHash].filter((v) => v != null) : [];
    if (given.length !== 1) ctx.addIssue({ code: 'custom', message: 'needs exactly one of password or passwordHash' });
  }, ALWAYS);

/** One set of ingress limits; each null (the default) = no limit of that kind. */
const clientRateLimit = z
  .strictObject({ messagesPerMinute: optionalCount(), messagesPerHour: optionalCount(), recipientsPerHour: optionalCount() })
  .prefault({});

/** Failed AUTHs per address and per username before a lockout, and how long it lasts; null = off (docs/config.md, "Password guessing"). */
const authLockout = z
  .strictObject({
    /** Failed AUTHs within `window` that start a lockout. */
    failures: count(10),
    /** How long failures are counted, from the first one (ms). */
    window: duration(10 * 60_000),
    /** The first lockout (ms); each repeat doubles it. */
    lockout: duration(5 * 60_000),
    /** The longest lockout (ms). */
    maxLockout: duration(60 * 60_000),
    /** Most addresses and usernames tracked at once, for each kind of state (LRU). */
    maxTracked: count(10_000),
  })
  .superRefine((value: unknown, ctx) => {
    if (!isRecord(value) || typeof value.lockout !== 'number' || typeof value.maxLockout !== 'number') return;
    if (value.maxLockout < value.lockout) ctx.addIssue({ code: 'custom', message: 'must be at least lockout', path: ['maxLockout'] });
  })
  .nullable()
  .prefault({});

export const clientsSection = z
  .strictObject({
    /** CIDRs allowed to relay without AUTH, e.g. "127.0.0.0/8", "::1/128". */
    networks: z.array(cidr).default([]),
    users: z.array(user).default([]).superRefine(unique('username', 'duplicate username'), ALWAYS),
    /**
     * AUTH and MAIL only after STARTTLS. `true`/`false` as configured; when not configured the default is
     * true except for loopback clients (see README).
     */
    requireTls: z.preprocess(fromBooleanString, z.literal([true, false, 'except-loopback'])).default('except-loopback'),
    /** Allow AUTH over plaintext (never the default). */
    allowInsecureAuth: flag(false),
    /** Ingress limits per AUTH user and per client address; over them, 451 4.7.1. */
    rateLimits: z
      .strictObject({
        perUser: clientRateLimit,
        perIp: clientRateLimit,
        /** Most users/addresses tracked at once (LRU); a forgotten one starts again with a full allowance. */
        maxTracked: count(10_000),
      })
      .prefault({}),
    /** Lockout after repeated failed AUTHs per address and per username; null = none. */
    authLockout,
  })
  .prefault({});

export type ClientsConfig = Loaded<typeof clientsSection>;
export type UserConfig = ClientsConfig['users'][number];
export type ClientRateLimitsConfig = ClientsConfig['rateLimits'];
/** The AUTH lockout's settings (when on). */
export type AuthLockoutConfig = NonNullable<ClientsConfig['authLockout']>;
/** One set of client limits; null = no limit of that kind. */
export type ClientRateLimit = ClientRateLimitsConfig['perUser'];

/** Users with both password keys present (null when not given). */
export function toClients(clients: z.output<typeof clientsSection>): ClientsConfig {
  return {
    ...clients,
    users: clients.users.map((u) => ({
      username: u.username,
      password: u.password ?? null,
      passwordHash: u.passwordHash ?? null,
      allowedSenders: u.allowedSenders,
      mode: u.mode,
    })),
  };
}
