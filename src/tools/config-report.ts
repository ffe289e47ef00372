/**
 * A configuration that does not load, told the one way every command tells it (check-config, serve,
 * check-upstream): the file, then one problem per line with its key path, on stderr; exit 1.
 */
import { ConfigError } from '../config/config-error.js';
import { EXIT } from './tool-io.js';
import { terminalText } from './terminal-text.js';

/** Writes `err` when it is a ConfigError and returns exit 1; rethrows anything else. */
export function reportConfigError(err: unknown, stderr: NodeJS.WritableStream): number {
  if (!(err instanceof ConfigError)) throw err;
  // ConfigError's message is the header line (with the file) followed by one problem per line.
  // A key, a file name or a quoted value may hold control characters: escaped for the terminal.
  const [header, ...lines] = err.message.split('\n').map(terminalText);
  stderr.write(`mailtrail: ${header}\n${lines.map((l) => `  ${l}\n`).join('')}`);
  return EXIT.failed;
}
