import { BlockList, isIPv4, isIPv6 } from 'node:net';

/**
 * A set of networks ("10.0.0.0/8", "::1/128", or a bare address for that address alone) that a client
 * address is checked against. Addresses that are neither IPv4 nor IPv6 are in no list.
 */
export class CidrList {
  #list = new BlockList();

  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [addr, bits] = cidr.split('/');
      const type = isIPv6(addr!) ? 'ipv6' : 'ipv4';
      const prefix = bits === undefined ? (type === 'ipv6' ? 128 : 32) : Number(bits);
      this.#list.addSubnet(addr!, prefix, type);
    }
  }

  has(ip: string): boolean {
    if (isIPv4(ip)) return this.#list.check(ip, 'ipv4');
    if (isIPv6(ip)) return this.#list.check(ip, 'ipv6');
    return false;
  }
}
