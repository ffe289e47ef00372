/**
 * Parsers for the human-friendly units accepted in the config file. Both are pure and return null for
 * anything they do not understand, so the schema can report the key path with a uniform message.
 */

/**
 * Binary multipliers: "MB" means 2^20 bytes, as in Postfix, Exim and most mail software, so that
 * `35MB` in our config means the same as the figure people copy from their provider's documentation
 * into other MTAs. The explicit IEC forms (KiB, MiB, GiB) mean the same thing.
 */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  k: 2 ** 10,
  kb: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mb: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gb: 2 ** 30,
  gib: 2 ** 30,
};

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** A decimal number followed by an optional unit, with optional spaces: "35MB", "1.5 MiB", "500ms". */
const QUANTITY = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;

/**
 * Bytes from a number (already bytes) or a string such as `35MB`, `512KB`, `1MiB`, `1024`.
 * Fractions are rounded to whole bytes. Returns null for negative, non-finite or unparsable input.
 */
export function parseSize(value: unknown): number | null {
  return parseQuantity(value, SIZE_UNITS, 'b');
}

/**
 * Milliseconds from a number (already ms) or a string such as `500ms`, `10s`, `5m`, `1h`, `5d`, `250`.
 * Returns null for negative, non-finite or unparsable input.
 */
export function parseDuration(value: unknown): number | null {
  return parseQuantity(value, DURATION_UNITS, 'ms');
}

function parseQuantity(value: unknown, units: Readonly<Record<string, number>>, bareUnit: string): number | null {
  if (typeof value === 'number') return isUsable(value) ? Math.round(value) : null;
  if (typeof value !== 'string') return null;
  const match = QUANTITY.exec(value);
  if (!match) return null;
  const unit = (match[2] ?? '').toLowerCase() || bareUnit;
  // Own-property lookup: a unit such as "constructor" must not find Object.prototype members.
  const multiplier = Object.hasOwn(units, unit) ? units[unit] : undefined;
  if (multiplier === undefined) return null;
  const result = Number(match[1]) * multiplier;
  return isUsable(result) ? Math.round(result) : null;
}

function isUsable(n: number): boolean {
  return Number.isFinite(n) && n >= 0 && n <= Number.MAX_SAFE_INTEGER;
}
