/**
 * `instance`: the name this relay goes by in a fleet (docs/config.md, "Keys": `instance.*`;
 * docs/fleet.md). Every record it writes and every log line carries it, so the trails of several
 * instances can be told apart (and their chains checked apart) once they are read together.
 */
import { hostname as osHostname } from 'node:os';
import { z } from 'zod';
import type { Loaded } from '../loaded.js';

/**
 * Letters, digits, ".", "-" and "_", starting with a letter or digit, at most 63 characters: safe in a
 * file name, a metric label, a log query and a shell, without quoting.
 */
export const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export const instanceSection = z
  .strictObject({
    /** Absent: the machine's host name and the first listener's port (`mail1-2525`). */
    id: z.string().regex(INSTANCE_ID, 'must be letters, digits, ".", "-" or "_" (at most 63), starting with a letter or digit').optional(),
  })
  .prefault({});

export type InstanceConfig = Loaded<typeof instanceSection, { id: string }>;

/** The id as configured, else `<host name>-<first listener's port>`, cut to a safe name. */
export function toInstance(parsed: z.output<typeof instanceSection>, firstPort: number, host: string = osHostname()): InstanceConfig {
  if (parsed.id !== undefined) return { id: parsed.id };
  const safeHost = host.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'mailtrail';
  const suffix = `-${firstPort}`;
  return { id: safeHost.slice(0, 63 - suffix.length) + suffix };
}
