import { isIPv6 } from 'node:net';

/** An IPv4 client on a dual-stack listener (::ffff:a.b.c.d) is the same client as a.b.c.d. */
export function unmapIpv4(ip: string): string {
  return /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1] ?? ip;
}

/**
 * The block of addresses one client holds: an IPv4 address itself; for IPv6 its /64, the least a
 * site or subscriber is given (RFC 6177), so that hopping between the addresses of one /64 does not
 * make a client new. "2001:db8:1:2::5" → "2001:db8:1:2::/64".
 */
export function clientBlock(ip: string): string {
  const address = unmapIpv4(ip);
  if (!isIPv6(address)) return address;
  const bare = address.split('%')[0]!;
  const [head = '', tail] = bare.split('::');
  const front = head === '' ? [] : head.split(':');
  const back = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? front : [...front, ...Array<string>(Math.max(0, 8 - front.length - back.length)).fill('0'), ...back];
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
