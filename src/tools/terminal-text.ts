/**
 * Text from the trail made safe to show on a terminal. Every field of a record can carry what a
 * client or an upstream sent (a Message-ID, a Subject, a reply text, an address), and the trail keeps
 * those bytes exactly (JSON escapes the C0 controls in the file). Printed raw, an ESC or BEL sequence
 * retitles, clears or reprograms the operator's terminal (`Message-ID: <x\x1b]2;pwned\x07@y>`), a C1
 * control does the same on terminals that take 8-bit controls, and a bidirectional override reorders
 * what the operator reads ("Trojan Source", CVE-2021-42574). So every tool's human output shows them
 * as visible escapes instead; `--json` keeps the values exact (see jsonForTerminal).
 *
 * The tools apply this where data enters a renderer (format.ts `recordLine`, `renderStory`,
 * `renderReport`, verify's lines, `complain` for stderr), never field by field.
 */

/**
 * What is escaped: the C0 controls (U+0000-001F, tab and line breaks included), DEL, the C1
 * controls (U+0080-009F); the bidirectional embeddings, overrides and isolates (U+202A-202E,
 * U+2066-2069) and marks (U+200E, U+200F, U+061C); the line and paragraph separators (U+2028,
 * U+2029), which some terminals and pagers break lines at.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

const UNSAFE_ALL = new RegExp(UNSAFE.source, 'g');
/** A line break with the blanks around it: multi-line SMTP replies read as `line / line`. */
const LINE_BREAK = /\s*\n\s*/g;
/** What JSON.stringify leaves raw in strings that a terminal still acts on (C0 is always escaped). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_IN_JSON_TEXT = /[\r\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
/**
 * Raw C0 in a JSON text that parsed can only be whitespace between tokens: newline and tab are left
 * (pretty-printed JSON), CR (which sends the cursor back over the line) becomes a space.
 */
const RAW_CR = /\r/g;

/**
 * `text` with every unsafe character shown as an escape: `\x1b` for C0, DEL and C1, `\u202e` for
 * the others; a line break (and the blanks around it) as ` / `. Idempotent, and a string without
 * anything to escape is returned as it is.
 */
export function terminalText(text: string): string {
  if (!UNSAFE.test(text)) return text;
  return text.replace(LINE_BREAK, ' / ').replace(UNSAFE_ALL, escapeChar);
}

/**
 * A copy of `value` with every string in it, object keys included, passed through terminalText;
 * `value` itself when nothing in it needs escaping (the common case costs a walk, no copy).
 */
export function forTerminal<T>(value: T): T {
  return needsEscape(value) ? (escapeDeep(value) as T) : value;
}

/**
 * `value`, parsed from the JSON text `json`, ready for the terminal. A JSON text without a backslash
 * has no escape sequence, so when it holds no unsafe character either, neither can any string of
 * its value: one scan of the text (about a fifth of the walk's cost) instead of forTerminal's walk.
 */
export function parsedForTerminal<T>(value: T, json: string): T {
  return json.includes('\\') || UNSAFE.test(json) ? forTerminal(value) : value;
}

/**
 * A JSON text for a terminal: the characters JSON.stringify leaves raw (DEL, C1, bidirectional
 * controls, U+2028/2029) written as `\u` escapes, a raw CR between tokens as a space. The same
 * JSON value, so a reader parses exactly what the trail holds (and recomputes its hash from the
 * canonical form, docs/audit-record.md#integrity); only the bytes of those rare records differ.
 * For a JSON text that parsed: outside strings only whitespace can be raw.
 */
export function jsonForTerminal(json: string): string {
  if (!UNSAFE_IN_JSON_TEXT.test(json)) return json;
  return json.replace(UNSAFE_IN_JSON, jsonEscape).replace(RAW_CR, ' ');
}

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

function jsonEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

function needsEscape(value: unknown): boolean {
  if (typeof value === 'string') return UNSAFE.test(value);
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return value.some(needsEscape);
  // for...in rather than Object.entries: no array per object (the values are plain JSON-like data).
  for (const key in value) if (UNSAFE.test(key) || needsEscape((value as Record<string, unknown>)[key])) return true;
  return false;
}

function escapeDeep(value: unknown): unknown {
  if (typeof value === 'string') return terminalText(value);
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(escapeDeep);
  // fromEntries defines own properties: a `__proto__` key from JSON.parse stays a plain key.
  return Object.fromEntries(Object.entries(value).map(([key, v]) => [terminalText(key), escapeDeep(v)]));
}
