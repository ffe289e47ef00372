import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { RouteConfig, UpstreamConfig } from '../config/types.js';

/** What a route is chosen by: known once MAIL FROM was accepted. */
export interface RouteKey {
  /** AUTH user, or null for a client relaying by network. */
  readonly user: string | null;
  /** MAIL FROM address; "" is the null sender. */
  readonly from: string;
  /** Client address as the socket reports it. */
  readonly ip: string;
}

export interface RoutePlan {
  /** The route's name, or `default` for the implicit route. */
  readonly name: string;
  /** Upstream names in the order they are tried. */
  readonly upstreams: readonly string[];
}

/** Name of the implicit route: every upstream in config order. */
export const DEFAULT_ROUTE = 'default';

interface CompiledRoute {
  readonly plan: RoutePlan;
  readonly users: ReadonlySet<string> | null;
  readonly senders: readonly SenderRule[] | null;
  readonly networks: BlockList | null;
}

/** "@example.com" (any local part) or "alerts@example.org". */
interface SenderRule {
  readonly local: string | null;
  readonly domain: string;
}

/**
 * The `routes` of the config, compiled once: which upstreams, in which order, a message may go to.
 * Routes are tried in config order and the first whose criteria all match wins; a message no route
 * matches takes the default route, every upstream in the order `upstreams` lists them. Pure: no I/O,
 * no state beyond the compiled config.
 */
export class RouteTable {
  #routes: readonly CompiledRoute[];
  #default: RoutePlan;

  constructor(routes: readonly RouteConfig[], upstreams: readonly UpstreamConfig[]) {
    this.#routes = routes.map(compile);
    this.#default = { name: DEFAULT_ROUTE, upstreams: upstreams.map((u) => u.name) };
  }

  /** Every plan a message can get, the default last (to build each upstream's parts once). */
  get plans(): readonly RoutePlan[] {
    return [...this.#routes.map((r) => r.plan), this.#default];
  }

  select(key: RouteKey): RoutePlan {
    return this.#routes.find((route) => matches(route, key))?.plan ?? this.#default;
  }
}

function compile(route: RouteConfig): CompiledRoute {
  const { users, senders, networks } = route.match;
  return {
    plan: { name: route.name, upstreams: route.upstreams },
    users: users === null ? null : new Set(users),
    senders: senders === null ? null : senders.map(senderRule),
    networks: networks === null ? null : blockList(networks),
  };
}

function matches(route: CompiledRoute, key: RouteKey): boolean {
  if (route.users !== null && (key.user === null || !route.users.has(key.user))) return false;
  if (route.senders !== null && !route.senders.some((rule) => senderMatches(rule, key.from))) return false;
  if (route.networks !== null && !inNetworks(route.networks, key.ip)) return false;
  return true;
}

function senderRule(text: string): SenderRule {
  const at = text.lastIndexOf('@');
  return { local: at === 0 ? null : text.slice(0, at), domain: text.slice(at + 1).toLowerCase() };
}

/** Domain case-insensitive, local part exact (RFC 5321 §2.4: local parts may be case-sensitive). */
function senderMatches(rule: SenderRule, from: string): boolean {
  const at = from.lastIndexOf('@');
  if (at < 0) return false;
  if (from.slice(at + 1).toLowerCase() !== rule.domain) return false;
  return rule.local === null || from.slice(0, at) === rule.local;
}

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [addr = '', bits] = cidr.split('/');
    const type = isIPv6(addr) ? 'ipv6' : 'ipv4';
    list.addSubnet(addr, Number(bits ?? (type === 'ipv6' ? 128 : 32)), type);
  }
  return list;
}

/** An IPv4 client on a dual-stack listener shows as ::ffff:a.b.c.d; IPv4 routes must still match it. */
function inNetworks(list: BlockList, ip: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
  if (mapped !== undefined) return list.check(mapped, 'ipv4') || list.check(ip, 'ipv6');
  if (isIPv4(ip)) return list.check(ip, 'ipv4');
  if (isIPv6(ip)) return list.check(ip, 'ipv6');
  return false;
}
