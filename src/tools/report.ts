/**
 * `mailtrail report [FILE...] [--since 1h] [--until T] [--by KEY] [--top N] [--json]`: the summary of
 * a trail (report-builder.ts has the figures and their definitions). One streaming pass, constant
 * memory: a million-record trail is an ordinary input.
 */
import { statSync } from 'node:fs';
import { colorWanted } from './format.js';
import { GROUP_BY, ReportBuilder, type GroupBy } from './report-builder.js';
import { renderReport } from './report-render.js';
import { timeRange, type TimeRange } from './time-range.js';
import { configuredTrail, toolConfig, withRotated } from './trail-files.js';
import { ReadProblems, readTrail, STDIN } from './trail-reader.js';
import { LineOutput, UsageError, complain, type ToolIo } from './tool-io.js';
import { parseCommandArgs } from './command-args.js';
import { jsonForTerminal } from './terminal-text.js';

export const REPORT_USAGE = `Usage: mailtrail report [FILE...] [options]

Summarises the trail: totals per outcome, success rate, failure classes, error groups, latency per
upstream, traffic per hour, top domains. FILE: the configured audit file and its rotated files
("-" = stdin; gzip files are read as they are).

  --since WHEN        only records from then on: a duration back from now (30m, 1h, 2d, 1w)
                      or a UTC time (2026-11-25, 2026-11-25T10:00)
  --until WHEN        only records before then (same forms)
  --by KEY            totals per upstream, sender-domain, recipient-domain, client, user or instance
  --top N             rows in the top-domain lists (default 10)
  --json              the figures as one JSON object
  -c, --config FILE   configuration that names the audit file (default: MAILTRAIL_CONFIG, else ./data/audit.log)`;

const OPTIONS = {
  since: { type: 'string' },
  until: { type: 'string' },
  by: { type: 'string' },
  top: { type: 'string' },
  json: { type: 'boolean' },
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function reportCommand(args: readonly string[], io: ToolIo, now: number = Date.now()): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  if (values.help) {
    io.stdout.write(REPORT_USAGE + '\n');
    return 0;
  }
  const by = parseBy(values.by);
  const top = parseTop(values.top);
  const range = timeRange(values.since, values.until, now);
  const files = positionals.length > 0 ? positionals : rotatedSince(withRotated(configuredTrail(toolConfig(values.config, io))), range);
  if (files.filter((f) => f === STDIN).length > 1) throw new UsageError('standard input ("-") can be read once');

  const builder = new ReportBuilder({ range, by, top });
  const problems = new ReadProblems();
  for await (const entry of readTrail(files, { problems, stdin: io.stdin })) builder.add(entry.record);
  const report = builder.result();

  const out = new LineOutput(io.stdout);
  if (values.json) {
    await out.line(jsonForTerminal(JSON.stringify({ files, skipped: { torn: problems.torn, malformed: problems.malformed }, ...report }, null, 2)));
  } else {
    for (const line of renderReport(report, files, { color: colorWanted(io.env, io.isTty) })) await out.line(line);
  }
  await out.flush();
  const summary = problems.summary();
  if (summary) complain(io, 'report', summary);
  return 0;
}

function parseBy(value: string | undefined): GroupBy | null {
  if (value === undefined) return null;
  if (!(GROUP_BY as readonly string[]).includes(value)) throw new UsageError(`--by is one of ${GROUP_BY.join(', ')}; not "${value}"`);
  return value as GroupBy;
}

function parseTop(value: string | undefined): number {
  if (value === undefined) return 10;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`--top wants a positive number, not "${value}"`);
  return Number(value);
}

/**
 * Leaves out rotated files last written before `--since`: every record in them is older than their
 * modification time. (Only for the files found beside the configured trail; the current file is
 * always read. Compressing a file only makes its time later, never earlier.)
 */
function rotatedSince(files: string[], range: TimeRange): string[] {
  if (range.since === null) return files;
  const since = Date.parse(range.since);
  return files.filter((f, i) => {
    if (i === files.length - 1) return true;
    try {
      return statSync(f).mtimeMs >= since;
    } catch {
      return false;
    }
  });
}
