/** The error `fn` throws, or null when it returns (to assert on a code without try/catch in a test). */
export function thrown(fn: () => unknown): (Error & { code?: string }) | null {
  try {
    fn();
    return null;
  } catch (err) {
    return err as Error & { code?: string };
  }
}
