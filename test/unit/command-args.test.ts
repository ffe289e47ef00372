import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { closest, parseCommandArgs, readCommandLine, shellWord } from '../../src/tools/command-args.js';
import { UsageError } from '../../src/tools/tool-io.js';

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  lines: { type: 'string', short: 'n' },
  follow: { type: 'boolean', short: 'f' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The UsageError message parseCommandArgs throws for `args`. */
function problem(args: string[], rules: Parameters<typeof parseCommandArgs>[2] = {}): string {
  try {
    parseCommandArgs(args, OPTIONS, rules);
  } catch (err) {
    if (err instanceof UsageError) return err.message;
    throw err;
  }
  throw new Error(`no usage problem in ${JSON.stringify(args)}`);
}

function capture(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  return { stream, text: () => text };
}

describe('command arguments', () => {
  it('parses options, grouped short flags and arguments as parseArgs does', () => {
    const { values, positionals } = parseCommandArgs(['-fn5', '--config=x.yaml', 'a', '--', '--b'], OPTIONS);
    expect(values).toEqual({ follow: true, lines: '5', config: 'x.yaml' });
    expect(positionals).toEqual(['a', '--b']);
  });

  it('names an unknown option and the option it probably was', () => {
    expect(problem(['--confg', 'x'])).toBe('unknown option --confg; did you mean --config?');
    expect(problem(['--fllow'])).toBe('unknown option --fllow; did you mean --follow?');
    expect(problem(['--verbose'])).toBe('unknown option --verbose');
    expect(problem(['-x'])).toBe('unknown option -x');
  });

  it('names an option given without its value', () => {
    expect(problem(['--config'])).toBe('--config needs a value');
    expect(problem(['-c'])).toBe('-c needs a value');
  });

  it('does not take the next option as a value', () => {
    expect(problem(['--config', '--follow'])).toBe('--config needs a value, and --follow looks like an option (if it is the value, write --config=--follow)');
    expect(parseCommandArgs(['--config=--follow'], OPTIONS).values.config).toBe('--follow');
    expect(parseCommandArgs(['--config', '-'], OPTIONS).values.config).toBe('-');
  });

  it('names a value given to an option that takes none', () => {
    expect(problem(['--follow=yes'])).toBe('--follow takes no value');
  });

  it('names an option given twice instead of keeping the last', () => {
    expect(problem(['--config', 'a.yaml', '-c', 'b.yaml'])).toBe('--config is given twice');
  });

  it('names a long option written with one dash (which would read as -c onfig)', () => {
    expect(problem(['-config', 'x.yaml'])).toBe('-config: write long options with two dashes: --config');
  });

  it('names an argument the command does not take, with the option it was probably meant for', () => {
    expect(problem(['my.yaml'], { max: 0, meant: 'config' })).toBe('unexpected argument my.yaml; did you mean --config my.yaml?');
    expect(problem(['a', 'b'], { max: 1 })).toBe('unexpected argument b');
    expect(problem(['my config.yaml'], { max: 0, meant: 'config' })).toBe(`unexpected argument 'my config.yaml'; did you mean --config 'my config.yaml'?`);
  });

  it('can refuse an argument without printing it back', () => {
    expect(problem(['Secret-1'], { max: 0, instead: 'read from standard input' })).toBe('read from standard input');
  });

  it('answers --help with the usage on stdout (exit 0) and a mistake with one line and the usage on stderr (exit 2)', () => {
    const spec = { name: 'serve', usage: 'usage: mailtrail serve [--config FILE]', options: OPTIONS, args: { max: 0, meant: 'config' } };
    const help = { out: capture(), err: capture() };
    expect(readCommandLine(spec, ['--help'], help.out.stream, help.err.stream)).toBe(0);
    expect([help.out.text(), help.err.text()]).toEqual(['usage: mailtrail serve [--config FILE]\n', '']);

    const bad = { out: capture(), err: capture() };
    expect(readCommandLine(spec, ['my.yaml'], bad.out.stream, bad.err.stream)).toBe(2);
    expect([bad.out.text(), bad.err.text()]).toEqual([
      '',
      'mailtrail serve: unexpected argument my.yaml; did you mean --config my.yaml?\n\nusage: mailtrail serve [--config FILE]\n',
    ]);

    const parsed = readCommandLine(spec, ['-c', 'x.yaml'], bad.out.stream, bad.err.stream);
    expect(typeof parsed === 'number' ? parsed : parsed.values).toEqual({ config: 'x.yaml' });
  });

  it('suggests only close words, counting a swap of neighbours as one edit', () => {
    expect(closest('tial', ['tail', 'report'])).toBe('tail');
    expect(closest('serv', ['serve', 'verify'])).toBe('serve');
    expect(closest('start', ['serve', 'tail', 'report'])).toBeNull();
  });

  it('quotes an argument for the shell only when it needs it', () => {
    expect(shellWord('conf/my.yaml')).toBe('conf/my.yaml');
    expect(shellWord("it's here.yaml")).toBe(`'it'\\''s here.yaml'`);
  });
});
