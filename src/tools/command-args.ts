/**
 * The arguments of every mailtrail command, read one way. node:util's parseArgs does the parsing;
 * this names each mistake in one line (a misspelt option and what it probably was, an option without
 * its value, an option given twice, an argument the command does not take), so that every command
 * answers bad usage alike: that line, the command's usage, exit 2. A command never goes on with
 * something it was not asked for: `mailtrail serve my.yaml` does not start the embedded default.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EXIT, UsageError } from './tool-io.js';
import { terminalText } from './terminal-text.js';

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

/** What a command does with arguments that are not options. */
export interface ArgumentRules {
  /** How many it takes; absent = any number. */
  readonly max?: number;
  /** The option a stray argument was probably meant for: "did you mean --config my.yaml?". */
  readonly meant?: string;
  /**
   * Said instead of naming a stray argument, for commands where it may be a secret
   * (`hash-password Secret1` must not print Secret1 back).
   */
  readonly instead?: string;
}

/** A command's name, usage text and options, for readCommandLine. */
export interface CommandSpec<T extends OptionSpecs> {
  readonly name: string;
  readonly usage: string;
  /** Include `help: { type: 'boolean', short: 'h' }`: readCommandLine answers it. */
  readonly options: T;
  readonly args?: ArgumentRules;
}

/** parseArgs (strict) with `options`; every mistake becomes a UsageError naming it in one line. */
export function parseCommandArgs<T extends OptionSpecs>(args: readonly string[], options: T, rules: ArgumentRules = {}) {
  const problem = optionProblem(args, options);
  if (problem) throw new UsageError(problem);
  const parsed = strictParse(args, options);
  const stray = rules.max === undefined ? undefined : parsed.positionals[rules.max];
  if (stray !== undefined) throw new UsageError(strayProblem(stray, rules));
  return parsed;
}

/**
 * A command's arguments, with `--help` and bad usage answered here: a number is the exit code to
 * return at once (0 after printing the usage for --help; 2 after naming the problem and the usage).
 */
export function readCommandLine<T extends OptionSpecs>(spec: CommandSpec<T>, args: readonly string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream) {
  let parsed: ReturnType<typeof parseCommandArgs<T>>;
  try {
    parsed = parseCommandArgs(args, spec.options, spec.args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    return explainUsage(err, spec.name, e.message, spec.usage);
  }
  if ((parsed.values as { help?: unknown }).help === true) {
    out.write(`${spec.usage}\n`);
    return EXIT.ok;
  }
  return parsed;
}

/**
 * Bad usage, said the one way every command says it: `mailtrail <command>: <problem>`, the usage. The
 * problem quotes what was typed, escaped for the terminal (terminal-text.ts).
 */
export function explainUsage(err: NodeJS.WritableStream, command: string, problem: string, usage: string): number {
  err.write(`mailtrail ${command}: ${terminalText(problem)}\n\n${usage}\n`);
  return EXIT.usage;
}

/** The candidate closest to `word` by edit distance, when it is close enough to be a typo. */
export function closest(word: string, candidates: readonly string[]): string | null {
  let best: { name: string; distance: number } | null = null;
  for (const name of candidates) {
    const distance = editDistance(word, name);
    if (!best || distance < best.distance) best = { name, distance };
  }
  // Two edits for a long word ("confg", "publik-key"), one for a short one ("tial", "serv").
  return best && best.distance <= (word.length > 4 ? 2 : 1) ? best.name : null;
}

/** `arg` as one shell word: as it is when that is safe, else single-quoted. */
export function shellWord(arg: string): string {
  return /^[\w./@:+=,%-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

function strictParse<T extends OptionSpecs>(args: readonly string[], options: T) {
  try {
    return parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (err) {
    // Whatever optionProblem does not name: Node's own first sentence (no stack trace).
    throw new UsageError(err instanceof Error ? (err.message.split(/\.\s|\n/)[0] ?? err.message) : String(err));
  }
}

/** The first mistake among the options, in words; null when there is none. */
function optionProblem(args: readonly string[], options: OptionSpecs): string | null {
  const longNames = Object.keys(options);
  const end = args.indexOf('--');
  for (const arg of end === -1 ? args : args.slice(0, end)) {
    // `-config x` would read as `-c onfig`: a long option written with one dash.
    const name = /^-([^-=][^=]+)/.exec(arg)?.[1];
    if (name && longNames.includes(name)) return `${arg}: write long options with two dashes: --${name}`;
  }
  const { tokens } = parseArgs({ args: [...args], options, allowPositionals: true, strict: false, tokens: true });
  const given = new Set<string>();
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const spec = options[token.name];
    if (!spec) {
      const guess = token.rawName.startsWith('--') ? closest(token.name, longNames) : null;
      return `unknown option ${token.rawName}` + (guess ? `; did you mean --${guess}?` : '');
    }
    if (spec.type === 'boolean') {
      if (token.value !== undefined) return `${token.rawName} takes no value`;
      continue;
    }
    if (token.value === undefined) return `${token.rawName} needs a value`;
    if (!token.inlineValue && token.value.length > 1 && token.value.startsWith('-')) {
      return `${token.rawName} needs a value, and ${token.value} looks like an option (if it is the value, write --${token.name}=${token.value})`;
    }
    if (!spec.multiple && given.has(token.name)) return `--${token.name} is given twice`;
    given.add(token.name);
  }
  return null;
}

function strayProblem(arg: string, rules: ArgumentRules): string {
  if (rules.instead) return rules.instead;
  const word = shellWord(arg);
  return `unexpected argument ${word}` + (rules.meant ? `; did you mean --${rules.meant} ${word}?` : '');
}

/** Edit distance counting an insertion, a deletion, a substitution or a swap of neighbours as one. */
function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, before[j - 2]! + 1);
    }
    before = previous;
    previous = row;
  }
  return previous[b.length]!;
}
