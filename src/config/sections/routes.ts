/**
 * `routes`: which upstreams a message may go to, first match wins (docs/config.md, "Keys":
 * `routes[].*`; "Routes"). The names a route uses are checked against `upstreams` and
 * `clients.users` by `routesConsistency`, applied to the whole file.
 */
import { z } from 'zod';
import { ALWAYS, cidr, entryName, isRecord, sender, unique } from '../fields.js';
import type { Loaded } from '../loaded.js';

/** A route: which messages (all criteria given must match) go to which upstreams, in order. */
const route = z.strictObject({
  name: entryName(),
  /** Every criterion given must match; within one criterion any entry may. null = not a criterion. */
  match: z
    .strictObject({
      /** AUTH usernames. */
      users: z.array(z.string().min(1)).min(1).optional(),
      /** MAIL FROM: "@domain" or a full address (domain case-insensitive, local part exact). */
      senders: z.array(sender()).min(1).optional(),
      /** Client address CIDRs. */
      networks: z.array(cidr).min(1).optional(),
    })
    .prefault({}),
  /** Upstream names, tried in this order. */
  upstreams: z.array(z.string().min(1)).min(1),
});

export const routesSection = z.array(route).default([]).superRefine(unique('name', 'duplicate route name'), ALWAYS);

/**
 * Checks between routes and the rest of the file (`value` is the whole file): every upstream a route
 * names exists (once per route), every user it names is configured, and no route hides behind an
 * earlier one that matches everything. `value` may be partly invalid (see ALWAYS). Messages never
 * quote the value (house rule).
 */
export function routesConsistency(value: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(value) || !Array.isArray(value.routes)) return;
  const upstreamNames = new Set(
    (Array.isArray(value.upstreams) ? value.upstreams : []).map((u) => (isRecord(u) ? u.name : undefined)).filter((n) => typeof n === 'string'),
  );
  const clientsValue = isRecord(value.clients) ? value.clients : {};
  const userNames = new Set((Array.isArray(clientsValue.users) ? clientsValue.users : []).map((u) => (isRecord(u) ? u.username : undefined)));
  let catchAll: number | null = null;
  value.routes.forEach((r: unknown, i) => {
    if (!isRecord(r)) return;
    if (catchAll !== null) {
      ctx.addIssue({ code: 'custom', message: `never used: routes[${catchAll}] matches every message`, path: ['routes', i] });
    }
    const names = Array.isArray(r.upstreams) ? r.upstreams : [];
    names.forEach((name: unknown, j) => {
      if (typeof name !== 'string') return;
      if (!upstreamNames.has(name)) ctx.addIssue({ code: 'custom', message: 'names no entry of upstreams', path: ['routes', i, 'upstreams', j] });
      else if (names.indexOf(name) !== j) ctx.addIssue({ code: 'custom', message: 'repeats an upstream of this route', path: ['routes', i, 'upstreams', j] });
    });
    const match = isRecord(r.match) ? r.match : {};
    const users = Array.isArray(match.users) ? match.users : [];
    users.forEach((u: unknown, j) => {
      if (typeof u === 'string' && !userNames.has(u)) {
        ctx.addIssue({ code: 'custom', message: 'names no user of clients.users', path: ['routes', i, 'match', 'users', j] });
      }
    });
    if (catchAll === null && match.users === undefined && match.senders === undefined && match.networks === undefined) catchAll = i;
  });
}

export type RouteConfig = Loaded<typeof route>;

/** Criteria not given become null. */
export function toRoute(r: z.output<typeof route>): RouteConfig {
  return {
    name: r.name,
    match: { users: r.match.users ?? null, senders: r.match.senders ?? null, networks: r.match.networks ?? null },
    upstreams: r.upstreams,
  };
}
