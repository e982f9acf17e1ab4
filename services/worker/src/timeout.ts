/**
 * The worker's one way to bound a wait. Two shapes of the same thing: a promise raced against a
 * timer ({@link withTimeout}), and an abort signal for a call that takes one ({@link deadlineSignal}).
 */

/**
 * `promise`, or what `onTimeout` returns (or throws) when `ms` pass first. The timer is cleared
 * either way; `unref` lets the process exit while it runs (a watchdog). The promise keeps running
 * after a timeout: the caller decides what to do about it.
 */
export async function withTimeout<T, U>(promise: Promise<T>, ms: number, onTimeout: () => U | Promise<U>, opts: { readonly unref?: boolean } = {}): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<{ readonly timedOut: true }>((resolve) => {
    timer = setTimeout(() => resolve({ timedOut: true }), ms);
    if (opts.unref === true) timer.unref();
  });
  try {
    const first = await Promise.race([promise.then((value) => ({ timedOut: false as const, value })), timedOut]);
    return first.timedOut ? await onTimeout() : first.value;
  } finally {
    clearTimeout(timer);
  }
}

/** A signal that aborts after `ms`, or earlier with `also` (the caller's own signal). */
export function deadlineSignal(ms: number, also?: AbortSignal): { readonly signal: AbortSignal; readonly timedOut: () => boolean } {
  const timeout = AbortSignal.timeout(ms);
  return { signal: also === undefined ? timeout : AbortSignal.any([timeout, also]), timedOut: () => timeout.aborted };
}
