/**
 * Getting a context ready for a model: the kernel table (stored, imported, freshly tuned, or the
 * defaults), the f16 settings, and the model's pipelines compiled ahead, asynchronously.
 *
 *   tuning 'auto' (default): the table stored for this adapter and library version if there is
 *     one and it covers the model's shape classes (nothing is timed); else the candidates are
 *     timed on the model's calls of the classes it lacks (tuner.ts), and the table, merged with
 *     the stored one, is stored for the next load. On a software adapter (lavapipe, SwiftShader)
 *     timing takes a minute of compiles and the defaults are the kernels tuned for it by hand, so
 *     nothing is timed there unless `timeSoftware` is set (`etam tune` sets it);
 *   tuning 'off': each family's defaults (the lavapipe-shaped kernels on software adapters,
 *     GPU-shaped ones elsewhere);
 *   tuning = a table (a page can ship one, see exportTable): used when it was made for this
 *     adapter and library version, else the defaults (the report says why).
 *
 * The model's calls are found by a dry run of its parts (`workload`, run under ctx.trace: nothing
 * is computed, every tuned call is recorded and every pipeline asked for is listed), and the
 * pipelines the chosen kernels need are then compiled with createComputePipelineAsync, so that in
 * a page the first frame neither compiles nor blocks the main thread.
 */
import { adapterName } from '../gpu/adapter.js';
import type { GpuContext } from '../gpu/context.js';
import { applyTable, contextKey, tableMismatch, type TuningTable } from './table.js';
import { defaultStore, type TableStore } from './store.js';
import { FAMILIES } from './families.js';
import { tune, type RecordedCall, type TuneProgress } from './tuner.js';

/** The shape class of a recorded call ('' for an unknown operation). */
const classOf = (c: RecordedCall): string => FAMILIES.find((f) => f.op === c.op)?.classOf(c.call as never) ?? '';

export type Tuning = 'auto' | 'off' | TuningTable;

export interface KernelOptions {
  /** see the file comment; default 'auto' */
  tuning?: Tuning;
  /** where tables are kept: default the platform's (a cache file in Node, IndexedDB in a browser); null: none */
  store?: TableStore | null;
  /** time the candidates again even when a table is stored (tuning 'auto') */
  force?: boolean;
  /** the tuner's time budget, ms (default 5 s on a GPU, 60 s on a software adapter) */
  budgetMs?: number;
  /** time the candidates on a software adapter too (tuning 'auto'; default false: its defaults) */
  timeSoftware?: boolean;
  /** compile the model's pipelines now, asynchronously (default true) */
  compile?: boolean;
  onProgress?: (p: PrepareProgress) => void;
}

export type PrepareProgress =
  | { stage: 'tune'; tune: TuneProgress; adapter: string; software: boolean }
  | { stage: 'compile'; done: number; total: number };

export interface PrepareReport {
  /** where the kernel choices came from */
  source: 'defaults' | 'stored table' | 'tuned' | 'imported table';
  /** why the defaults, when a table was asked for */
  note: string;
  /** the table in use (null with the defaults) */
  table: TuningTable | null;
  /** shape classes whose candidates were timed now (0 when a stored or given table was used) */
  timed: number;
  /** pipelines compiled ahead */
  compiled: number;
  /** time spent tuning and compiling, ms */
  tuneMs: number;
  compileMs: number;
  /** the store and whether the new table was saved there */
  store: string;
  saved: boolean;
}

/** The calls `workload` makes, from a dry run. */
export function recordCalls(ctx: GpuContext, workload: () => void): RecordedCall[] {
  const calls: RecordedCall[] = [];
  const prev = ctx.kernels.recorder;
  ctx.kernels.recorder = (op, call) => calls.push({ op, call });
  try {
    ctx.trace(workload);
  } finally {
    ctx.kernels.recorder = prev;
  }
  return calls;
}

/** Chooses the kernels of `workload` (a model's parts, see the file comment) and compiles them. */
export async function prepareKernels(ctx: GpuContext, workload: () => void, opts: KernelOptions = {}): Promise<PrepareReport> {
  const tuning = opts.tuning ?? 'auto';
  const store = opts.store === undefined ? await defaultStore() : opts.store;
  const report: PrepareReport = {
    source: 'defaults', note: '', table: null, timed: 0, compiled: 0, tuneMs: 0, compileMs: 0,
    store: store?.where ?? 'none', saved: false,
  };
  const t0 = performance.now();
  if (tuning === 'off') {
    ctx.kernels.clear('defaults');
  } else if (typeof tuning === 'object') {
    const why = tableMismatch(ctx, tuning);
    if (why) {
      ctx.kernels.clear('defaults');
      report.note = `the given table is not used: ${why}`;
    } else {
      applyTable(ctx, tuning, 'imported table');
      Object.assign(report, { source: 'imported table', table: tuning });
    }
  } else {
    const key = contextKey(ctx);
    const found = opts.force || !store ? null : await store.load(key);
    const stored = found && !tableMismatch(ctx, found) ? found : null;
    ctx.kernels.clear('defaults');
    const calls = recordCalls(ctx, workload);
    // the stored table may have been made for another model: time only the classes it lacks
    const known = new Set(stored?.entries.map((e) => `${e.op}\u0000${e.class}`));
    const missing = calls.filter((c) => !known.has(`${c.op}\u0000${classOf(c)}`));
    if (stored && missing.length === 0) {
      applyTable(ctx, stored, 'stored table');
      Object.assign(report, { source: 'stored table', table: stored });
    } else if (ctx.adapter.software && !opts.timeSoftware) {
      if (stored) {
        applyTable(ctx, stored, 'stored table');
        Object.assign(report, { source: 'stored table', table: stored });
      }
      report.note = `a software adapter (${ctx.adapter.software}): ${stored ? 'classes the stored table lacks use' : 'using'} the defaults ` +
        '(its hand-tuned kernels); timing the candidates here takes a minute (etam tune, or timeSoftware: true)';
    } else {
      const name = adapterName(ctx.adapter);
      const fresh = await tune(ctx, missing, {
        budgetMs: opts.budgetMs,
        onProgress: (p) => opts.onProgress?.({ stage: 'tune', tune: p, adapter: name, software: !!ctx.adapter.software }),
      });
      const table: TuningTable = stored
        ? { ...fresh, entries: [...stored.entries, ...fresh.entries], complete: stored.complete && fresh.complete }
        : fresh;
      applyTable(ctx, table, 'tuned');
      Object.assign(report, { source: 'tuned', table, timed: fresh.entries.filter((e) => Object.keys(e.ms).length > 0).length });
      if (store) {
        try {
          await store.save(table);
          report.saved = true;
        } catch (e) {
          report.note = `the table could not be stored in ${store.where}: ${(e as Error).message}`;
        }
      }
    }
  }
  report.tuneMs = performance.now() - t0;
  if (opts.compile ?? true) {
    const t1 = performance.now();
    const list = ctx.trace(workload);
    await ctx.compile(list, (done, total) => opts.onProgress?.({ stage: 'compile', done, total }));
    report.compiled = list.length;
    report.compileMs = performance.now() - t1;
  }
  return report;
}
