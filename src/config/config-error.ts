/**
 * The one error configuration loading throws. It carries every problem found, each with the key path
 * it concerns, so an operator fixes the whole file in one round instead of one typo per restart.
 * Messages never contain configured values: a value may be a password or a URL with credentials.
 */
import type { z } from 'zod';
import { ERR } from '../error-codes.js';

export interface ConfigProblem {
  /** Key path such as `upstreams[0].url`, an environment variable name, or "" for the whole file. */
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends Error {
  /** Stable code: match on this, not on the class, in case two copies of the module are loaded. */
  readonly code = ERR.CONFIG;
  readonly problems: readonly ConfigProblem[];
  /** The config file the problems are in, or null for the embedded default / environment. */
  readonly source: string | null;

  constructor(problems: readonly ConfigProblem[], source: string | null = null) {
    super(formatMessage(problems, source));
    this.name = 'ConfigError';
    this.problems = problems;
    this.source = source;
  }
}

/** `upstreams[0].url` from `['upstreams', 0, 'url']`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? String(segment) : `.${String(segment)}`;
  }
  return out;
}

/** One problem as its message line: `path: message`, or just the message for the whole file. */
export function formatProblem(problem: ConfigProblem): string {
  return problem.path === '' ? problem.message : `${problem.path}: ${problem.message}`;
}

function formatMessage(problems: readonly ConfigProblem[], source: string | null): string {
  const where = source === null ? '' : ` in ${source}`;
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  return [`invalid configuration${where} (${count}):`, ...problems.map(formatProblem)].join('\n');
}

/**
 * Per-parse zod error map: short, value-free messages. Zod's own wording is fine but long
 * ("Invalid input: expected number, received string"); a config file reads better with "expected a number".
 */
export function issueMessage(issue: z.core.$ZodRawIssue): string {
  if (issue.input === undefined && issue.code !== 'unrecognized_keys') return 'required';
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
    case 'too_small':
      return tooSmall(issue.origin, Number(issue.minimum), issue.inclusive !== false);
    case 'too_big':
      return tooBig(issue.origin, Number(issue.maximum), issue.inclusive !== false);
    case 'invalid_value':
      return `must be one of: ${issue.values.map(String).join(', ')}`;
    case 'unrecognized_keys':
      return 'unknown key';
    default:
      return 'not a valid value';
  }
}

/** Zod issues as problems; an unknown-keys issue becomes one problem per key, at that key's path. */
export function problemsFromIssues(issues: readonly z.core.$ZodIssue[]): ConfigProblem[] {
  return issues.flatMap((issue): ConfigProblem[] =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({ path: formatPath([...issue.path, key]), message: 'unknown key' }))
      : [{ path: formatPath(issue.path), message: issue.message }],
  );
}

const TYPE_NAMES: Readonly<Record<string, string>> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
};

function tooSmall(origin: string, minimum: number, inclusive: boolean): string {
  if (origin === 'array') return `needs at least ${minimum} ${minimum === 1 ? 'entry' : 'entries'}`;
  if (origin === 'string') return minimum <= 1 ? 'must not be empty' : `needs at least ${minimum} characters`;
  return inclusive ? `must be at least ${minimum}` : `must be more than ${minimum}`;
}

function tooBig(origin: string, maximum: number, inclusive: boolean): string {
  if (origin === 'array') return `allows at most ${maximum} entries`;
  if (origin === 'string') return `allows at most ${maximum} characters`;
  return inclusive ? `must be at most ${maximum}` : `must be less than ${maximum}`;
}
