/** Types of make-trail.mjs for the tests that use it (the script itself is plain JavaScript). */
export interface TrailOptions {
  readonly records?: number;
  readonly seed?: number;
  readonly start?: number;
  readonly perSecond?: number;
  readonly chain?: boolean;
}

/** The records of a realistic trail, in time order. */
export function trailRecords(opts?: TrailOptions): Generator<{ readonly type: string } & Record<string, unknown>>;

/** Writes a trail of `opts.records` lines to `file` (gzip-compressed when `gzip`). */
export function writeTrail(file: string, opts?: TrailOptions, gzip?: boolean): Promise<unknown>;
