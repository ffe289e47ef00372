import { LRUCache } from 'lru-cache';
import { OWN_CLAIMS, type FireClaim, type IncidentClaims, type ResolveClaim } from './incident-claims.js';

/** What an incident is about. `class` is null for rules that are not about one class. */
export interface IncidentKey {
  readonly rule: string;
  readonly upstream: string;
  readonly class: string | null;
}

export interface Incident extends IncidentKey {
  readonly key: string;
  /** When the condition first held (ms since the epoch). */
  readonly openedAt: number;
  /** Sinks to notify, fixed when the incident opened (so its resolve goes where its fire went). */
  readonly sinks: readonly string[];
  /** The fire notification went out; false while the cooldown holds it back. */
  notified: boolean;
  /** When the fire notification went out, or null. */
  firedAt: number | null;
  /** Latest description of the condition (the fire message uses the one current when it goes out). */
  summary: string;
  /** Failure class to show (for a class rule, the key's; otherwise the latest failure's). */
  shownClass: string | null;
  /** The instance that announced it when another one of the fleet did; null when this one did. */
  announcedBy: string | null;
  /** Its fire was claimed in the fleet's state, so its resolve is claimed there too (false: this instance alone). */
  fleetClaim: boolean;
}

export interface IncidentHooks {
  fire(incident: Incident, now: number): void;
  resolve(incident: Incident, reason: string, now: number): void;
  /** Another instance of the fleet announced the fire or the resolve (`by`); this one only records it. */
  elsewhere(state: 'fired' | 'resolved', incident: Incident, text: string, by: string, now: number): void;
  /** The set of open incidents changed (to persist it). */
  changed(open: readonly Incident[]): void;
}

/** The cooldown cache holds one entry per (rule, upstream, class); far more than any config yields. */
const MAX_KEYS = 10_000;

/**
 * One notification per incident. An incident opens when a rule's condition first holds for a
 * (rule, upstream, class) and stays open, silently, while it keeps holding; it is resolved (and a
 * resolve notice sent) when the condition clears. The cooldown is the least time between two fire
 * notifications of one key: an incident that reopens within it is held back, and is announced once
 * the cooldown has passed if it is still open (so a flapping condition is neither spammed nor
 * silenced for good). The cooldown lives in lru-cache with `noUpdateTTL`: writing an existing key
 * must never extend its expiry (PITFALLS §5), and `has()` reports expired entries as absent.
 *
 * In a fleet every instance may see the same incident: before a fire or a resolve is announced it is
 * claimed (`claims`); a claim another instance holds makes this one record it as announced elsewhere.
 * A claim may be answered later (Redis): the incident waits for it, unannounced.
 */
export class Incidents {
  #open = new Map<string, Incident>();
  #recentFires: LRUCache<string, number>;
  #hooks: IncidentHooks;
  #claims: IncidentClaims;
  #cooldown: number;
  /** Incident keys whose fire claim has not been answered yet. */
  #claiming = new Set<string>();

  constructor(cooldown: number, hooks: IncidentHooks, claims: IncidentClaims = OWN_CLAIMS) {
    this.#hooks = hooks;
    this.#claims = claims;
    this.#cooldown = cooldown;
    this.#recentFires = new LRUCache<string, number>({ max: MAX_KEYS, ttl: cooldown, noUpdateTTL: true });
  }

  /** Incidents currently open. */
  get open(): readonly Incident[] {
    return [...this.#open.values()];
  }

  /** Reinstates incidents left open by a previous run, with what remains of their cooldown. */
  restore(incidents: readonly Incident[], cooldown: number, now: number): void {
    for (const incident of incidents) {
      this.#open.set(incident.key, incident);
      const remaining = incident.firedAt === null ? 0 : incident.firedAt + cooldown - now;
      if (remaining > 0) this.#recentFires.set(incident.key, incident.firedAt!, { ttl: remaining });
    }
  }

  /** The condition holds for `key`. Opens (and announces) an incident unless one is open. */
  raise(key: IncidentKey, detail: { summary: string; shownClass: string | null; sinks: readonly string[] }, now: number): void {
    const k = incidentKey(key);
    const open = this.#open.get(k);
    if (open) {
      open.summary = detail.summary;
      open.shownClass = detail.shownClass;
      return;
    }
    const incident: Incident = {
      ...key,
      key: k,
      openedAt: now,
      sinks: detail.sinks,
      notified: false,
      firedAt: null,
      summary: detail.summary,
      shownClass: detail.shownClass,
      announcedBy: null,
      fleetClaim: false,
    };
    this.#open.set(k, incident);
    this.#tryFire(incident, now);
    this.#hooks.changed(this.open);
  }

  /** The condition no longer holds for `key`: resolves its incident, if one is open. */
  clear(key: IncidentKey, reason: string, now: number): void {
    const incident = this.#open.get(incidentKey(key));
    if (incident) this.#resolve(incident, reason, now);
  }

  /** Resolves every open incident of `rule` at `upstream` whose class passes `which`. */
  clearWhere(rule: string, upstream: string, which: (cls: string | null) => boolean, reason: string, now: number): void {
    for (const incident of this.#open.values()) {
      if (incident.rule === rule && incident.upstream === upstream && which(incident.class)) this.#resolve(incident, reason, now);
    }
  }

  /** Announces incidents held back by the cooldown once it has passed. */
  recheck(now: number): void {
    let changed = false;
    for (const incident of this.#open.values()) {
      if (!incident.notified && this.#tryFire(incident, now)) changed = true;
    }
    if (changed) this.#hooks.changed(this.open);
  }

  #tryFire(incident: Incident, now: number): boolean {
    if (this.#recentFires.has(incident.key) || this.#claiming.has(incident.key)) return false;
    const claim = this.#claims.fire(incident.key, this.#cooldown);
    if (!(claim instanceof Promise)) return this.#fired(incident, claim, now);
    this.#claiming.add(incident.key);
    void claim.then((answer) => {
      this.#claiming.delete(incident.key);
      if (this.#fired(incident, answer, Date.now())) this.#hooks.changed(this.open);
    });
    return false;
  }

  /** The fire claim's answer: announce, record as announced elsewhere, or keep waiting (`held`). */
  #fired(incident: Incident, claim: FireClaim, now: number): boolean {
    if (this.#open.get(incident.key) !== incident) {
      // Cleared while the claim was asked: never announced here, so nobody may be left waiting for its resolve.
      if (claim.kind === 'claimed') this.#claims.abandon(incident.key);
      return false;
    }
    if (claim.kind === 'held') return false;
    // An expired entry is still in the cache (has() only reports it absent), and with noUpdateTTL a
    // set() on it would keep its expired TTL: the cooldown would never hold again. Delete it first.
    this.#recentFires.delete(incident.key);
    this.#recentFires.set(incident.key, now);
    incident.notified = true;
    incident.firedAt = now;
    if (claim.kind === 'claimed') {
      incident.announcedBy = null;
      incident.fleetClaim = claim.fleet;
      this.#hooks.fire(incident, now);
    } else {
      incident.announcedBy = claim.by;
      incident.fleetClaim = true;
      this.#hooks.elsewhere('fired', incident, incident.summary, claim.by, now);
    }
    return true;
  }

  #resolve(incident: Incident, reason: string, now: number): void {
    this.#open.delete(incident.key);
    // An incident never announced is closed silently: a resolve for a fire nobody saw is noise.
    if (incident.notified) {
      // Announced by this instance alone (no shared state then): resolved by it alone too.
      const claim = incident.fleetClaim ? this.#claims.resolve(incident.key, this.#cooldown) : ({ kind: 'claimed' } as const);
      if (claim instanceof Promise) void claim.then((answer) => this.#resolved(incident, answer, reason, Date.now()));
      else this.#resolved(incident, claim, reason, now);
    }
    this.#hooks.changed(this.open);
  }

  #resolved(incident: Incident, claim: ResolveClaim, reason: string, now: number): void {
    if (claim.kind === 'claimed') this.#hooks.resolve(incident, reason, now);
    else this.#hooks.elsewhere('resolved', incident, reason, claim.by, now);
  }
}

export function incidentKey(key: IncidentKey): string {
  return `${key.rule}\u0000${key.upstream}\u0000${key.class ?? '*'}`;
}
