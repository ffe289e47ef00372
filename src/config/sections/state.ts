/**
 * `state` and `instance`: state shared by the instances of a fleet through Redis or Valkey
 * (docs/config.md, "Keys": `state.*`, `instance.*`; docs/fleet.md, "Shared state (Redis)"). Without
 * `state` every limit and every piece of state stays in the process, as for a single instance.
 */
import { z } from 'zod';
import { count, duration } from '../fields.js';
import type { Loaded } from '../loaded.js';

/** `redis://[user:pass@]host[:port][/db]` or `rediss://` (TLS); the database a number. */
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

const state = z.strictObject({
  /** The Redis (or Valkey) server every instance of the fleet shares. */
  redis: redisUrl,
  /** Put before every key and channel name, so several fleets (or other programs) can share one server. */
  prefix: z
    .string()
    .regex(/^[\w.:-]{1,64}$/, 'must be 1 to 64 letters, digits, ".", ":", "-" or "_"')
    .default('mailtrail:'),
  /** Instances in the fleet: while Redis is unreachable each one keeps 1/N of every fleet-wide limit. */
  expectedInstances: count(1),
  /** Longest wait for one Redis command before the instance falls back to its local share. */
  timeout: duration(250),
  /** How long a connection lease (`upstreams[].pool.shared`) outlives an instance that stopped renewing it. */
  leaseTtl: duration(30_000, 3_000),
});

/** null (the default) = nothing shared. */
export const stateSection = state.nullable().optional();

export type StateConfig = Loaded<typeof state>;

export function toState(s: z.output<typeof stateSection>): StateConfig | null {
  return s ?? null;
}

/** This instance's name in the fleet: in shared state, leases, alerts and the log. */
export const instanceSection = z
  .strictObject({
    id: z
      .string()
      .regex(/^[\w.:@-]{1,128}$/, 'must be 1 to 128 letters, digits, ".", ":", "@", "-" or "_"')
      .optional(),
  })
  .prefault({});

export interface InstanceConfig {
  /** From the file, else `<hostname>:<port of the first listener>`. */
  readonly id: string;
}

export function toInstance(i: z.output<typeof instanceSection>, hostname: string, firstPort: number): InstanceConfig {
  return { id: i.id ?? `${hostname}:${firstPort}` };
}
