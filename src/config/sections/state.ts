/**
 * `state`: where the state that the instances of a fleet share lives: Redis or Valkey (docs/config.md,
 * "Keys": `state.*`; docs/fleet.md, "Shared state (Redis)"). Without `state.redis` every limit and
 * every piece of state stays in the process, as for a single instance; with it, `workers` may run more
 * than one process without `allowLocalLimits`, since the limits that would otherwise be counted once
 * per process are counted in one place.
 */
import { z } from 'zod';
import { count, duration } from '../fields.js';
import type { Loaded } from '../loaded.js';

/**
 * `redis://[user:pass@]host[:port][/db]` or `rediss://` (TLS); the database a number. User info may
 * carry a password (a secret: config/secrets.ts).
 */
const redisUrl = z.string().superRefine((text, ctx) => {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'not a URL (e.g. redis://127.0.0.1:6379/0)' });
    return;
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    ctx.addIssue({ code: 'custom', message: 'must start with redis:// or rediss://' });
  } else if (url.hostname === '') {
    ctx.addIssue({ code: 'custom', message: 'has no host' });
  } else if (!/^(\/\d{0,5})?$/.test(url.pathname) || url.search !== '' || url.hash !== '') {
    ctx.addIssue({ code: 'custom', message: 'may name a database number (/0) and nothing else after the host' });
  }
});

export const stateSection = z
  .strictObject({
    /** The Redis (or Valkey) server every instance of the fleet shares; null (the default) = nothing shared. */
    redis: redisUrl.nullable().default(null),
    /** Put before every key and channel name, so several fleets (or other programs) can share one server. */
    prefix: z
      .string()
      .regex(/^[\w.:-]{1,64}$/, 'must be 1 to 64 letters, digits, ".", ":", "-" or "_"')
      .default('mailtrail:'),
    /**
     * Processes in the fleet, every worker counted: while Redis is unreachable each one keeps 1/N of
     * every fleet-wide limit.
     */
    expectedInstances: count(1),
    /** Longest wait for one Redis command before the instance falls back to its local share. */
    timeout: duration(250),
    /** How long a connection lease (`upstreams[].pool.shared`) outlives an instance that stopped renewing it. */
    leaseTtl: duration(30_000, 3_000),
  })
  .prefault({});

export type StateConfig = Loaded<typeof stateSection>;

/** `state` with a Redis to share through: what the shared-state parts (src/state/) are given. */
export type SharedStateConfig = StateConfig & { readonly redis: string };

/** True when `state.redis` is set: the fleet's limits and state are shared through it. */
export function isShared(state: StateConfig): state is SharedStateConfig {
  return state.redis !== null;
}
