import type { ClientRejectClass } from '../classify/failure-class.js';

/**
 * The refusals of one connection, as the trail tells them: the first few get a `reject` record each,
 * the rest are only counted, by class, in the connection's `session` record. However many refusals a
 * client provokes, its connection adds a bounded number of records (docs/design.md, "What an abusive
 * client can write").
 */
export class RefusalTally {
  #byClass: Partial<Record<ClientRejectClass, number>> = {};
  #summarised: Partial<Record<ClientRejectClass, number>> = {};
  #total = 0;

  /**
   * Counts a refusal of `cls`. True when it gets a `reject` record of its own: one of the first
   * `recorded` refusals of the connection, or `always` (the one that ends it).
   */
  add(cls: ClientRejectClass, recorded: number, always = false): boolean {
    this.#byClass[cls] = (this.#byClass[cls] ?? 0) + 1;
    this.#total += 1;
    if (always || this.#total <= recorded) return true;
    this.#summarised[cls] = (this.#summarised[cls] ?? 0) + 1;
    return false;
  }

  /** Every refusal so far, by class (a copy). */
  get byClass(): Partial<Record<ClientRejectClass, number>> {
    return { ...this.#byClass };
  }

  /** The refusals that have no `reject` record of their own, by class (a copy). */
  get summarised(): Partial<Record<ClientRejectClass, number>> {
    return { ...this.#summarised };
  }
}
