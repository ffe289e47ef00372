import { isIPv4, isIPv6 } from 'node:net';

/**
 * The PROXY protocol header a load balancer sends before the client's bytes (HAProxy's "The PROXY
 * protocol" spec, versions 1 and 2): read from the first bytes of a connection, one call per chunk
 * received, never reading past the header.
 *
 * Hand-written, not smtp-server's `useProxy` nor a package, because none reads what a load balancer
 * sends (docs/fleet.md, "PROXY protocol"): smtp-server reads version 1 only (a version 2 header,
 * whose signature starts with CRLF, is refused as garbage), and the packages on npm parse a complete
 * buffer only (the framing would be ours anyway), refuse version 1's `UNKNOWN` (which a receiver must
 * accept, spec §2.1), take any word for an address, or ignore version 2's length field, so that TLVs
 * and the client's first bytes run together. The format is small and fully specified; each rule
 * below cites the spec's section.
 */

/** What the header says. */
export type ProxyHeader =
  | {
      readonly version: 'v1' | 'v2';
      /** A client's connection relayed: its address and port as the proxy saw them. */
      readonly command: 'proxy';
      readonly source: { readonly ip: string; readonly port: number };
    }
  | {
      readonly version: 'v1' | 'v2';
      /**
       * No client address: v2 `LOCAL` (the proxy's own connection, its health checks, §2.2), v1
       * `UNKNOWN` (§2.1), or a v2 family with no IP address (UNSPEC, UNIX). The receiver uses the
       * connection's own endpoints.
       */
      readonly command: 'local';
      readonly source: null;
    };

export type HeaderRead =
  | { readonly status: 'incomplete' }
  | { readonly status: 'invalid'; readonly reason: string }
  /** `length`: bytes of the header; what follows is the client's and goes to the SMTP session. */
  | { readonly status: 'complete'; readonly header: ProxyHeader; readonly length: number };

/** §2.1: a v1 line is at most 107 bytes, CRLF included. */
const V1_MAX = 107;
/** §2.2: the 12-byte signature of v2. */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED = 16;
/**
 * Largest v2 header accepted (addresses and TLVs). The spec allows 65,551 bytes; load balancers send
 * a few hundred at most (addresses, an endpoint id, TLS facts), and a bound keeps one connection from
 * making us hold 64 KiB before it has said who it is.
 */
export const V2_MAX = 4096;
const V1_PREFIX = Buffer.from('PROXY ');

/** Reads the header from the bytes received so far (`buf`, from the connection's first byte). */
export function readProxyHeader(buf: Buffer): HeaderRead {
  if (buf.length === 0) return { status: 'incomplete' };
  if (buf[0] === V2_SIGNATURE[0]) return readV2(buf);
  if (buf[0] === V1_PREFIX[0]) return readV1(buf);
  return { status: 'invalid', reason: 'not a PROXY protocol header' };
}

function readV1(buf: Buffer): HeaderRead {
  const prefix = Math.min(buf.length, V1_PREFIX.length);
  if (!buf.subarray(0, prefix).equals(V1_PREFIX.subarray(0, prefix))) return { status: 'invalid', reason: 'not a PROXY protocol header' };
  const end = buf.indexOf('\r\n');
  if (end < 0) {
    return buf.length >= V1_MAX ? { status: 'invalid', reason: 'PROXY v1 line longer than 107 bytes' } : { status: 'incomplete' };
  }
  const length = end + 2;
  if (length > V1_MAX) return { status: 'invalid', reason: 'PROXY v1 line longer than 107 bytes' };
  const words = buf.subarray(V1_PREFIX.length, end).toString('latin1').split(' ');
  const [family, src, dst, sport, dport, ...extra] = words;
  // §2.1: with UNKNOWN the rest of the line is to be ignored, whatever it holds.
  if (family === 'UNKNOWN') return { status: 'complete', header: { version: 'v1', command: 'local', source: null }, length };
  if (family !== 'TCP4' && family !== 'TCP6') return { status: 'invalid', reason: 'PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN' };
  if (extra.length > 0 || dport === undefined) return { status: 'invalid', reason: 'PROXY v1: not five fields separated by single spaces' };
  const isFamily = family === 'TCP4' ? isIPv4 : isIPv6;
  if (!isFamily(src!) || !isFamily(dst!)) return { status: 'invalid', reason: `PROXY v1: address not ${family === 'TCP4' ? 'IPv4' : 'IPv6'}` };
  const port = v1Port(sport!);
  if (port === null || v1Port(dport) === null) return { status: 'invalid', reason: 'PROXY v1: port not a number from 0 to 65535' };
  return { status: 'complete', header: { version: 'v1', command: 'proxy', source: { ip: src!.toLowerCase(), port } }, length };
}

/** §2.1: decimal, no leading zero, 0-65535. */
function v1Port(text: string): number | null {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return null;
  const n = Number(text);
  return n <= 65535 ? n : null;
}

function readV2(buf: Buffer): HeaderRead {
  const signed = Math.min(buf.length, V2_SIGNATURE.length);
  if (!buf.subarray(0, signed).equals(V2_SIGNATURE.subarray(0, signed))) return { status: 'invalid', reason: 'not a PROXY protocol header' };
  if (buf.length < V2_FIXED) return { status: 'incomplete' };
  const verCmd = buf[12]!;
  const famProto = buf[13]!;
  const length = V2_FIXED + buf.readUInt16BE(14);
  // §2.2: the high nibble is the version, 2; the low one the command, LOCAL (0) or PROXY (1).
  if (verCmd >> 4 !== 2) return { status: 'invalid', reason: 'PROXY v2: version is not 2' };
  const command = verCmd & 0x0f;
  if (command > 1) return { status: 'invalid', reason: 'PROXY v2: command is neither LOCAL nor PROXY' };
  if (length > V2_MAX) return { status: 'invalid', reason: `PROXY v2 header longer than ${V2_MAX} bytes` };
  if (buf.length < length) return { status: 'incomplete' };
  // §2.2: LOCAL: the connection is the proxy's own; the address block, if any, is skipped.
  if (command === 0) return { status: 'complete', header: { version: 'v2', command: 'local', source: null }, length };
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  // A connection to an SMTP listener is a stream: DGRAM (2) cannot be what was relayed here.
  if (transport > 1) return { status: 'invalid', reason: 'PROXY v2: transport is not a stream' };
  const block = buf.subarray(V2_FIXED, length);
  if (family === 1) {
    if (block.length < 12) return { status: 'invalid', reason: 'PROXY v2: IPv4 address block too short' };
    const ip = [...block.subarray(0, 4)].join('.');
    return { status: 'complete', header: { version: 'v2', command: 'proxy', source: { ip, port: block.readUInt16BE(8) } }, length };
  }
  if (family === 2) {
    if (block.length < 36) return { status: 'invalid', reason: 'PROXY v2: IPv6 address block too short' };
    return {
      status: 'complete',
      header: { version: 'v2', command: 'proxy', source: { ip: ipv6Text(block.subarray(0, 16)), port: block.readUInt16BE(32) } },
      length,
    };
  }
  // §2.2: UNSPEC (0): the receiver uses the connection's endpoints; UNIX (3) names no IP address either.
  if (family === 0 || family === 3) return { status: 'complete', header: { version: 'v2', command: 'local', source: null }, length };
  return { status: 'invalid', reason: 'PROXY v2: unknown address family' };
}

/** RFC 5952 text of 16 address bytes: lower case, the longest run of zero groups as "::"; IPv4-mapped as a.b.c.d. */
export function ipv6Text(bytes: Buffer): string {
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return [...bytes.subarray(12, 16)].join('.');
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.len < 2) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}
