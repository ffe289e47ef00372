/**
 * `spool`: store-and-forward for the listeners and users in `spool` or `hybrid` mode: where the queue
 * lives, how long and how often a message is tried, and what is kept in reserve (docs/config.md,
 * "Keys": `spool.*`; docs/spool.md). With no listener or user in those modes the section is read and
 * checked but nothing of it runs: no folder, no lock, no cost.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { ALWAYS, count, duration, flag, httpUrl, isRecord, longDuration, MiB, path, size } from '../fields.js';
import type { Loaded } from '../loaded.js';

/** One receiver of per-message delivery events. */
const eventSink = z.strictObject({
  url: httpUrl(),
  /** HMAC-SHA256 key of the signature header, as for alert webhooks; null = unsigned. */
  secret: z.string().min(1).nullable().default(null),
});

export const spoolSection = z
  .strictObject({
    /** The queue's folder; default `<dataDir>/spool`. */
    dir: path().optional(),
    /** Hybrid mode: how long the client waits for the upstream's verdict before the message is spooled (ms). */
    hybridWait: duration(10_000),
    /** Per-message backoff between attempts: `first` doubled per attempt (with jitter), at most `max` (ms). */
    retry: z.strictObject({ first: duration(5 * 60_000), max: duration(60 * 60_000) }).prefault({}),
    /** Age at which a message expires (bounced), whatever its state (ms). */
    maxAge: longDuration(5 * 86_400_000),
    /** Below this much free space in the spool's filesystem new messages get 452 4.3.1 (bytes; 0 = no check). */
    minFreeSpace: size(256 * MiB, 0),
    /** RFC 3464 delivery status notification to the envelope sender on a permanent failure or expiry. */
    dsn: flag(true),
    /** What a delivery whose final dot got no reply becomes: held for the operator, or sent again. */
    unknownOutcome: z.enum(['hold', 'resend']).default('hold'),
    /** Deliveries from the spool at once. */
    concurrency: count(10),
    /** Per-message delivery webhooks. */
    events: z.array(eventSink).default([]),
  })
  .superRefine((value: unknown, ctx) => {
    const retry = isRecord(value) && isRecord(value.retry) ? value.retry : null;
    if (retry && typeof retry.first === 'number' && typeof retry.max === 'number' && retry.max < retry.first) {
      ctx.addIssue({ code: 'custom', message: 'must be at least retry.first', path: ['retry', 'max'] });
    }
  }, ALWAYS)
  .prefault({});

export type SpoolConfig = Loaded<
  typeof spoolSection,
  {
    /** The queue's folder, resolved (default `<dataDir>/spool`). */
    dir: string;
  }
>;
export type SpoolEventSinkConfig = SpoolConfig['events'][number];

/** The folder resolved: a relative one against `baseDir`, the default in `dataDir`. */
export function toSpool(s: z.output<typeof spoolSection>, baseDir: string, dataDir: string): SpoolConfig {
  return { ...s, dir: s.dir === undefined ? resolve(dataDir, 'spool') : resolve(baseDir, s.dir) };
}
