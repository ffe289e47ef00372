/**
 * `http`: the HTTP endpoint for metrics, health and the recent-transaction API (docs/config.md,
 * "Keys": `http.*`; docs/observability.md).
 */
import { z } from 'zod';
import { bindHost, port } from '../fields.js';
import type { Loaded } from '../loaded.js';

const endpoint = z.strictObject({
  host: bindHost(),
  port: port(),
  /** Bearer token required on every path except /healthz; null = no token. */
  token: z.string().min(16).nullable().optional(),
});

/** null (the default) = off. */
export const httpSection = endpoint.nullable().optional();

export type HttpConfig = Loaded<
  typeof endpoint,
  {
    /**
     * True only in the embedded default: a port already in use is logged and the endpoint stays off,
     * instead of stopping start-up (a zero-config start must not fail over an optional extra).
     */
    bestEffort: boolean;
  }
>;

/** Off = null; an endpoint from the file is never best effort. */
export function toHttp(h: z.output<typeof httpSection>): HttpConfig | null {
  return h == null ? null : { host: h.host, port: h.port, token: h.token ?? null, bestEffort: false };
}
