/**
 * Cancellation and yielding for long CPU work (converting a checkpoint, reading weights): the
 * work runs in slices, and between slices it gives the event loop a turn, so a page stays
 * responsive and an AbortSignal fired meanwhile takes effect.
 */

/** The error a cancelled load rejects with (a DOMException named AbortError, as fetch's). */
export function abortError(source: string, signal?: AbortSignal): Error {
  const reason = signal?.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  return new DOMException(`Loading ${source} was aborted${reason !== undefined && !(reason instanceof Error) ? ` (${String(reason)})` : ''}`, 'AbortError');
}

/** Resolves on a later turn of the event loop (a macrotask: timers, I/O and abort events run first). */
export const nextTurn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

/** How long a slice of work may hold the event loop before `drive` yields. */
export const SLICE_MS = 8;

/** Runs a generator of work slices (each `yield` ends a slice) to its return value, in one go. */
export function driveSync<T>(work: Generator<void, T>): T {
  for (;;) {
    const r = work.next();
    if (r.done) return r.value;
  }
}

/**
 * Runs a generator of work slices to its return value, yielding to the event loop whenever
 * SLICE_MS have passed, and rejecting with an AbortError as soon as `signal` is aborted.
 */
export async function drive<T>(work: Generator<void, T>, source: string, signal?: AbortSignal): Promise<T> {
  let sliceStart = performance.now();
  try {
    for (;;) {
      if (signal?.aborted) throw abortError(source, signal);
      const r = work.next();
      if (r.done) return r.value;
      if (performance.now() - sliceStart >= SLICE_MS) {
        await nextTurn();
        sliceStart = performance.now();
      }
    }
  } finally {
    work.return(undefined as T); // runs the work's finally blocks when it was abandoned
  }
}
