import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../../logger.js';
import { incidentKey, type Incident } from './incidents.js';

const VERSION = 1;

/**
 * Open incidents survive a restart in a small JSON file in the data folder. Operators fix credentials
 * by editing the config and restarting: without this, the fixed process would not know an alert was
 * open and the resolve would never be sent (and a still-broken restart would fire again at once).
 * Written whole on each change (rare: fires and resolves), through a temp file and rename, so a
 * crash leaves the old or the new version, never half of one.
 */
export class IncidentStore {
  readonly file: string;
  #log: Logger;

  constructor(file: string, log: Logger) {
    this.file = file;
    this.#log = log;
  }

  load(): Incident[] {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#log.warn({ err, file: this.file }, 'open alerts not read');
      return [];
    }
    try {
      const parsed = JSON.parse(text) as { v?: number; open?: unknown[] };
      if (parsed.v !== VERSION || !Array.isArray(parsed.open)) return [];
      return parsed.open.filter(isStored).map((s) => ({ ...s, announcedBy: s.announcedBy ?? null, fleetClaim: s.fleetClaim ?? false, key: incidentKey(s) }));
    } catch (err) {
      this.#log.warn({ err, file: this.file }, 'open alerts file is not valid JSON; ignored');
      return [];
    }
  }

  save(open: readonly Incident[]): void {
    const stored = open.map(({ key: _key, ...rest }) => rest);
    const tmp = `${this.file}.tmp`;
    try {
      writeFileSync(tmp, `${JSON.stringify({ v: VERSION, open: stored }, null, 2)}\n`, { mode: 0o600 });
      renameSync(tmp, this.file);
    } catch (err) {
      this.#log.warn({ err, file: this.file }, 'open alerts not saved');
    }
  }
}

/** Files written before `announcedBy` and `fleetClaim` existed lack them: announced here, alone. */
type Stored = Omit<Incident, 'key' | 'announcedBy' | 'fleetClaim'> & { announcedBy?: string | null; fleetClaim?: boolean };

function isStored(value: unknown): value is Stored {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.rule === 'string' &&
    typeof v.upstream === 'string' &&
    (v.class === null || typeof v.class === 'string') &&
    typeof v.openedAt === 'number' &&
    Array.isArray(v.sinks) &&
    v.sinks.every((s) => typeof s === 'string') &&
    typeof v.notified === 'boolean' &&
    (v.firedAt === null || typeof v.firedAt === 'number') &&
    typeof v.summary === 'string' &&
    (v.shownClass === null || typeof v.shownClass === 'string') &&
    (v.announcedBy === undefined || v.announcedBy === null || typeof v.announcedBy === 'string') &&
    (v.fleetClaim === undefined || typeof v.fleetClaim === 'boolean')
  );
}
