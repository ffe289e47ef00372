import { LUA_NOW, type LuaScript, type RedisLink } from '../../state/redis-link.js';
import type { FireClaim, IncidentClaims, ResolveClaim } from './incident-claims.js';

/** How long the fleet remembers an open incident (renewed by each fire claim); beyond it, it may page again. */
const OPEN_FOR_MS = 7 * 24 * 3_600_000;

/**
 * KEYS: the incident. ARGV: owner, instance, cooldown, open-for. The first instance to claim an
 * incident that is not open announces it, unless the fleet announced it less than a cooldown ago.
 * Returns {kind, instance that announced it}.
 */
const FIRE: LuaScript = {
  name: 'mt_incident_fire',
  keys: 1,
  lua: `
${LUA_NOW}
local h = redis.call('HMGET', KEYS[1], 'state', 'by', 'firedAt')
if h[1] == 'open' then return {'elsewhere', h[2]} end
if h[3] and now - tonumber(h[3]) < tonumber(ARGV[3]) then return {'held', h[2]} end
redis.call('HSET', KEYS[1], 'state', 'open', 'by', ARGV[2], 'owner', ARGV[1], 'firedAt', now)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'claimed', ARGV[2]}`,
};

/**
 * KEYS: the incident. ARGV: instance, cooldown. The first instance whose incident clears announces
 * the resolve; an incident the fleet no longer knows (expired, Redis restarted) is resolved by
 * whoever asks, since a second resolve beats none. Returns {kind, instance that resolved it}.
 */
const RESOLVE: LuaScript = {
  name: 'mt_incident_resolve',
  keys: 1,
  lua: `
local h = redis.call('HMGET', KEYS[1], 'state', 'resolvedBy')
if h[1] == 'resolved' then return {'elsewhere', h[2]} end
redis.call('HSET', KEYS[1], 'state', 'resolved', 'resolvedBy', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'claimed', ARGV[1]}`,
};

/** KEYS: the incident. ARGV: owner. Forgets an open claim of this process that was never announced. */
const ABANDON: LuaScript = {
  name: 'mt_incident_abandon',
  keys: 1,
  lua: `
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HGET', KEYS[1], 'state') == 'open' then
  redis.call('DEL', KEYS[1])
end
return 0`,
};

/**
 * One notification per incident for the fleet: an atomic claim in Redis under the incident's key
 * (rule, upstream, class), so of the instances that see the same failures one announces the fire and
 * one the resolve, and the fleet keeps `alerts.cooldown` between two fires of one key. The others
 * write their `alert` record with no sinks, naming the instance that announced it. While Redis is
 * unreachable every instance announces what it sees, as without `state.redis`.
 */
export class RedisIncidentClaims implements IncidentClaims {
  #link: RedisLink;

  constructor(link: RedisLink) {
    this.#link = link;
  }

  fire(key: string, cooldownMs: number): Promise<FireClaim> {
    return this.#link.run<FireClaim>(
      'alerts',
      async () => {
        const args = [this.#link.owner, this.#link.instanceId, cooldownMs, Math.max(OPEN_FOR_MS, cooldownMs * 2)];
        const [kind, by] = (await this.#link.eval(FIRE, [keyOf(key)], args)) as [string, string];
        if (kind === 'claimed') return { kind: 'claimed', fleet: true };
        return kind === 'held' ? { kind: 'held' } : { kind: 'elsewhere', by };
      },
      // Each instance announces what it sees, and resolves it itself too.
      () => ({ kind: 'claimed', fleet: false }),
    );
  }

  resolve(key: string, cooldownMs: number): Promise<ResolveClaim> {
    return this.#link.run(
      'alerts',
      async () => {
        const [kind, by] = (await this.#link.eval(RESOLVE, [keyOf(key)], [this.#link.instanceId, Math.max(1, cooldownMs)])) as [string, string];
        return kind === 'claimed' ? { kind: 'claimed' as const } : { kind: 'elsewhere' as const, by };
      },
      () => ({ kind: 'claimed' as const }),
    );
  }

  abandon(key: string): void {
    this.#link.send('alerts', () => this.#link.eval(ABANDON, [keyOf(key)], [this.#link.owner]));
  }
}

/** `incident:<rule>|<upstream>|<class>` (the in-process key joins them with NUL). */
function keyOf(key: string): string {
  return `incident:${key.replaceAll('\u0000', '|')}`;
}
