/**
 * `timeouts`: client-side and whole-relay time limits (docs/config.md, "Keys": `timeouts.*`, and
 * "Slow clients"). The limits of one attempt on an upstream are `upstreams[].timeouts` (upstreams.ts).
 */
import { z } from 'zod';
import { duration, isRecord, optionalDuration, quantity } from '../fields.js';
import type { Loaded } from '../loaded.js';
import { parseSize } from '../units.js';

/** Without `command`, a client idle for all of `clientIdle` still has this long to send its line. */
const COMMAND_AFTER_IDLE_MS = 60_000;

export const timeoutsSection = z
  .strictObject({
    /** Idle time allowed to a client between commands. */
    clientIdle: duration(60_000),
    /**
     * From the moment the server waits for a command until its line is complete
     * (listener/client-deadlines.ts). null: clientIdle + COMMAND_AFTER_IDLE_MS (toTimeouts), so
     * raising clientIdle alone stays consistent.
     */
    command: optionalDuration(),
    /** Whole client session; a transaction in flight finishes first. */
    session: duration(10 * 60_000),
    /** Least average rate of message data, bytes per second (with `command` as slack), written as a size ("500", "1KB"). */
    dataMinRate: quantity(parseSize, 'not a size per second (e.g. 500 or 1KB)', 1, Number.MAX_SAFE_INTEGER).default(500),
    /** Overall deadline for one relay attempt chain (connect + envelope + body + final reply). */
    relay: duration(120_000),
    /**
     * From accept until a PROXY protocol header is complete, on `listen[].proxyProtocol` listeners;
     * a proxy sends it at once (as Postfix's postscreen_upstream_proxy_timeout, 5s).
     */
    proxyHeader: duration(5_000),
    /** Grace given to in-flight transactions at shutdown. */
    shutdown: duration(30_000, 0),
  })
  .superRefine((value: unknown, ctx) => {
    // A command deadline under the idle timeout would cut clients that are merely idle, before their idle timeout.
    if (!isRecord(value) || typeof value.command !== 'number' || typeof value.clientIdle !== 'number') return;
    if (value.command < value.clientIdle) ctx.addIssue({ code: 'custom', message: 'must be at least clientIdle', path: ['command'] });
  })
  .prefault({});

export type ServerTimeoutsConfig = Omit<Loaded<typeof timeoutsSection>, 'command'> & {
  /** Always set once loaded (the default is derived from clientIdle). */
  readonly command: number;
};

export function toTimeouts(timeouts: z.output<typeof timeoutsSection>): ServerTimeoutsConfig {
  return { ...timeouts, command: timeouts.command ?? timeouts.clientIdle + COMMAND_AFTER_IDLE_MS };
}
