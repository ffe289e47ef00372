/**
 * The operator's tools as CLI commands: the trail's `tail`, `report`, `lookup`, and the spool's
 * `queue`. Builds the tools' surroundings from
 * the process (streams, environment, terminal, signals) and turns their errors into exit codes:
 * 0 done, 1 nothing found / unreadable file, 2 usage.
 */
import { explainUsage } from './command-args.js';
import { lookupCommand, LOOKUP_USAGE } from './lookup.js';
import { reportCommand, REPORT_USAGE } from './report.js';
import { queueCommand, QUEUE_USAGE } from './queue.js';
import { tailCommand, TAIL_USAGE } from './tail.js';
import { complain, describeFileError, EXIT, isFileError, UsageError, type ToolIo } from './tool-io.js';

const COMMANDS = {
  tail: { run: tailCommand, usage: TAIL_USAGE },
  report: { run: reportCommand, usage: REPORT_USAGE },
  lookup: { run: lookupCommand, usage: LOOKUP_USAGE },
  queue: { run: queueCommand, usage: QUEUE_USAGE },
} as const;

export type TrailCommand = keyof typeof COMMANDS;

/** Runs a tool with `io` (tests pass their own streams); never throws for usage or file errors. */
export async function runTrailCommand(name: TrailCommand, args: readonly string[], io: ToolIo): Promise<number> {
  const command = COMMANDS[name];
  try {
    return await command.run(args, io);
  } catch (err) {
    if (err instanceof UsageError) return explainUsage(io.stderr, name, err.message, command.usage);
    if (isFileError(err)) {
      complain(io, name, describeFileError(err));
      return EXIT.failed;
    }
    throw err;
  }
}

/**
 * The process as a ToolIo. Ctrl-C stops a tool that listens (`tail -f` finishes its output and exits
 * 0); any other tool is ended at once, as without a handler.
 */
export function processIo(): ToolIo {
  const stop = new AbortController();
  let listening = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (listening) stop.abort();
    else process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
    isTty: process.stdout.isTTY === true,
    get signal() {
      listening = true;
      return stop.signal;
    },
  };
}
