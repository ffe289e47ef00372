/**
 * Byte-level line filters for `lookup`: which lines could mention the key, decided on the raw bytes
 * of a whole read buffer at once (native substring search), so the million lines that cannot match
 * are never decoded or parsed. A filter may let through lines that do not match (the parsed record is
 * checked exactly afterwards); it must never refuse one that does.
 */
import type { BytePrefilter } from './trail-reader.js';

/**
 * Wraps a per-buffer search: `find(buf)` returns the offsets of interesting bytes in the buffer; a
 * line passes when one of them falls inside it. Lines of a buffer come in increasing order.
 */
function perBuffer(find: (buf: Buffer) => number[]): BytePrefilter {
  let last: Buffer | null = null;
  let hits: number[] = [];
  let i = 0;
  return (buf, start, end) => {
    if (buf !== last) {
      last = buf;
      hits = find(buf).sort((a, b) => a - b);
      i = 0;
    }
    while (i < hits.length && hits[i]! < start) i += 1;
    return i < hits.length && hits[i]! < end;
  };
}

/**
 * Lines containing one of `needles`, case-insensitively. The buffer is read as Latin-1 (one
 * character per byte, so offsets stay byte offsets) and lower-cased, and so are the needles' UTF-8
 * bytes: the same mapping on both sides, so ASCII letters match in any case and every other byte
 * exactly.
 */
export function containsAny(needles: readonly string[]): BytePrefilter {
  const lowered = [...new Set(needles.map((n) => Buffer.from(n, 'utf8').toString('latin1').toLowerCase()))].filter((n) => n.length > 0);
  return perBuffer((buf) => {
    const hay = buf.toString('latin1').toLowerCase();
    const hits: number[] = [];
    for (const needle of lowered) {
      for (let at = hay.indexOf(needle); at !== -1; at = hay.indexOf(needle, at + 1)) hits.push(at);
    }
    return hits;
  });
}

/**
 * Lines containing one of `needles` byte for byte: for keys taken from the trail itself (ids,
 * Message-IDs, hashes as they were written), so no case folding is needed and the search runs on the
 * bytes without copying them.
 */
export function containsExact(needles: readonly string[]): BytePrefilter {
  const patterns = [...new Set(needles)].filter((n) => n.length > 0).map((n) => Buffer.from(n, 'utf8'));
  return perBuffer((buf) => {
    const hits: number[] = [];
    for (const pattern of patterns) {
      for (let at = buf.indexOf(pattern); at !== -1; at = buf.indexOf(pattern, at + 1)) hits.push(at);
    }
    return hits;
  });
}

/**
 * Lines where a JSON string member named in `fields` (`"messageId":"...`) has a value that, after
 * `normalize`, is in `values`. A value containing a backslash (an escape that could hide the real
 * text) always passes.
 */
export function memberValueIn(fields: readonly string[], values: ReadonlySet<string>, normalize: (s: string) => string): BytePrefilter {
  const patterns = fields.map((f) => Buffer.from(`"${f}":"`, 'utf8'));
  return perBuffer((buf) => {
    const hits: number[] = [];
    for (const pattern of patterns) {
      for (let at = buf.indexOf(pattern); at !== -1; at = buf.indexOf(pattern, at + pattern.length)) {
        const start = at + pattern.length;
        const end = buf.indexOf(0x22 /* " */, start);
        if (end === -1) continue;
        if (buf[end - 1] === 0x5c /* \ */ || buf.subarray(start, end).includes(0x5c)) {
          hits.push(at);
          continue;
        }
        if (values.has(normalize(buf.toString('utf8', start, end)))) hits.push(at);
      }
    }
    return hits;
  });
}
