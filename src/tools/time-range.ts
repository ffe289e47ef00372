/**
 * `--since` / `--until`: a duration back from now (`90s`, `30m`, `1h`, `2d`, `1w`) or a time
 * (`2026-11-25`, `2026-11-25T10:00`, `2026-11-25 10:00:00`, with or without `Z` or an offset; without
 * one it is UTC, like the trail). Bounds become ISO strings in the trail's own format, so a record's
 * `time` is compared as text, with no date parsing per record.
 */
import { UsageError } from './tool-io.js';

export interface TimeRange {
  /** Inclusive lower bound, `YYYY-MM-DDTHH:MM:SS.sssZ`, or null. */
  readonly since: string | null;
  /** Exclusive upper bound, or null. */
  readonly until: string | null;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/;
const HAS_ZONE = /(?:Z|[+-]\d{2}:?\d{2})$/i;

export function timeRange(since: string | undefined, until: string | undefined, now: number): TimeRange {
  const range = { since: since === undefined ? null : bound(since, now, '--since'), until: until === undefined ? null : bound(until, now, '--until') };
  if (range.since && range.until && range.since >= range.until) throw new UsageError(`--since ${since} is not before --until ${until}`);
  return range;
}

/** True when an ISO time string falls in the range (records without a time never do when bounded). */
export function inRange(time: unknown, range: TimeRange): boolean {
  if (range.since === null && range.until === null) return true;
  if (typeof time !== 'string') return false;
  if (range.since !== null && time < range.since) return false;
  if (range.until !== null && time >= range.until) return false;
  return true;
}

function bound(text: string, now: number, flag: string): string {
  const iso = parseTimeBound(text, now);
  if (iso === null) throw new UsageError(`${flag} wants a duration (30m, 1h, 2d) or a UTC time (2026-11-25T10:00), not "${text}"`);
  return iso;
}

/**
 * A duration back from `now` (`30m`, `1h`, `2d`) or a time (UTC when it has no zone) as an ISO
 * string in the trail's format; null when it is neither.
 */
export function parseTimeBound(text: string, now: number): string | null {
  const t = text.trim();
  const d = DURATION.exec(t);
  if (d) return new Date(now - Number(d[1]) * UNIT_MS[d[2]!]!).toISOString();
  const iso = t.replace(' ', 'T');
  const ms = Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(iso) || HAS_ZONE.test(iso) ? iso : `${iso}Z`);
  if (!/^\d{4}-\d{2}-\d{2}/.test(iso) || Number.isNaN(ms)) return null;
  return new Date(ms).toISOString();
}
