/**
 * `listen`: where mailtrail accepts SMTP (docs/config.md, "Keys": `listen`, `listen[].*`).
 */
import { z } from 'zod';
import { ALWAYS, bindHost, cidr, deliveryMode, flag, isRecord, port } from '../fields.js';
import type { Loaded } from '../loaded.js';

const listener = z
  .strictObject({
    host: bindHost(),
    port: port(),
    /** TLS from the first byte (port 465 style); otherwise STARTTLS is offered. */
    implicitTls: flag(false),
    /** How this listener's messages are delivered (docs/spool.md); a user's own `mode` overrides it. */
    mode: deliveryMode().default('passthrough'),
    /**
     * Every connection starts with a PROXY protocol header (v1 or v2) naming the real client, and comes
     * from one of `trustedProxies`; anything else is refused (listener/proxy-gate.ts, docs/fleet.md).
     */
    proxyProtocol: flag(false),
    /** The load balancers' addresses (CIDRs); required with `proxyProtocol`, meaningless without. */
    trustedProxies: z.array(cidr).default([]),
  })
  .superRefine((value: unknown, ctx) => {
    if (!isRecord(value)) return;
    const proxies = Array.isArray(value.trustedProxies) ? value.trustedProxies.length : 0;
    if (value.proxyProtocol === true && proxies === 0) {
      ctx.addIssue({
        code: 'custom',
        message: 'is required with proxyProtocol: true (the load balancers allowed to name the client)',
        path: ['trustedProxies'],
      });
    }
    if (value.proxyProtocol !== true && proxies > 0)
      ctx.addIssue({ code: 'custom', message: 'only applies with proxyProtocol: true', path: ['trustedProxies'] });
  }, ALWAYS);

/** Port 0 (ephemeral) may repeat; anything else on the same host and port would fail to bind. */
function distinctListeners(items: readonly unknown[], ctx: z.RefinementCtx): void {
  if (!Array.isArray(items)) return;
  const seen = new Set<string>();
  items.forEach((item, i) => {
    if (!isRecord(item) || item.port === 0) return;
    const key = `${typeof item.host === 'string' ? item.host : '127.0.0.1'}:${String(item.port)}`;
    if (seen.has(key)) ctx.addIssue({ code: 'custom', message: 'same host and port as an earlier listener', path: [i] });
    seen.add(key);
  });
}

export const listenSection = z.array(listener).min(1).superRefine(distinctListeners, ALWAYS);

export type ListenerConfig = Loaded<typeof listener>;
