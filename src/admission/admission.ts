import { LRUCache } from 'lru-cache';
import type { ClientsConfig, UserConfig } from '../config/types.js';
import { CidrList } from './cidr-list.js';

/**
 * Who may relay (docs/design.md, "Who may relay"). Pure decisions over config; the listener turns a refusal
 * into a named reply and a `reject` record. The rule that keeps mailtrail from being an open relay:
 * MAIL is accepted only from an authenticated user or from a listed network, under every
 * combination of options.
 */
export class Admission {
  #networks: CidrList;
  #loopback = new CidrList(['127.0.0.0/8', '::1/128']);
  #users: ReadonlyMap<string, UserConfig>;
  #clients: ClientsConfig;
  /**
   * Each check builds a SocketAddress (BlockList.check()); apps reconnect from the same few addresses, so
   * the answer per address is cached (bounded; config is frozen, so entries never go stale).
   */
  #byIp = new LRUCache<string, { trusted: boolean; loopback: boolean }>({ max: 4096 });

  constructor(clients: ClientsConfig) {
    this.#clients = clients;
    this.#networks = new CidrList(clients.networks);
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
      facts = { trusted: this.#networks.has(ip), loopback: this.#loopback.has(ip) };
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
