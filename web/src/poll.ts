/** Loads a view's data now and again every `everyMs` while the view is shown (and the tab visible). */
import { useEffect, useState } from 'preact/hooks';
import { describe } from './api.js';

export function usePoll<T>(load: () => Promise<T>, everyMs: number, deps: readonly unknown[]): { data: T | null; error: string | null; reload: () => void } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let gone = false;
    const run = (): void => {
      if (document.visibilityState === 'hidden') return;
      load().then(
        (d) => {
          if (gone) return;
          setData(d);
          setError(null);
        },
        (e: unknown) => !gone && setError(describe(e)),
      );
    };
    run();
    const timer = window.setInterval(run, everyMs);
    return () => {
      gone = true;
      window.clearInterval(timer);
    };
  }, [...deps, tick, everyMs]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}
