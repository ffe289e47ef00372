/**
 * Reads a process's CPU time and memory from /proc (Linux). CPU is utime + stime (fields 14 and 15 of
 * /proc/<pid>/stat, in clock ticks); memory is VmRSS (now) and VmHWM (peak since start) from
 * /proc/<pid>/status. Elsewhere every reading is null and the bench prints "n/a".
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const MiB = 1024 * 1024;

/** Clock ticks per second (getconf CLK_TCK), 100 on every Linux we know of. */
function clockTicks() {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

const TICKS = clockTicks();

/** CPU milliseconds (user + system) used by `pid` so far, or null. */
export function cpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces: split after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
  } catch {
    return null;
  }
}

/**
 * CPU milliseconds of `pid` and its children (a supervisor and its workers, docs/fleet.md), or null.
 * The children are read from /proc/<pid>/task/<pid>/children.
 */
export function cpuMsTree(pid) {
  const own = cpuMs(pid);
  if (own === null) return null;
  let children = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // no such file: no children known
  }
  return children.reduce((sum, child) => sum + (cpuMsTree(child) ?? 0), own);
}

/** { rss, hwm } in bytes, or nulls. */
export function memory(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name) => {
      const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? Number(m[1]) * 1024 : null;
    };
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: null, hwm: null };
  }
}

/**
 * Samples VmRSS every `everyMs` until stopped; `stop()` returns the highest sample. Catches peaks
 * that VmHWM (lifetime peak) cannot attribute to one phase.
 */
export function sampleRss(pid, everyMs = 50) {
  let peak = memory(pid).rss ?? 0;
  const timer = setInterval(() => {
    const { rss } = memory(pid);
    if (rss !== null && rss > peak) peak = rss;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      const { rss } = memory(pid);
      if (rss !== null && rss > peak) peak = rss;
      return peak;
    },
  };
}

export function toMiB(bytes) {
  return bytes === null || bytes === undefined ? null : Math.round((bytes / MiB) * 10) / 10;
}
