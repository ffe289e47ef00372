/**
 * Who announces an incident when several instances see it (docs/fleet.md): each instance evaluates
 * the rules on its own traffic, so all of them may open the same incident; the fleet notifies once.
 * `claimed`: this instance notifies. `elsewhere`: another instance did (`by`); this one only records
 * it. `held`: the fleet's cooldown for this incident key has not passed; try again later.
 */
export type FireClaim =
  /** `fleet`: claimed in the fleet's state (its resolve is claimed there too); false: this instance alone decided. */
  { readonly kind: 'claimed'; readonly fleet: boolean } | { readonly kind: 'elsewhere'; readonly by: string } | { readonly kind: 'held' };
export type ResolveClaim = { readonly kind: 'claimed' } | { readonly kind: 'elsewhere'; readonly by: string };

export interface IncidentClaims {
  /** The incident `key` opened here and may be announced (this instance's cooldown has passed). */
  fire(key: string, cooldownMs: number): FireClaim | Promise<FireClaim>;
  /** The announced incident `key` cleared here. */
  resolve(key: string, cooldownMs: number): ResolveClaim | Promise<ResolveClaim>;
  /** A claimed fire that will not be announced after all (the incident cleared while the claim was asked). */
  abandon(key: string): void;
}

/** A single instance, or a fleet without shared state: every instance announces what it sees. */
export const OWN_CLAIMS: IncidentClaims = {
  fire: () => ({ kind: 'claimed', fleet: false }),
  resolve: () => ({ kind: 'claimed' }),
  abandon: () => undefined,
};
