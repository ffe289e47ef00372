/**
 * `listen`: where mailtrail accepts SMTP (docs/config.md, "Keys": `listen`, `listen[].*`).
 */
import { z } from 'zod';
import { ALWAYS, bindHost, deliveryMode, flag, isRecord, port } from '../fields.js';
import type { Loaded } from '../loaded.js';

const listener = z.strictObject({
  host: bindHost(),
  port: port(),
  /** TLS from the first byte (port 465 style); otherwise STARTTLS is offered. */
  implicitTls: flag(false),
  /** How this listener's messages are delivered (docs/spool.md); a user's own `mode` overrides it. */
  mode: deliveryMode().default('passthrough'),
});

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
