/**
 * A deadline on a promise: the shared shape of the webhook's ingest deadline,
 * /health's database deadline and the operator reads' query deadline.
 */

/**
 * `work`, or a rejection with `late()` once `ms` have passed; the timer is
 * cleared either way. `afterLate` runs once that rejection is the answer: the
 * place to cancel the work, whose own rejection then comes too late to be it.
 */
export async function withinMs<T>(
  work: PromiseLike<T>,
  ms: number,
  late: () => Error,
  afterLate?: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(late());
          afterLate?.();
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
