/**
 * `state`: where the state that must be shared by the instances of a fleet lives (docs/config.md,
 * "Keys": `state.*`; docs/fleet.md). Only accepted here: with `state.redis` set, `workers` may run
 * more than one process without `allowLocalLimits`, since the limits that would otherwise be counted
 * once per process are counted in one place.
 */
import { z } from 'zod';
import type { Loaded } from '../loaded.js';

/** `redis://` or `rediss://` (TLS); user info may carry a password (a secret: config/secrets.ts). */
const redisUrl = z.string().refine((text) => {
  try {
    return ['redis:', 'rediss:'].includes(new URL(text).protocol);
  } catch {
    return false;
  }
}, 'not a redis:// or rediss:// URL');

export const stateSection = z
  .strictObject({
    /** null (the default): every instance keeps its limits, breakers and lockouts in its own memory. */
    redis: redisUrl.nullable().default(null),
  })
  .prefault({});

export type StateConfig = Loaded<typeof stateSection>;
