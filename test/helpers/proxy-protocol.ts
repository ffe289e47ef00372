/**
 * PROXY protocol headers as a load balancer sends them (HAProxy's spec, v1 text and v2 binary), built
 * by hand for tests: what HAProxy's `send-proxy` / `send-proxy-v2` write.
 */
import { isIPv4 } from 'node:net';

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export function proxyV1(src: string, sport: number, dst = isIPv4(src) ? '127.0.0.1' : '::1', dport = 25): Buffer {
  return Buffer.from(`PROXY ${isIPv4(src) ? 'TCP4' : 'TCP6'} ${src} ${dst} ${sport} ${dport}\r\n`);
}

export interface V2Options {
  /** `proxy` (default) or `local` (a health check). */
  command?: 'proxy' | 'local';
  src?: string;
  sport?: number;
  dst?: string;
  dport?: number;
  /** Type-length-value entries after the addresses (§2.2.7), e.g. an AWS VPC endpoint id. */
  tlvs?: { type: number; value: Buffer }[];
  /** Override the version/command byte (to make a broken header). */
  verCmd?: number;
  /** Override the family/transport byte. */
  famProto?: number;
}

export function proxyV2(opts: V2Options = {}): Buffer {
  const command = opts.command ?? 'proxy';
  let block = Buffer.alloc(0);
  let famProto = 0x00;
  if (command === 'proxy' && opts.src !== undefined) {
    const v4 = isIPv4(opts.src);
    famProto = v4 ? 0x11 : 0x21;
    const addr = (ip: string) => (v4 ? Buffer.from(ip.split('.').map(Number)) : ipv6Bytes(ip));
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(opts.sport ?? 40000, 0);
    ports.writeUInt16BE(opts.dport ?? 25, 2);
    block = Buffer.concat([addr(opts.src), addr(opts.dst ?? (v4 ? '127.0.0.1' : '::1')), ports]);
  }
  const tlvs = (opts.tlvs ?? []).map((t) => {
    const head = Buffer.alloc(3);
    head[0] = t.type;
    head.writeUInt16BE(t.value.length, 1);
    return Buffer.concat([head, t.value]);
  });
  const body = Buffer.concat([block, ...tlvs]);
  const fixed = Buffer.alloc(4);
  fixed[0] = opts.verCmd ?? (command === 'proxy' ? 0x21 : 0x20);
  fixed[1] = opts.famProto ?? famProto;
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, body]);
}

function ipv6Bytes(ip: string): Buffer {
  const [head = '', tail] = ip.split('::');
  const front = head === '' ? [] : head.split(':');
  const back = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(Number.parseInt(g, 16), i * 2));
  return out;
}
