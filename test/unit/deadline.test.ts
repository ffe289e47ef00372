import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Deadline, stopReason } from '../../src/upstream/deadline.js';

const timeout = (): ReturnType<typeof stopReason> => stopReason('too slow', 'EDEADLINE');

describe('Deadline', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('stops at its time limit with the reason it was given, and tells each listener once', () => {
    const d = Deadline.after(100, timeout);
    const heard: string[] = [];
    d.onStop((r) => heard.push(r.code));
    vi.advanceTimersByTime(99);
    expect(d.stopped).toBe(false);
    vi.advanceTimersByTime(1);
    expect(d.stopped).toBe(true);
    expect(d.reason?.code).toBe('EDEADLINE');
    vi.advanceTimersByTime(1000);
    expect(heard).toEqual(['EDEADLINE']);
  });

  it('stops with its parent, carrying the parent’s reason', () => {
    const parent = Deadline.after(10_000, timeout);
    const child = Deadline.after(5_000, timeout, parent);
    parent.stop(stopReason('shutting down', 'ESHUTDOWN'));
    expect(child.reason?.code).toBe('ESHUTDOWN');
  });

  it('keeps the first reason when stopped twice', () => {
    const d = Deadline.after(10_000, timeout);
    d.stop(stopReason('a', 'ESHUTDOWN'));
    d.stop(stopReason('b', 'EDEADLINE'));
    expect(d.reason?.code).toBe('ESHUTDOWN');
  });

  it('calls a listener at once when it is added after the stop', () => {
    const d = Deadline.after(10, timeout);
    vi.advanceTimersByTime(10);
    const heard = vi.fn();
    d.onStop(heard);
    expect(heard).toHaveBeenCalledOnce();
  });

  it('never calls a detached listener', () => {
    const d = Deadline.after(10, timeout);
    const heard = vi.fn();
    const detach = d.onStop(heard);
    detach();
    vi.advanceTimersByTime(10);
    expect(heard).not.toHaveBeenCalled();
  });

  it('after dispose, neither its timer nor its parent stops it, and the parent keeps no listener of it', () => {
    const parent = Deadline.after(10_000, timeout);
    const child = Deadline.after(10, timeout, parent);
    child.dispose();
    vi.advanceTimersByTime(20);
    parent.stop(stopReason('shutting down', 'ESHUTDOWN'));
    expect(child.stopped).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('follows an AbortSignal, keeping a coded reason and naming any other EDEADLINE', () => {
    const coded = new AbortController();
    const a = Deadline.fromAbortSignal(coded.signal);
    coded.abort(stopReason('shutting down', 'ESHUTDOWN'));
    expect(a.reason?.code).toBe('ESHUTDOWN');
    const plain = new AbortController();
    const b = Deadline.fromAbortSignal(plain.signal);
    plain.abort();
    expect(b.reason?.code).toBe('EDEADLINE');
  });

  it('is stopped from the start when made from an AbortSignal that already fired', () => {
    const c = new AbortController();
    c.abort(stopReason('shutting down', 'ESHUTDOWN'));
    expect(Deadline.fromAbortSignal(c.signal).stopped).toBe(true);
  });
});
