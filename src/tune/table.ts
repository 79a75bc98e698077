/**
 * A kernel table: for one adapter and one library version, the chosen candidate of each tuned
 * operation per shape class, with the timings it was chosen from. It is what the tuner makes,
 * what is stored (store.ts) and what a page can ship and import (`tuning: table`).
 */
import { adapterKey, adapterName, type AdapterIdentity } from '../gpu/adapter.js';
import type { GpuContext } from '../gpu/context.js';
import { LIBRARY_VERSION } from '../version.js';

export const TABLE_FORMAT = 'efficienttam-webgpu kernel table';

export interface TableEntry {
  /** the operation (a kernel family's op: 'matmul', 'conv2d', 'attention', 'softmax', 'layernorm') */
  op: string;
  /** the shape class (the family's classOf) */
  class: string;
  /** the call that was timed for this class (the largest of the model's calls of the class) */
  call: unknown;
  /** how many of the model's calls fall in this class */
  calls: number;
  /** median ms per call of each candidate timed (absent: not timed) */
  ms: Record<string, number>;
  /** the candidate used for the class */
  chosen: string;
  /** the family's default for this adapter kind */
  fallback: string;
  /** why `chosen`: 'fastest', 'default: within 3% of the fastest', 'default: not timed (budget)' */
  why: string;
}

export interface TuningTable {
  format: typeof TABLE_FORMAT;
  /** the library version that made it */
  library: string;
  adapter: AdapterIdentity;
  /** adapterKey(adapter, library): a table applies to devices with the same key only */
  key: string;
  /** ISO date */
  created: string;
  /** the tuning's time budget and the time it took (compiles included), ms */
  budgetMs: number;
  elapsedMs: number;
  /** every class was timed (false: the budget ran out, the rest use defaults) */
  complete: boolean;
  entries: TableEntry[];
}

/** The key a table must have to be used on this context. */
export function contextKey(ctx: GpuContext): string {
  return adapterKey(ctx.adapter, LIBRARY_VERSION);
}

/**
 * Why this table cannot be used on this context ('' when it can): made by another library version,
 * for another adapter, or not a table at all.
 */
export function tableMismatch(ctx: GpuContext, t: unknown): string {
  const table = t as Partial<TuningTable> | null;
  if (!table || typeof table !== 'object' || table.format !== TABLE_FORMAT || !Array.isArray(table.entries)) {
    return 'not a kernel table (export one with etam tune --json, or exportTable)';
  }
  if (table.library !== LIBRARY_VERSION) return `made by library version ${table.library}, this is ${LIBRARY_VERSION}`;
  if (table.key !== contextKey(ctx)) {
    return `made for another adapter (${table.adapter ? adapterName(table.adapter) : '?'}; this is ${adapterName(ctx.adapter)})`;
  }
  return '';
}

/** Puts a table's choices into the context's kernel table (after checking it fits: tableMismatch). */
export function applyTable(ctx: GpuContext, table: TuningTable, source: string): void {
  ctx.kernels.clear(source);
  for (const e of table.entries) ctx.kernels.set(e.op, e.class, e.chosen);
}

/** A table as JSON text (to ship with a page, or to keep). */
export function exportTable(table: TuningTable): string {
  return JSON.stringify(table, null, 1);
}

/** A table from JSON text (checked for its format only; `tableMismatch` says whether it fits a context). */
export function importTable(json: string): TuningTable {
  let t: unknown;
  try {
    t = JSON.parse(json);
  } catch (e) {
    throw new Error(`importTable: not JSON: ${(e as Error).message}`);
  }
  const table = t as Partial<TuningTable>;
  if (!table || table.format !== TABLE_FORMAT || !Array.isArray(table.entries)) {
    throw new Error(`importTable: not a kernel table (format '${String(table?.format)}')`);
  }
  return table as TuningTable;
}
