/**
 * `log`: the operational log, not the audit trail (docs/config.md, "Keys": `log`, `log.level`).
 */
import { z } from 'zod';
import type { Loaded } from '../loaded.js';

export const logSection = z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).prefault({});

export type LogConfig = Loaded<typeof logSection>;
