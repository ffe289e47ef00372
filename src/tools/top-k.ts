/**
 * The most frequent keys of a stream (sender domains, recipient domains) in bounded memory: the
 * Space-Saving algorithm (Metwally, Agrawal, El Abbadi, ICDT 2005) over an indexed min-heap.
 *
 * At most `capacity` keys are tracked. While fewer distinct keys than that have been seen, every
 * count is exact. After that, a new key replaces the least counted one and inherits its count as its
 * possible overestimate (`error`): a reported count is an upper bound, `count - error` a lower bound,
 * and any key occurring more than total/capacity times is guaranteed to be tracked.
 */

export interface TopEntry {
  readonly key: string;
  readonly count: number;
  /** How much `count` may overstate the true count (0 = exact). */
  readonly error: number;
}

export class SpaceSaving {
  readonly capacity: number;
  #keys: string[] = [];
  #counts: number[] = [];
  #errors: number[] = [];
  #index = new Map<string, number>();
  #total = 0;
  #evictions = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.capacity = capacity;
  }

  /** Occurrences added, over all keys. */
  get total(): number {
    return this.#total;
  }

  /** True while no key was ever evicted: every count is exact. */
  get exact(): boolean {
    return this.#evictions === 0;
  }

  add(key: string, weight = 1): void {
    this.#total += weight;
    const at = this.#index.get(key);
    if (at !== undefined) {
      this.#counts[at]! += weight;
      this.#siftDown(at);
      return;
    }
    if (this.#keys.length < this.capacity) {
      this.#keys.push(key);
      this.#counts.push(weight);
      this.#errors.push(0);
      this.#index.set(key, this.#keys.length - 1);
      this.#siftUp(this.#keys.length - 1);
      return;
    }
    // Replace the minimum (the heap's root): the newcomer may have occurred up to `min` times unseen.
    this.#evictions += 1;
    const min = this.#counts[0]!;
    this.#index.delete(this.#keys[0]!);
    this.#keys[0] = key;
    this.#counts[0] = min + weight;
    this.#errors[0] = min;
    this.#index.set(key, 0);
    this.#siftDown(0);
  }

  /** The `n` largest counts, largest first (ties by key, for stable output). */
  top(n: number): TopEntry[] {
    const all = this.#keys.map((key, i) => ({ key, count: this.#counts[i]!, error: this.#errors[i]! }));
    all.sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return all.slice(0, n);
  }

  #less(i: number, j: number): boolean {
    return this.#counts[i]! < this.#counts[j]!;
  }

  #swap(i: number, j: number): void {
    const k = this.#keys[i]!;
    const c = this.#counts[i]!;
    const e = this.#errors[i]!;
    this.#keys[i] = this.#keys[j]!;
    this.#counts[i] = this.#counts[j]!;
    this.#errors[i] = this.#errors[j]!;
    this.#keys[j] = k;
    this.#counts[j] = c;
    this.#errors[j] = e;
    this.#index.set(this.#keys[i], i);
    this.#index.set(this.#keys[j], j);
  }

  #siftUp(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(i, parent)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #siftDown(i: number): void {
    const n = this.#keys.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      if (l < n && this.#less(l, smallest)) smallest = l;
      if (r < n && this.#less(r, smallest)) smallest = r;
      if (smallest === i) return;
      this.#swap(i, smallest);
      i = smallest;
    }
  }
}
