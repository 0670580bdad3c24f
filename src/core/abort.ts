// Waiting on the pipeline's backpressure without outliving a stop.

/**
 * Resolves when `p` settles or when `signal` aborts, whichever comes first; rejects if `p` rejects first. A source
 * waiting for room in the queue must not hang a stop whose drain never frees that room.
 */
export function untilSettledOrAborted(p: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
