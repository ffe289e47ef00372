/**
 * Field builders shared by the sections of the config schema (sections/): the value formats of
 * docs/config.md ("Value formats": sizes, durations, numbers and booleans written as strings), names,
 * hosts and networks, and the checks of lists. Every message is value-free (config-error.ts says why).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDuration, parseSize } from './units.js';

export const MiB = 2 ** 20;
/** Node's timers overflow above 2^31-1 ms and then fire immediately: a huge timeout would become none. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Names of upstreams, routes, alert sinks and rules. */
const NAME = /^[a-z0-9][a-z0-9_-]*$/i;
/** RFC 1123 labels, plus "_" which container and cloud host names sometimes carry. */
export const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;
/** "@example.com" (any sender in the domain) or "alerts@example.org" (one address). */
const SENDER_PATTERN = /^[^\s@]*@[^\s@]+$/;

/** Cross-field checks must run even when a sibling field failed, or problems would surface one round at a time. */
export const ALWAYS = { when: () => true } as const;

/** Values interpolated from the environment are strings; accept "25" where a number is expected. */
export function fromNumericString(value: unknown): unknown {
  return typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
}

export function fromBooleanString(value: unknown): unknown {
  if (value === 'true') return true;
  if (value === 'false') return false;
  return value;
}

export function quantity(parse: (v: unknown) => number | null, message: string, min: number, max: number) {
  return z.unknown().transform((value, ctx) => {
    const n = parse(value);
    if (n === null) ctx.addIssue({ code: 'custom', message });
    else if (n < min) ctx.addIssue({ code: 'custom', message: `must be at least ${min}` });
    else if (n > max) ctx.addIssue({ code: 'custom', message: `must be at most ${max}` });
    else return n;
    return z.NEVER;
  });
}

/** Bytes: a number or a string such as `35MB` (MB = 2^20); at least `min` (1 unless 0 means "off"). */
export function size(fallback: number, min = 1) {
  return quantity(parseSize, 'not a size (e.g. 35MB)', min, Number.MAX_SAFE_INTEGER).default(fallback);
}

/** Milliseconds: a number or a string such as `500ms`, `10s`, `5m`, `1h`; no default. */
export function requiredDuration(min = 1) {
  return quantity(parseDuration, 'not a duration (e.g. 10s)', min, MAX_TIMER_MS);
}

/** A duration with a default. */
export function duration(fallback: number, min = 1) {
  return requiredDuration(min).default(fallback);
}

/**
 * A duration that is compared with clocks, never given to one timer (a message's age in the spool):
 * it may go past the largest timer delay.
 */
export function longDuration(fallback: number) {
  return quantity(parseDuration, 'not a duration (e.g. 5d)', 1, Number.MAX_SAFE_INTEGER).default(fallback);
}

/** A duration that may be left unset: null (the default) = not set. */
export function optionalDuration() {
  return requiredDuration().nullable().default(null);
}

export function count(fallback: number) {
  return z.preprocess(fromNumericString, z.int().min(1)).default(fallback);
}

/** A positive number, decimals allowed ("0.5" from the environment too); null = not set. */
export function rate(max: number) {
  return z.preprocess((v) => (typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v), z.number().positive().max(max).nullable()).default(null);
}

/** A share: 0 < r ≤ 1, from the environment too. */
export function ratio() {
  return z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), z.number().gt(0).max(1));
}

/** An optional whole-number limit: null = no limit. */
export function optionalCount() {
  return z.preprocess(fromNumericString, z.int().min(1).nullable()).default(null);
}

/**
 * How a listener or a user's messages reach the upstream (docs/spool.md): relayed while the client
 * waits (`passthrough`), accepted into the spool and delivered from there (`spool`), or relayed at once
 * and spooled when no verdict comes in time (`hybrid`).
 */
export const DELIVERY_MODES = ['passthrough', 'spool', 'hybrid'] as const;
export type DeliveryMode = (typeof DELIVERY_MODES)[number];

export function deliveryMode() {
  return z.enum(DELIVERY_MODES);
}

export function flag(fallback: boolean) {
  return z.preprocess(fromBooleanString, z.boolean()).default(fallback);
}

export function port() {
  return z.preprocess(fromNumericString, z.int().min(0).max(65535));
}

export function path() {
  return z.string().min(1);
}

/** An `http://` or `https://` address to POST to (webhooks). */
export function httpUrl() {
  return z.string().refine(isHttpUrl, 'not an http:// or https:// URL');
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

export function hostName() {
  return z.string().refine((s) => HOST_NAME.test(s), 'not a host name');
}

/** An address to bind: an IP address or a host name, loopback by default. */
export function bindHost() {
  return z
    .string()
    .refine((s) => isIP(s) !== 0 || HOST_NAME.test(s), 'not an IP address or host name')
    .default('127.0.0.1');
}

/** The name of an upstream, route, alert sink or rule: it appears in logs, metrics and the trail. */
export function entryName() {
  return z.string().regex(NAME, 'must be letters, digits, "-" or "_", starting with a letter or digit');
}

/** A MAIL FROM pattern: "@domain" or a full address. */
export function sender() {
  return z.string().regex(SENDER_PATTERN, 'must be "@domain" or a full address');
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Array refinement: flags every entry whose `key` repeats an earlier one (compared after `fold`). */
export function unique(key: string, message: string, fold: (s: string) => string = (s) => s) {
  return (items: readonly unknown[], ctx: z.RefinementCtx) => {
    // ALWAYS refinements also run when the list itself is missing or not a list.
    if (!Array.isArray(items)) return;
    const seen = new Set<string>();
    items.forEach((item, i) => {
      const value = isRecord(item) ? item[key] : undefined;
      if (typeof value !== 'string') return;
      if (seen.has(fold(value))) ctx.addIssue({ code: 'custom', message, path: [i, key] });
      seen.add(fold(value));
    });
  };
}

/** "10.0.0.0/8" as given; a bare IP becomes a single-address CIDR. Zone ids ("%eth0") are refused. */
export function normaliseCidr(text: string): string | null {
  const [ip = '', prefix, ...rest] = text.trim().split('/');
  const family = ip.includes('%') ? 0 : isIP(ip);
  if (family === 0 || rest.length > 0) return null;
  const bits = family === 4 ? 32 : 128;
  if (prefix === undefined) return `${ip.toLowerCase()}/${bits}`;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > bits) return null;
  return `${ip.toLowerCase()}/${Number(prefix)}`;
}

export const cidr = z.string().transform((text, ctx) => {
  const normalised = normaliseCidr(text);
  if (normalised === null) ctx.addIssue({ code: 'custom', message: 'not an IPv4 or IPv6 CIDR (e.g. 10.0.0.0/8)' });
  return normalised ?? z.NEVER;
});
