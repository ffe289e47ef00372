/**
 * Which files a tool reads when none are named: the audit file of the configuration (`--config`,
 * else MAILTRAIL_CONFIG, else the embedded default's `./data/audit.log`), and for `report` and
 * `lookup` also its rotated predecessors next to it (`audit.log.1`, `audit.log.2.gz`,
 * `audit.log-20261125.gz`, `audit.1.log`...), oldest first.
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { loadTrailConfig } from '../config/load.js';
import type { TrailConfig } from '../config/schema.js';
import { ConfigError, formatProblem } from '../config/config-error.js';
import { UsageError, type ToolIo } from './tool-io.js';

/**
 * The part of the configuration the tools use to find and read the trail (`audit`, `dataDir`); the
 * rest of the file is not read, so its secrets need not be set. A problem becomes a usage error.
 */
export function toolConfig(file: string | undefined, io: ToolIo): TrailConfig {
  try {
    return loadTrailConfig({ file: file ?? null, env: io.env, cwd: io.cwd });
  } catch (err) {
    if (err instanceof ConfigError) {
      throw new UsageError(`cannot read the configuration to find the trail (name the file instead):\n  ${err.problems.map(formatProblem).join('\n  ')}`);
    }
    throw err;
  }
}

/** The configured audit file; refuses `-` (the trail goes to stdout: there is no file to read). */
export function configuredTrail(config: TrailConfig): string {
  if (config.audit.file === '-') throw new UsageError('audit.file is "-" (the trail goes to stdout): name the trail file to read');
  return config.audit.file;
}

/**
 * A suffix that rotation adds: a number (logrotate `.1`) or a date/time stamp (logrotate `-20261125`,
 * built-in rotation's `.2026-11-25T101502.123Z`), optionally `.gz`. Tight on purpose, so that another
 * file sharing the prefix (a compression still in progress, `.gz.partial`; a checkpoint copy; an
 * editor backup) is not read as trail.
 */
const ROTATION_STAMP = /^[.-](?:(\d{1,6})|(\d{4}-?\d{2}-?\d{2}(?:[T_-]?\d{2}(?::?\d{2}){0,2})?(?:\.\d+)?Z?))(\.gz)?$/;

interface Rotated {
  readonly path: string;
  /** logrotate's number: higher is older. */
  readonly number: number | null;
  /** A date/time stamp: sorts by time as text. */
  readonly stamp: string | null;
  readonly gz: boolean;
}

/**
 * `file` and its rotated siblings, oldest first, `file` last: numbered ones from the highest number,
 * then stamped ones by stamp. When a rotated file exists both plain and compressed (compression just
 * finished, the plain one not yet removed) only the compressed one is read. A missing `file` is left
 * out when rotated siblings exist (just rotated, nothing written yet).
 */
export function withRotated(file: string): string[] {
  const dir = dirname(file);
  const name = basename(file);
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [file];
  }
  const rotated = entries.map((entry) => rotationOf(entry, name, join(dir, entry))).filter((r): r is Rotated => r !== null && isFile(r.path));
  const compressed = new Set(rotated.filter((r) => r.gz).map((r) => r.path));
  const files = rotated
    .filter((r) => r.gz || !compressed.has(`${r.path}.gz`))
    .sort(olderFirst)
    .map((r) => r.path);
  if (files.length === 0 || isFile(file)) files.push(file);
  return files;
}

function rotationOf(entry: string, name: string, path: string): Rotated | null {
  if (entry === name) return null;
  // audit.log.1, audit.log.2.gz, audit.log-20261125.gz, audit.log.2026-11-25T101502.123Z.gz
  let m = entry.startsWith(name) ? ROTATION_STAMP.exec(entry.slice(name.length)) : null;
  if (!m) {
    // audit.1.log, audit.2026-11-25.log.gz (pino-roll and similar): the stamp before the extension.
    const ext = extname(name);
    const stem = ext ? name.slice(0, -ext.length) : '';
    const middle = entry.replace(/\.gz$/, '');
    if (!ext || !entry.startsWith(stem) || !middle.endsWith(ext)) return null;
    m = ROTATION_STAMP.exec(middle.slice(stem.length, -ext.length) + (entry.endsWith('.gz') ? '.gz' : ''));
    if (!m) return null;
  }
  return { path, number: m[1] === undefined ? null : Number(m[1]), stamp: m[2] ?? null, gz: m[3] !== undefined };
}

function olderFirst(a: Rotated, b: Rotated): number {
  if (a.number !== null && b.number !== null) return b.number - a.number;
  if (a.number !== null) return -1;
  if (b.number !== null) return 1;
  return (a.stamp ?? '') < (b.stamp ?? '') ? -1 : (a.stamp ?? '') > (b.stamp ?? '') ? 1 : 0;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
