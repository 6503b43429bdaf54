/**
 * What must happen even when the bench is interrupted: stop the servers it
 * started and drop the databases it created. try/finally covers errors;
 * Ctrl-C ends a Deno process without running finally blocks, so the entry
 * point runs these on SIGINT/SIGTERM before exiting.
 */
const pending = new Set<() => Promise<unknown>>();

/** Registers `fn`; the returned function unregisters it (call it once `fn` ran normally). */
export function registerCleanup(fn: () => Promise<unknown>): () => void {
  pending.add(fn);
  return () => pending.delete(fn);
}

/** Runs every registered cleanup, newest first (a service stops before its database drops). */
export async function runCleanups(): Promise<void> {
  const fns = [...pending].reverse();
  pending.clear();
  for (const fn of fns) {
    try {
      await fn();
    } catch {
      // Best effort: keep cleaning the rest.
    }
  }
}
