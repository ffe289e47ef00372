/**
 * The spool's built-in alerts (docs/observability.md, "The spool's alerts"), judged on the alert
 * engine's timer from the spool's own figures: no record or event needed, so a queue that silently
 * stops moving still pages.
 *
 * - `spool-oldest`: the oldest message waiting for delivery (queued or delivering; held ones are the
 *   operator's) is older than `alerts.spool.oldest`.
 * - `spool-growing`: at least `alerts.spool.growingMin` messages wait, more than `alerts.spool.growing`
 *   ago, and the queue never got back down to that level in between.
 * - `spool-disk-low`: the spool's filesystem has less than twice `spool.minFreeSpace` free (below it,
 *   new messages are already refused with 452).
 *
 * The queue manager adds `spool-parked` (an upstream's queue parked); the names share the `spool-`
 * prefix.
 */
import { formatDuration } from './notification.js';

export const SPOOL_ALERT_RULES = ['spool-oldest', 'spool-growing', 'spool-disk-low'] as const;
export type SpoolAlertRule = (typeof SPOOL_ALERT_RULES)[number];

/** What the rules read from the spool, at each check. */
export interface SpoolAlertSource {
  counts(): { readonly queued: number; readonly delivering: number; readonly held: number; readonly oldestWaitingAt: number | null };
  /** Free bytes on the spool's filesystem, or null when it cannot tell. */
  freeBytes(): number | null;
  /** spool.minFreeSpace (0: no check, and no disk alert). */
  readonly minFreeSpace: number;
}

/** `alerts.spool`. */
export interface SpoolAlertSettings {
  /** Age (ms) of the oldest waiting message that pages. */
  readonly oldest: number;
  /** How long (ms) the queue must have grown without getting back down. */
  readonly growing: number;
  /** Fewest waiting messages for `spool-growing`: a handful coming and going is no backlog. */
  readonly growingMin: number;
}

/** One rule's verdict at a check: open (with what to say) or closed (with why). */
export type SpoolVerdict =
  | { readonly rule: SpoolAlertRule; readonly open: true; readonly summary: string }
  | { readonly rule: SpoolAlertRule; readonly open: false; readonly reason: string };

/** Samples of the waiting count kept beyond the `growing` window (one per check, every few seconds). */
const MAX_SAMPLES = 10_000;

export class SpoolWatch {
  readonly #source: SpoolAlertSource;
  readonly #settings: SpoolAlertSettings;
  /** (time, messages waiting), oldest first, covering a little more than the `growing` window. */
  #samples: { readonly at: number; readonly waiting: number }[] = [];

  constructor(source: SpoolAlertSource, settings: SpoolAlertSettings) {
    this.#source = source;
    this.#settings = settings;
  }

  check(now: number): SpoolVerdict[] {
    const c = this.#source.counts();
    const waiting = c.queued + c.delivering;
    return [this.#oldest(c.oldestWaitingAt, now), this.#growing(waiting, now), this.#disk()];
  }

  #oldest(oldestAt: number | null, now: number): SpoolVerdict {
    const limit = this.#settings.oldest;
    const age = oldestAt === null ? 0 : now - oldestAt;
    if (age > limit) {
      return {
        rule: 'spool-oldest',
        open: true,
        summary: `the oldest message in the spool has waited ${formatDuration(age)} for delivery (threshold ${formatDuration(limit)}): mailtrail queue list shows why`,
      };
    }
    return {
      rule: 'spool-oldest',
      open: false,
      reason: oldestAt === null ? 'no message waits in the spool' : `the oldest waiting message is ${formatDuration(age)} old`,
    };
  }

  #growing(waiting: number, now: number): SpoolVerdict {
    const window = this.#settings.growing;
    this.#samples.push({ at: now, waiting });
    // Keep the newest sample at or before the window's start: it is the level the queue is compared with.
    while (this.#samples.length > 1 && this.#samples[1]!.at <= now - window) this.#samples.shift();
    if (this.#samples.length > MAX_SAMPLES) this.#samples.splice(0, this.#samples.length - MAX_SAMPLES);
    const start = this.#samples[0]!;
    const watched = now - start.at >= window;
    const neverBack = this.#samples.slice(1).every((s) => s.waiting > start.waiting);
    if (watched && neverBack && waiting >= this.#settings.growingMin) {
      return {
        rule: 'spool-growing',
        open: true,
        summary: `the spool grew from ${start.waiting} to ${waiting} waiting messages over ${formatDuration(now - start.at)} without getting back down: deliveries do not keep up (an upstream parked or failing?)`,
      };
    }
    return { rule: 'spool-growing', open: false, reason: `${waiting} messages wait in the spool` };
  }

  #disk(): SpoolVerdict {
    const reserve = this.#source.minFreeSpace;
    const free = reserve > 0 ? this.#source.freeBytes() : null;
    if (free !== null && free < 2 * reserve) {
      const refusing = free < reserve;
      return {
        rule: 'spool-disk-low',
        open: true,
        summary: refusing
          ? `the spool's filesystem has ${mib(free)} free, below spool.minFreeSpace (${mib(reserve)}): new messages for the spool are refused with 452 4.3.1`
          : `the spool's filesystem has ${mib(free)} free, less than twice spool.minFreeSpace (${mib(reserve)}): at ${mib(reserve)} new messages for the spool are refused`,
      };
    }
    return {
      rule: 'spool-disk-low',
      open: false,
      reason: free === null ? "the spool's free space is not checked" : `the spool's filesystem has ${mib(free)} free`,
    };
  }
}

function mib(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MiB`;
}
