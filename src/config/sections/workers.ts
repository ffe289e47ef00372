/**
 * `workers`: how many processes serve the listeners on this machine (docs/config.md, "Keys":
 * `workers.*`; docs/fleet.md, "Several processes on one machine"). `workers: 4` is short for
 * `workers: { count: 4 }`.
 */
import { z } from 'zod';
import { flag, fromNumericString, isRecord } from '../fields.js';
import type { Loaded } from '../loaded.js';

/** More processes than this on one machine is a typo, not a plan. */
export const MAX_WORKERS = 64;

const workerCount = z.preprocess(fromNumericString, z.int().min(1).max(MAX_WORKERS));

const workersObject = z.strictObject({
  /** Processes sharing the listeners; 1 = the relay runs in the `serve` process itself. */
  count: workerCount.default(1),
  /**
   * With more than one process and no `state.redis`, the limits kept in each process's memory would
   * each allow the full limit; true says the operator knows (docs/fleet.md).
   */
  allowLocalLimits: flag(false),
});

export const workersSection = z.preprocess((value) => (isRecord(value) || value === undefined ? value : { count: value }), workersObject.prefault({}));

export type WorkersConfig = Loaded<typeof workersObject>;
