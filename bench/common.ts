/** Shared benchmark helpers: timing on the GPU and the CPU, and a markdown table of results. */
import type { GpuContext } from '../src/gpu/context.js';

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
};

/**
 * Median wall time in ms of `fn` on the GPU: each run records the work, submits it and waits for
 * it (`await ctx.sync()`). Work pending before the call is finished first; `warmup` runs (which
 * also compile the pipelines) are not timed.
 */
export async function timeGpu(ctx: GpuContext, fn: () => void, reps = 5, warmup = 1): Promise<number> {
  await ctx.sync();
  for (let i = 0; i < warmup; i++) {
    fn();
    await ctx.sync();
  }
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    await ctx.sync();
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** Median wall time in ms of a synchronous CPU function (one untimed warm-up run). */
export function timeCpu(fn: () => void, reps = 3, warmup = 1): number {
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** One row of a benchmark table; values are printed as given (numbers with sensible rounding). */
export type Row = Record<string, string | number>;

const fmt = (v: string | number): string => {
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toPrecision(2);
};

/** Prints rows as a markdown table; columns are the union of the rows' keys in first-seen order. */
export function printTable(rows: readonly Row[], log: (s: string) => void = console.log): void {
  const cols: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  const cells = rows.map((r) => cols.map((c) => (r[c] === undefined ? '' : fmt(r[c]!))));
  const width = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (xs: string[]): string => `| ${xs.map((x, i) => x.padEnd(width[i]!)).join(' | ')} |`;
  log(line(cols));
  log(`|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of cells) log(line(row));
}

/** Multiply-adds counted as 2 flops: GFLOP/s of an M x K x N product done in `ms`. */
export const gflops = (m: number, k: number, n: number, ms: number, batch = 1): number =>
  (2 * batch * m * k * n) / (ms * 1e6);
