import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';
import type { ClientsConfig, UserConfig } from '../config/types.js';

/**
 * Who may relay (docs/design.md, "Who may relay"). Pure decisions over config; the listener turns a refusal
 * into a named reply and a `reject` record. The rule that keeps mailtrail from being an open relay:
 * MAIL is accepted only from an authenticated user or from a listed network, under every
 * combination of options.
 */
export class Admission {
  #networks = new BlockList();
  #loopback = new BlockList();
  #users: ReadonlyMap<string, UserConfig>;
  #clients: ClientsConfig;
  /**
   * BlockList.check() builds a SocketAddress per call; apps reconnect from the same few addresses, so
   * the answer per address is cached (bounded; config is frozen, so entries never go stale).
   */
  #byIp = new LRUCache<string, { trusted: boolean; loopback: boolean }>({ max: 4096 });

  constructor(clients: ClientsConfig) {
    this.#clients = clients;
    for (const cidr of clients.networks) addCidr(this.#networks, cidr);
    addCidr(this.#loopback, '127.0.0.0/8');
    addCidr(this.#loopback, '::1/128');
    this.#users = new Map(clients.users.map((u) => [u.username, u]));
  }

  get hasUsers(): boolean {
    return this.#users.size > 0;
  }

  user(name: string): UserConfig | undefined {
    return this.#users.get(name);
  }

  /** The client's address is in `clients.networks`. */
  isTrustedNetwork(ip: string): boolean {
    return this.#facts(ip).trusted;
  }

  isLoopback(ip: string): boolean {
    return this.#facts(ip).loopback;
  }

  #facts(ip: string): { trusted: boolean; loopback: boolean } {
    let facts = this.#byIp.get(ip);
    if (!facts) {
      facts = { trusted: check(this.#networks, ip), loopback: check(this.#loopback, ip) };
      this.#byIp.set(ip, facts);
    }
    return facts;
  }

  /** AUTH and MAIL need TLS for this client (clients.requireTls; default: all but loopback). */
  tlsRequired(ip: string): boolean {
    const rule = this.#clients.requireTls;
    if (rule === 'except-loopback') return !this.isLoopback(ip);
    return rule;
  }

  /**
   * May this user send as `from`? Entries are full addresses or "@domain"; comparison is
   * case-insensitive on the domain and exact on the local part (RFC 5321 §2.4: local parts may be
   * case-sensitive). An empty list allows any sender.
   */
  senderAllowed(user: UserConfig, from: string): boolean {
    if (user.allowedSenders.length === 0) return true;
    const at = from.lastIndexOf('@');
    if (at < 0) return false;
    const local = from.slice(0, at);
    const domain = from.slice(at + 1).toLowerCase();
    return user.allowedSenders.some((rule) => {
      if (rule.startsWith('@')) return rule.slice(1).toLowerCase() === domain;
      const ruleAt = rule.lastIndexOf('@');
      return rule.slice(0, ruleAt) === local && rule.slice(ruleAt + 1).toLowerCase() === domain;
    });
  }
}

function addCidr(list: BlockList, cidr: string): void {
  const [addr, bits] = cidr.split('/');
  const type = isIPv6(addr!) ? 'ipv6' : 'ipv4';
  const prefix = bits === undefined ? (type === 'ipv6' ? 128 : 32) : Number(bits);
  list.addSubnet(addr!, prefix, type);
}

function check(list: BlockList, ip: string): boolean {
  if (isIPv4(ip)) return list.check(ip, 'ipv4');
  if (isIPv6(ip)) return list.check(ip, 'ipv6');
  return false;
}
