/**
 * Where the config comes from: a YAML file (given, or named by MAILTRAIL_CONFIG) with `${ENV}`
 * references resolved, or the embedded default when there is no file. Every problem (unreadable
 * file, YAML syntax, unset variable, schema) ends up in one ConfigError.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';
import { ConfigError, formatPath, type ConfigProblem } from './config-error.js';
import { embeddedDefault } from './embedded-default.js';
import { validateConfig, validateQueueSection, validateTrailSection, type QueueToolConfig, type TrailConfig } from './schema.js';
import { withoutSecrets } from './secrets.js';
import type { Config } from './types.js';

export interface LoadConfigOptions {
  /** Config file path (relative to `cwd`); null/undefined = MAILTRAIL_CONFIG, else the embedded default. */
  readonly file?: string | null;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

export interface ParseConfigOptions {
  readonly env: NodeJS.ProcessEnv;
  /** Folder that relative paths in the config resolve against (the config file's folder). */
  readonly baseDir: string;
  /** Named in the error message; null when the object did not come from a file. */
  readonly source?: string | null;
}

/** `$${` is a literal `${`; otherwise `${NAME}` or `${NAME:-fallback}` (fallback when unset or empty, as in sh). */
const REFERENCE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Loads, validates and freezes the configuration. Throws ConfigError listing every problem. */
export function loadConfig(opts: LoadConfigOptions): Config {
  const file = configFile(opts);
  if (file === null) return embeddedDefault(opts.env, opts.cwd);
  const fullPath = resolve(opts.cwd, file);
  return parseConfig(readYaml(fullPath), { env: opts.env, baseDir: dirname(fullPath), source: fullPath });
}

/** The config file to read: the one given, else MAILTRAIL_CONFIG; null = the embedded default. */
export function configFile(opts: Pick<LoadConfigOptions, 'file' | 'env'>): string | null {
  return opts.file ?? nonEmpty(opts.env.MAILTRAIL_CONFIG) ?? null;
}

/**
 * The `audit` and `dataDir` keys only, for the trail's readers (tail, report, lookup): nothing else in
 * the file is interpolated or checked, so `${UPSTREAM_PASS}` need not be set to read the trail.
 * Without a file, the embedded default's.
 */
export function loadTrailConfig(opts: LoadConfigOptions): TrailConfig {
  const file = configFile(opts);
  if (file === null) {
    const config = embeddedDefault(opts.env, opts.cwd);
    return { audit: config.audit, dataDir: config.dataDir };
  }
  const fullPath = resolve(opts.cwd, file);
  const raw = readYaml(fullPath);
  const doc = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as { audit?: unknown; dataDir?: unknown }) : {};
  return checked({ audit: doc.audit, dataDir: doc.dataDir }, opts.env, fullPath, (value) => validateTrailSection(value, dirname(fullPath)));
}

/**
 * The `dataDir` and `spool.dir` keys only, for `mailtrail queue` (like loadTrailConfig: no other key
 * is interpolated or checked). Without a file, the embedded default's.
 */
export function loadQueueConfig(opts: LoadConfigOptions): QueueToolConfig {
  const file = configFile(opts);
  if (file === null) {
    const config = embeddedDefault(opts.env, opts.cwd);
    return { dataDir: config.dataDir, spoolDir: config.spool.dir };
  }
  const fullPath = resolve(opts.cwd, file);
  const raw = readYaml(fullPath);
  const doc = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as { dataDir?: unknown; spool?: unknown }) : {};
  const spool = doc.spool !== null && typeof doc.spool === 'object' && !Array.isArray(doc.spool) ? { dir: (doc.spool as { dir?: unknown }).dir } : undefined;
  return checked({ dataDir: doc.dataDir, spool }, opts.env, fullPath, (value) => validateQueueSection(value, dirname(fullPath)));
}

/** Validates an already-parsed config object (as from YAML), resolving `${ENV}` references first. */
export function parseConfig(raw: unknown, opts: ParseConfigOptions): Config {
  return checked(raw, opts.env, opts.source ?? null, (value) => validateConfig(value, opts.baseDir));
}

/**
 * `${ENV}` references resolved, then `validate`d; every problem of both steps in one ConfigError.
 * A value whose variable is unset was replaced by "": the schema's complaint about it would be noise.
 */
function checked<T>(
  raw: unknown,
  env: NodeJS.ProcessEnv,
  source: string | null,
  validate: (value: unknown) => { readonly ok: true; readonly config: T } | { readonly ok: false; readonly problems: ConfigProblem[] },
): T {
  const interpolated = interpolateEnv(raw, env);
  const result = validate(interpolated.value);
  const schemaProblems = result.ok ? [] : result.problems.filter((p) => !coveredBy(p, interpolated.problems));
  const problems = [...interpolated.problems, ...schemaProblems];
  if (problems.length > 0 || !result.ok) throw new ConfigError(problems, source);
  return result.config;
}

/**
 * A copy of `config` that is safe to print or log: every secret the configuration can hold (user
 * passwords and hashes, upstream and alert-mail passwords, the HTTP token, the HMAC key, webhook
 * secrets, header values and URL paths) replaced by "[redacted]", by the one list in secrets.ts.
 * File paths (certificate keys, the checkpoint signing key) are shown: they are not the keys.
 */
export function describeConfig(config: Config): object {
  return withoutSecrets(config) as object;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

// ---------------------------------------------------------------------------------------------------
// File and YAML

function readYaml(fullPath: string): unknown {
  let text: string;
  try {
    text = readFileSync(fullPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new ConfigError([{ path: '', message: `cannot read the file (${code})` }], fullPath);
  }
  const doc = YAML.parseDocument(text);
  if (doc.errors.length > 0) {
    // One syntax mistake makes the parser report dozens of follow-on errors: the first is the one
    // to fix, the rest usually vanish with it.
    const rest = doc.errors.length - 1;
    const problems = [yamlProblem(doc.errors[0]!)];
    if (rest > 0) problems.push({ path: '', message: `YAML: ${rest} more syntax error(s) after this one, most likely caused by it` });
    throw new ConfigError(problems, fullPath);
  }
  if (doc.contents === null) throw new ConfigError([{ path: '', message: 'the file is empty' }], fullPath);
  try {
    return doc.toJS();
  } catch (err) {
    // toJS refuses alias bombs ("billion laughs"); its message carries no values.
    throw new ConfigError([{ path: '', message: `YAML: ${firstLine((err as Error).message)}` }], fullPath);
  }
}

/**
 * yaml's messages end with a copy of the offending source line, which may hold a password: keep only
 * the first line ("Map keys must be unique at line 3, column 1").
 */
function yamlProblem(err: Error): ConfigProblem {
  return { path: '', message: `YAML: ${firstLine(err.message).replace(/:$/, '')}` };
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? '';
}

// ---------------------------------------------------------------------------------------------------
// Environment interpolation

interface Interpolated {
  readonly value: unknown;
  readonly problems: ConfigProblem[];
}

/** Resolves `${NAME}` in every string value (not in keys). Unset variables are problems naming the variable. */
export function interpolateEnv(raw: unknown, env: NodeJS.ProcessEnv): Interpolated {
  const problems: ConfigProblem[] = [];
  const value = interpolateValue(raw, env, [], problems);
  return { value, problems };
}

function interpolateValue(value: unknown, env: NodeJS.ProcessEnv, path: PropertyKey[], problems: ConfigProblem[]): unknown {
  if (typeof value === 'string') {
    return interpolateString(value, env, (name) => problems.push({ path: formatPath(path), message: `environment variable ${name} is not set` }));
  }
  if (Array.isArray(value)) return value.map((item, i) => interpolateValue(item, env, [...path, i], problems));
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).map(([k, v]) => [k, interpolateValue(v, env, [...path, k], problems)]);
    return Object.fromEntries(entries);
  }
  return value;
}

function interpolateString(text: string, env: NodeJS.ProcessEnv, onUnset: (name: string) => void): string {
  return text.replace(REFERENCE, (_match: string, name: string | undefined, fallback: string | undefined) => {
    if (name === undefined) return '${';
    const value = env[name];
    if (value !== undefined && value !== '') return value;
    if (fallback !== undefined) return fallback;
    if (value === undefined) onUnset(name);
    return '';
  });
}

/** True when `problem` is at or below the path of a problem already reported. */
function coveredBy(problem: ConfigProblem, earlier: readonly ConfigProblem[]): boolean {
  return earlier.some((e) => problem.path === e.path || problem.path.startsWith(`${e.path}.`) || problem.path.startsWith(`${e.path}[`));
}
