/**
 * The spool's built-in alert rules as the alert engine's timer judges them: the oldest waiting message
 * against its threshold, a queue that grows without getting back down, and free space against twice
 * spool.minFreeSpace. Time and the spool's figures are given, so each verdict is exact.
 */
import { describe, expect, it } from 'vitest';
import { SpoolWatch, type SpoolAlertSource, type SpoolVerdict } from '../../src/observe/alerts/spool-alerts.js';

const MIN = 60_000;
const MIB = 1024 * 1024;

function watch(over: { waiting?: () => number; oldestAt?: () => number | null; free?: () => number | null; minFreeSpace?: number } = {}) {
  const source: SpoolAlertSource = {
    counts: () => ({ queued: over.waiting?.() ?? 0, delivering: 0, held: 5, oldestWaitingAt: over.oldestAt?.() ?? null }),
    freeBytes: () => (over.free ? over.free() : 10_000 * MIB),
    minFreeSpace: over.minFreeSpace ?? 256 * MIB,
  };
  return new SpoolWatch(source, { oldest: 60 * MIN, growing: 30 * MIN, growingMin: 100 });
}

function verdict(verdicts: SpoolVerdict[], rule: SpoolVerdict['rule']): SpoolVerdict {
  return verdicts.find((v) => v.rule === rule)!;
}

describe('the spool alerts', () => {
  it('spool-oldest fires once the oldest waiting message is older than the threshold, and clears when it is gone', () => {
    const t0 = Date.parse('2026-03-01T10:00:00Z');
    let oldest: number | null = t0;
    const w = watch({ oldestAt: () => oldest });
    expect(verdict(w.check(t0 + 59 * MIN), 'spool-oldest')).toMatchObject({ open: false });
    expect(verdict(w.check(t0 + 61 * MIN), 'spool-oldest')).toEqual({
      rule: 'spool-oldest',
      open: true,
      summary: 'the oldest message in the spool has waited 1h 1m for delivery (threshold 1h): mailtrail queue list shows why',
    });
    oldest = null;
    expect(verdict(w.check(t0 + 62 * MIN), 'spool-oldest')).toEqual({ rule: 'spool-oldest', open: false, reason: 'no message waits in the spool' });
  });

  it('spool-growing fires when the queue grew over the whole window without getting back down, with at least 100 waiting', () => {
    const t0 = Date.parse('2026-03-01T10:00:00Z');
    let waiting = 150;
    const w = watch({ waiting: () => waiting });
    // One check a minute for half an hour, the queue rising by 10 each time.
    for (let m = 0; m <= 30; m++) {
      waiting = 150 + 10 * m;
      const v = verdict(w.check(t0 + m * MIN), 'spool-growing');
      expect(v.open, `minute ${m}`).toBe(m === 30);
    }
    expect(verdict(w.check(t0 + 31 * MIN), 'spool-growing')).toMatchObject({
      open: true,
      summary: expect.stringMatching(/^the spool grew from 160 to 450 waiting messages over 30m/),
    });
    // Back down to where it stood half an hour ago: resolved.
    waiting = 160;
    expect(verdict(w.check(t0 + 32 * MIN), 'spool-growing')).toMatchObject({ open: false });
  });

  it('spool-growing stays quiet for a queue that comes and goes, and for a small one that only grows', () => {
    const t0 = Date.parse('2026-03-01T10:00:00Z');
    let waiting = 0;
    const churn = watch({ waiting: () => waiting });
    for (let m = 0; m <= 60; m++) {
      waiting = 200 + (m % 3) * 40;
      expect(verdict(churn.check(t0 + m * MIN), 'spool-growing').open, `minute ${m}`).toBe(false);
    }
    const small = watch({ waiting: () => waiting });
    for (let m = 0; m <= 60; m++) {
      waiting = m;
      expect(verdict(small.check(t0 + m * MIN), 'spool-growing').open).toBe(false);
    }
  });

  it('spool-disk-low fires below twice spool.minFreeSpace, says when the spool refuses, and is off without a reserve', () => {
    let free = 400 * MIB;
    const w = watch({ free: () => free });
    expect(verdict(w.check(0), 'spool-disk-low')).toEqual({
      rule: 'spool-disk-low',
      open: true,
      summary: "the spool's filesystem has 400 MiB free, less than twice spool.minFreeSpace (256 MiB): at 256 MiB new messages for the spool are refused",
    });
    free = 100 * MIB;
    expect(verdict(w.check(0), 'spool-disk-low')).toMatchObject({ open: true, summary: expect.stringContaining('refused with 452 4.3.1') });
    free = 600 * MIB;
    expect(verdict(w.check(0), 'spool-disk-low')).toMatchObject({ open: false });
    expect(verdict(watch({ free: () => 1, minFreeSpace: 0 }).check(0), 'spool-disk-low')).toMatchObject({ open: false });
  });
});
