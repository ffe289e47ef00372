/**
 * Operations on one key run one after the other, in the order they were asked for; different keys
 * run in parallel. The spool store serializes the changes of one entry with it, the queue manager
 * everything it does to one entry (an attempt, an operator's action, the expiry).
 */
export class SerialByKey {
  /** The last operation queued for each key, settled either way. */
  readonly #last = new Map<string, Promise<unknown>>();

  /** Runs `op` after every operation of `key` queued before it (each gets its own result or error). */
  run<T>(key: string, op: () => Promise<T>): Promise<T> {
    const before = this.#last.get(key) ?? Promise.resolve();
    const run = before.then(op);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#last.set(key, settled);
    void settled.then(() => {
      if (this.#last.get(key) === settled) this.#last.delete(key);
    });
    return run;
  }

  /** Something is running or queued for `key`. */
  busy(key: string): boolean {
    return this.#last.has(key);
  }

  /** Resolves once everything queued so far has settled. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.#last.values()]);
  }
}
