/**
 * `timeouts`: client-side and whole-relay time limits (docs/config.md, "Keys": `timeouts.*`). The
 * limits of one attempt on an upstream are `upstreams[].timeouts` (upstreams.ts).
 */
import { z } from 'zod';
import { duration } from '../fields.js';
import type { Loaded } from '../loaded.js';

export const timeoutsSection = z
  .strictObject({
    /** Idle time allowed to a client between commands. */
    clientIdle: duration(60_000),
    /** Overall deadline for one relay attempt chain (connect + envelope + body + final reply). */
    relay: duration(120_000),
    /** Grace given to in-flight transactions at shutdown. */
    shutdown: duration(30_000, 0),
  })
  .prefault({});

export type ServerTimeoutsConfig = Loaded<typeof timeoutsSection>;
