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

/** How long work may hold the event loop before `drive` yields, and how many slices at most (so a fast machine yields too). */
export const SLICE_MS = 8;
export const SLICES_PER_TURN = 64;

/** Runs a generator of work slices (each `yield` ends a slice) to its return value, in one go. */
export function driveSync<T>(work: Generator<void, T>): T {
  for (;;) {
    const r = work.next();
    if (r.done) return r.value;
  }
}

/**
 * Runs a generator of work slices to its return value, yielding to the event loop whenever
 * SLICE_MS have passed or SLICES_PER_TURN slices have run, and rejecting with an AbortError as
 * soon as `signal` is aborted (checked before every slice).
 */
export async function drive<T>(work: Generator<void, T>, source: string, signal?: AbortSignal): Promise<T> {
  let turnStart = performance.now();
  let slices = 0;
  try {
    for (;;) {
      if (signal?.aborted) throw abortError(source, signal);
      const r = work.next();
      if (r.done) return r.value;
      if (++slices >= SLICES_PER_TURN || performance.now() - turnStart >= SLICE_MS) {
        await nextTurn();
        turnStart = performance.now();
        slices = 0;
      }
    }
  } finally {
    work.return(undefined as T); // runs the work's finally blocks when it was abandoned
  }
}
