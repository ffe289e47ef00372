/**
 * Percentiles of durations in bounded memory: a fixed log-bucket histogram (the DDSketch layout,
 * Masson et al., VLDB 2019, without the bucket collapsing, since durations have a known range).
 *
 * Bucket i holds the values in (γ^(i-1), γ^i] with γ = (1+a)/(1-a), a = 0.005, and stands for the
 * value 2γ^i/(γ+1), which is within a·x of every x in the bucket. Values are whole milliseconds, and
 * the estimate is rounded to a whole millisecond: below 100 ms the error a·x < 0.5 so rounding gives
 * the exact value; from 100 ms up, a·x + 0.5 ≤ 2a·x. So:
 *
 *   **every percentile is within 1% (relative) of the exact nearest-rank percentile**
 *   (the value at rank ⌈q·n⌉ in sorted order), and exact below 100 ms; 0 is kept exactly.
 *
 * 2,200 buckets cover 1 ms to about 40 days (values above are counted in the last bucket, and the
 * estimate is clamped to the exact maximum); 17.6 KB per histogram whatever the number of values.
 */

/** Relative error of one bucket; the documented bound after rounding is twice this (1%). */
const BUCKET_ERROR = 0.005;
export const QUANTILE_RELATIVE_ERROR = 2 * BUCKET_ERROR;
const GAMMA = (1 + BUCKET_ERROR) / (1 - BUCKET_ERROR);
const LOG_GAMMA = Math.log(GAMMA);
const BUCKETS = 2200;

export interface QuantileSummary {
  readonly count: number;
  readonly min: number | null;
  readonly max: number | null;
  /** Exact arithmetic mean, rounded to 0.1 ms. */
  readonly mean: number | null;
  readonly p50: number | null;
  readonly p95: number | null;
  readonly p99: number | null;
}

export class LogHistogram {
  #buckets = new Float64Array(BUCKETS);
  #zeros = 0;
  #count = 0;
  #sum = 0;
  #min = Infinity;
  #max = -Infinity;

  get count(): number {
    return this.#count;
  }

  /** Adds one duration in ms (negative and non-finite values are ignored: they are not durations). */
  add(value: number): void {
    if (!Number.isFinite(value) || value < 0) return;
    this.#count += 1;
    this.#sum += value;
    if (value < this.#min) this.#min = value;
    if (value > this.#max) this.#max = value;
    if (value === 0) {
      this.#zeros += 1;
      return;
    }
    this.#buckets[bucketOf(value)]! += 1;
  }

  /** The nearest-rank q-quantile (0 < q ≤ 1) within the documented bound, or null when empty. */
  quantile(q: number): number | null {
    if (this.#count === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    if (rank <= this.#zeros) return 0;
    let seen = this.#zeros;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#buckets[i]!;
      if (seen >= rank) return Math.round(Math.min(this.#max, Math.max(this.#min, representative(i))));
    }
    return this.#max;
  }

  summary(): QuantileSummary {
    const empty = this.#count === 0;
    return {
      count: this.#count,
      min: empty ? null : this.#min,
      max: empty ? null : this.#max,
      mean: empty ? null : Math.round((this.#sum / this.#count) * 10) / 10,
      p50: this.quantile(0.5),
      p95: this.quantile(0.95),
      p99: this.quantile(0.99),
    };
  }
}

function bucketOf(value: number): number {
  // ceil(log_γ v) for v ≥ 1; values in (0, 1] share bucket 0 (durations are whole ms).
  const i = Math.ceil(Math.log(value) / LOG_GAMMA - 1e-9);
  return i <= 0 ? 0 : i >= BUCKETS ? BUCKETS - 1 : i;
}

function representative(i: number): number {
  return (2 * Math.pow(GAMMA, i)) / (GAMMA + 1);
}
