/**
 * What one worker of `workers.count` runs with (docs/fleet.md, "Several processes on one machine"):
 * the configuration with the parts one process owns made its own, since a data folder is locked by
 * one process (data-dir-lock.ts) and a hash chain has one writer.
 */
import { join } from 'node:path';
import { deepFreeze } from '../config/schema.js';
import type { Config } from '../config/types.js';

/** Worker `n` (1-based): instance `<id>.w<n>`, data folder `<dataDir>/w<n>`, trail `<audit.file>.w<n>`. */
export function workerConfig(config: Config, n: number): Config {
  const suffix = `.w${n}`;
  const { audit } = config;
  return deepFreeze({
    ...config,
    instance: { id: `${config.instance.id}${suffix}` },
    dataDir: join(config.dataDir, `w${n}`),
    audit: {
      ...audit,
      file: audit.file + suffix,
      checkpoint: { ...audit.checkpoint, file: audit.checkpoint.file === null ? null : audit.checkpoint.file + suffix },
    },
    localSink: config.localSink === null ? null : { ...config.localSink, dir: join(config.localSink.dir, `w${n}`) },
  });
}
