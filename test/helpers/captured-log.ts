import { createLogger, type Logger } from '../../src/logger.js';

/** The operational log as parsed lines, to check what an operator would see. */
export function capturedLog(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}
