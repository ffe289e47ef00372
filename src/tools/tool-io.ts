/**
 * What a trail tool needs from its surroundings, passed in (never read from globals) so the tools run
 * the same from the CLI and from tests: streams, environment, working folder, whether stdout is a
 * terminal. Plus the buffered output every tool writes through.
 */
import { terminalText } from './terminal-text.js';
import { ERR } from '../error-codes.js';
export interface ToolIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdin: NodeJS.ReadableStream;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** stdout is a terminal (colours, unless NO_COLOR). */
  readonly isTty: boolean;
  /** Stops a long-running tool (`tail -f`); the CLI wires SIGINT/SIGTERM to it. */
  readonly signal?: AbortSignal;
}

/** Exit codes shared by the tools. */
export const EXIT = { ok: 0, notFound: 1, failed: 1, usage: 2 } as const;

/** A usage error: the message is printed with the command's usage, exit 2. */
export class UsageError extends Error {
  readonly code = ERR.USAGE;
}

/**
 * Buffered line output. One write per 64 KiB instead of one per line (a million-line `tail -n all`),
 * waiting for 'drain' when the reader is slow, and stopping quietly when the reader went away
 * (`mailtrail tail -n all | head`: EPIPE is not an error for a tool like this).
 */
export class LineOutput {
  #stream: NodeJS.WritableStream;
  #pending: string[] = [];
  #size = 0;
  #closed = false;
  static readonly FLUSH_AT = 64 * 1024;

  constructor(stream: NodeJS.WritableStream) {
    this.#stream = stream;
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') this.#closed = true;
    });
  }

  /** The reader went away: stop producing output. */
  get closed(): boolean {
    return this.#closed;
  }

  async line(text: string): Promise<void> {
    if (this.#closed) return;
    this.#pending.push(text);
    this.#size += text.length + 1;
    if (this.#size >= LineOutput.FLUSH_AT) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#pending.length === 0 || this.#closed) return;
    const text = this.#pending.join('\n') + '\n';
    this.#pending = [];
    this.#size = 0;
    const ok = this.#stream.write(text);
    if (!ok && !this.#closed) await new Promise<void>((resolve) => this.#stream.once('drain', resolve));
  }
}

/**
 * Writes `mailtrail <command>: message` to stderr, every line of it escaped for the terminal (a file
 * name, a key or a value from the trail may carry control characters; terminal-text.ts).
 */
export function complain(io: ToolIo, command: string, message: string): void {
  io.stderr.write(`mailtrail ${command}: ${message.split('\n').map(terminalText).join('\n')}\n`);
}

/** A file error as one readable line (ENOENT → "no such file: x"). */
export function describeFileError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return `no such file: ${e.path ?? '?'}`;
    case 'EACCES':
      return `permission denied: ${e.path ?? '?'}`;
    case 'EISDIR':
      return `is a folder, not a trail file: ${e.path ?? '?'}`;
    default:
      return e.message ?? String(err);
  }
}

export function isFileError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR' || code === ERR.NO_STDIN;
}
