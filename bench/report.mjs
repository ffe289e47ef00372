/**
 * Prints the bench results as Markdown tables: readable in a terminal, and pasted as they are into
 * the README's "Benchmark" section.
 */

const num = (n, d = 0) =>
  n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const pct = (r) => (r === null || r === undefined || !Number.isFinite(r) ? 'n/a' : `${(r * 100).toFixed(1)} %`);
const mark = (ok) => (ok === null ? '' : ok ? ' ✓' : ' ✗');

/** The goal that applies to a throughput row, or null. */
function ratioGoal(row, targets) {
  if (row.sessions !== 20) return null;
  if (row.size >= 100 * 1024) return targets.ratio100k;
  return row.reuse ? targets.ratio1kReused : targets.ratio1kNew;
}

export function formatReport(r, targets) {
  const lines = [];
  const m = r.machine;
  lines.push(`mailtrail bench, ${r.startedAt.slice(0, 10)}: Node ${m.node}, ${m.cpus} × ${m.cpuModel ?? 'CPU'}, load average at start ${m.loadavg.join(' ')}`);
  lines.push(
    `sink: ${r.tools?.sink}; load: ${r.tools?.load}; latency: ${r.tools?.latency}; mailtrail with ${r.features?.join(', ')}` +
      (r.nodeArgs?.length ? ` (node ${r.nodeArgs.join(' ')})` : '') +
      (r.profiled ? ' (under --cpu-prof: slower than usual)' : ''),
  );
  lines.push('');
  lines.push('| messages/s | direct to sink | through mailtrail | ratio | goal | mailtrail CPU-ms/msg |');
  lines.push('|---|---:|---:|---:|---:|---:|');
  for (const row of r.throughput ?? []) {
    const goal = ratioGoal(row, targets);
    const ok = goal === null || row.ratio === null ? null : row.ratio >= goal;
    const cpuGoal = row.size === 1024 ? targets.cpuMsPer1k : null;
    const cpuOk = cpuGoal === null || row.cpuMsPerMessage === null ? null : row.cpuMsPerMessage <= cpuGoal;
    const err = row.through.error ? ` (error: ${row.through.error.split('\n')[0]})` : '';
    lines.push(
      `| ${row.label} | ${num(row.direct.msgPerSec)} | ${num(row.through.msgPerSec)}${err} | ${pct(row.ratio)}${mark(ok)} | ${goal === null ? '' : '≥ ' + pct(goal)} | ${num(row.cpuMsPerMessage, 2)}${mark(cpuOk)} |`,
    );
  }
  for (const row of r.workers ?? []) {
    const err = row.through.error ? ` (error: ${row.through.error.split('\n')[0]})` : '';
    lines.push(
      `| *${row.label}* | ${num(row.direct.msgPerSec)} | ${num(row.through.msgPerSec)}${err} | ${pct(row.ratio)} | | ${num(row.cpuMsPerMessage, 2)} |`,
    );
  }
  for (const row of r.floor ?? []) {
    lines.push(
      `| *floor:* ${row.label} (no relay, no trail) | ${num(row.direct.msgPerSec)} | *${num(row.bare.msgPerSec)}* | *${pct(row.ratio)}* | | *${num(row.cpuMsPerMessage, 2)}* |`,
    );
  }
  lines.push('');
  lines.push('| one client, 1 KiB, ms per message | direct p50 | direct p99 | mailtrail p50 | mailtrail p99 | added p50 | added p99 | goal |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const [key, name] of [
    ['newConnection', 'new connection'],
    ['reused', 'reused connection'],
  ]) {
    const l = r.latency?.[key];
    if (!l) continue;
    const ok = Number.isFinite(l.addedMs.p50) ? l.addedMs.p50 <= targets.addedLatencyMs : null;
    lines.push(
      `| ${name} | ${num(l.direct.p50, 3)} | ${num(l.direct.p99, 3)} | ${num(l.through.p50, 3)} | ${num(l.through.p99, 3)} | +${num(l.addedMs.p50, 3)}${mark(ok)} | +${num(l.addedMs.p99, 3)} | ≤ +${targets.addedLatencyMs} |`,
    );
  }
  lines.push('');
  const mem = r.memory ?? {};
  const big = mem.bigMessage;
  const idle = mem.idleConnections;
  lines.push('| mailtrail memory (RSS, MiB) | measured | goal |');
  lines.push('|---|---:|---:|');
  lines.push(`| after start, idle | ${num(mem.idleRssMiB, 1)} | |`);
  lines.push(
    `| peak under the load above (sampled every 50 ms; VmHWM ${num(mem.hwmAfterLoadMiB, 1)}) | ${num(mem.peakRssUnderLoadMiB, 1)}${mark(mem.peakRssUnderLoadMiB == null ? null : mem.peakRssUnderLoadMiB <= targets.rssUnderLoadMiB)} | ≤ ${targets.rssUnderLoadMiB} |`,
  );
  if (big) {
    const ok = big.ok && big.addedMiB !== null ? big.addedMiB <= targets.rss50MBAddedMiB : null;
    lines.push(
      `| one 50 MiB message: before ${num(big.beforeMiB, 1)}, peak ${num(big.peakMiB, 1)}, after ${num(big.afterMiB, 1)}${big.ok ? '' : ' (FAILED: ' + big.error + ')'}: added at peak | +${num(big.addedMiB, 1)}${mark(ok)} | ≤ +${targets.rss50MBAddedMiB} |`,
    );
  }
  if (idle) {
    const ok = idle.withIdleMiB === null ? null : idle.withIdleMiB <= targets.rss1000IdleMiB && idle.greeted === idle.connections;
    lines.push(
      `| 1,000 idle client connections (${idle.greeted} greeted, ${idle.refused} refused; ${num(idle.afterMiB, 1)} after closing) | ${num(idle.withIdleMiB, 1)}${mark(ok)} | ≤ ${targets.rss1000IdleMiB} |`,
    );
  }
  lines.push('');
  if (r.trail) {
    const verify = r.trail.verify ? `; verify: exit ${r.trail.verify.exitCode} (${r.trail.verify.output})` : '';
    lines.push(`trail: ${num(r.trail.relayRecords)} relay records, ${num(r.trail.accepted)} accepted, ${r.trail.unparsable} unparsable lines${verify}`);
  }
  if (r.http)
    lines.push(`http: ${r.http.error ? 'error ' + r.http.error : `/healthz ${r.http.healthz}, /metrics ${r.http.metrics} (${r.http.metricLines} samples)`}`);
  lines.push(`whole run: ${r.elapsedSeconds} s`);
  return lines.join('\n');
}

export function printReport(results, targets) {
  process.stdout.write(formatReport(results, targets) + '\n');
}
