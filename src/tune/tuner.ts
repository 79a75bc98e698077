/**
 * The tuner: times the candidate kernels of each tuned operation on the calls a model makes, on
 * this adapter, and picks the fastest per shape class.
 *
 *   calls (recorded while tracing the model: ctx.trace + ctx.kernels.recorder, see prepare.ts)
 *     -> classes: the family's classOf; one representative call per class (its largest)
 *     -> classes in order of the model's work in them (flops x calls), largest first
 *     -> per class: compile every eligible candidate (in parallel, createComputePipelineAsync),
 *        then time them in interleaved rounds (each timing a batch of calls between two waits
 *        for the GPU, long enough that the wait does not dominate), median per candidate
 *     -> the fastest; the family's default is kept unless another is 3% faster or more, as a median
 *        of 3 batches or more (timings on a busy machine jitter: a table should not flip on noise)
 *
 * The budget bounds the whole run, compiles included: a few seconds on a GPU (pipelines compile in
 * milliseconds there, kernels run in microseconds). On a software adapter (lavapipe, SwiftShader)
 * one compile takes a second or more and one call up to seconds, so the default budget there is a
 * minute, and classes left when it runs out keep their default (the table says which).
 */
import { adapterName } from '../gpu/adapter.js';
import type { GpuContext } from '../gpu/context.js';
import type { KernelFamily } from '../kernels/choice.js';
import { LIBRARY_VERSION } from '../version.js';
import { FAMILIES } from './families.js';
import { contextKey, TABLE_FORMAT, type TableEntry, type TuningTable } from './table.js';

/** A tuned operation's call, as recorded. */
export interface RecordedCall {
  op: string;
  call: unknown;
}

export interface TuneProgress {
  /** classes done (timed or skipped) and in all */
  done: number;
  total: number;
  op: string;
  class: string;
  /** what is happening: compiling the class's candidates, timing them, or the class's result */
  phase: 'compile' | 'time' | 'chosen' | 'skipped';
  /** the result of the class (phase 'chosen' / 'skipped') */
  entry?: TableEntry;
  elapsedMs: number;
  budgetMs: number;
}

export interface TuneOptions {
  /** time limit of the whole run, compiles included (default: 5 s on a GPU, 60 s on a software adapter) */
  budgetMs?: number;
  /** timed batches per candidate (default 5) */
  rounds?: number;
  /** the kernel families (default: all of the library's, families.ts) */
  families?: readonly KernelFamily<never>[];
  onProgress?: (p: TuneProgress) => void;
}

/** Default budget: a few seconds on a GPU; software adapters compile and run far slower. */
export function defaultBudgetMs(ctx: GpuContext): number {
  return ctx.adapter.software ? 60_000 : 5_000;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
};

/** A candidate is taken over the default only when this much faster (timing noise). */
const MARGIN = 0.97;
/** ... and only when timed in this many batches (one batch on a busy machine can be anything). */
const MIN_BATCHES = 3;

interface ClassWork {
  family: KernelFamily<unknown>;
  cls: string;
  call: unknown;
  calls: number;
  flops: number;
}

/** Groups recorded calls by family and shape class, largest work first. */
export function classesOf(calls: readonly RecordedCall[], families: readonly KernelFamily<never>[] = FAMILIES): ClassWork[] {
  const byKey = new Map<string, ClassWork>();
  for (const { op, call } of calls) {
    const family = families.find((f) => f.op === op) as KernelFamily<unknown> | undefined;
    if (!family) continue;
    const cls = family.classOf(call);
    const key = `${op}\u0000${cls}`;
    const f = family.flops(call);
    const w = byKey.get(key);
    if (!w) byKey.set(key, { family, cls, call, calls: 1, flops: f });
    else {
      w.calls++;
      if (f > family.flops(w.call)) w.call = call;
      w.flops += f;
    }
  }
  return [...byKey.values()].sort((a, b) => b.flops - a.flops);
}

export interface TimingOptions {
  /** timed batches per candidate (default 5) */
  rounds?: number;
  /** performance.now() past which no new candidate or round starts (the first candidate is always timed) */
  deadline?: number;
  /** a candidate timed in every round even when it is far behind (the default) */
  keep?: string;
  /** ms of calls per timed batch (default 2): the wait for the GPU is spread over the batch */
  batchMs?: number;
  onCompiled?: () => void;
}

/**
 * Median ms per call of each candidate on `call` (inputs from the family's `instance`): compiled
 * ahead (createComputePipelineAsync, in parallel), one untimed call each (first-use costs; on
 * lavapipe the compile itself happens there), then interleaved rounds of timed batches. A
 * candidate 2x slower than the best after its first batch is not timed further (on a software
 * adapter a GPU-shaped kernel can be 10x slower, and its rounds would spend the budget).
 * `cut`: the deadline stopped it before every candidate was timed.
 */
export async function timeCandidates<C>(ctx: GpuContext, family: KernelFamily<C>, call: C, cands: readonly string[],
  o: TimingOptions = {}): Promise<{ ms: Record<string, number>; batches: Record<string, number>; cut: boolean }> {
  const rounds = o.rounds ?? 5, deadline = o.deadline ?? Infinity, batchMs = o.batchMs ?? 2;
  const inst = family.instance(ctx, call);
  const ms: Record<string, number> = {};
  const batches: Record<string, number> = {};
  let cut = false;
  try {
    await ctx.compile(ctx.trace(() => { for (const c of cands) inst.run(c); }));
    o.onCompiled?.();
    const inner: Record<string, number> = {};
    const times: Record<string, number[]> = {};
    const timed: string[] = [];
    for (const c of cands) {
      if (performance.now() >= deadline && timed.length > 0) { cut = true; break; }
      await ctx.sync();
      let s = performance.now();
      inst.run(c);
      await ctx.sync();
      const one = performance.now() - s;
      inner[c] = Math.max(1, Math.min(50, Math.floor(batchMs / Math.max(one, 1e-3))));
      s = performance.now();
      for (let i = 0; i < inner[c]!; i++) inst.run(c);
      await ctx.sync();
      times[c] = [(performance.now() - s) / inner[c]!];
      timed.push(c);
    }
    const best0 = Math.min(...timed.map((c) => times[c]![0]!));
    const contenders = timed.filter((c) => times[c]![0]! <= 2 * best0 || c === o.keep);
    for (let r = 1; r < rounds && performance.now() < deadline; r++) {
      for (const c of contenders) {
        const s = performance.now();
        for (let i = 0; i < inner[c]!; i++) inst.run(c);
        await ctx.sync();
        times[c]!.push((performance.now() - s) / inner[c]!);
      }
    }
    for (const c of timed) { ms[c] = median(times[c]!); batches[c] = times[c]!.length; }
  } finally {
    inst.release();
  }
  return { ms, batches, cut };
}

/** Times the candidates of every class of `calls` on this context; returns the table (not applied). */
export async function tune(ctx: GpuContext, calls: readonly RecordedCall[], opts: TuneOptions = {}): Promise<TuningTable> {
  const budgetMs = opts.budgetMs ?? defaultBudgetMs(ctx);
  const rounds = opts.rounds ?? 5;
  const t0 = performance.now();
  const elapsed = (): number => performance.now() - t0;
  const classes = classesOf(calls, opts.families);
  const entries: TableEntry[] = [];
  let complete = true;
  const progress = (w: ClassWork, phase: TuneProgress['phase'], entry?: TableEntry): void =>
    opts.onProgress?.({ done: entries.length, total: classes.length, op: w.family.op, class: w.cls, phase, entry, elapsedMs: elapsed(), budgetMs });

  for (const w of classes) {
    const fallback = w.family.fallback(ctx, w.call);
    const base: Omit<TableEntry, 'ms' | 'chosen' | 'why'> = { op: w.family.op, class: w.cls, call: w.call, calls: w.calls, fallback };
    if (elapsed() >= budgetMs) {
      complete = false;
      const e: TableEntry = { ...base, ms: {}, chosen: fallback, why: 'default: not timed (budget)' };
      entries.push(e);
      progress(w, 'skipped', e);
      continue;
    }
    // the default first, so that it is timed whatever the budget leaves
    const cands = [fallback, ...w.family.eligible(ctx, w.call).filter((c) => c !== fallback)];
    progress(w, 'compile');
    const r = await timeCandidates(ctx, w.family, w.call, cands, {
      rounds, deadline: t0 + budgetMs, keep: fallback, onCompiled: () => progress(w, 'time'),
    });
    if (r.cut) complete = false;
    const ms = r.ms;
    // only a candidate timed in MIN_BATCHES batches (a median, not one sample) may replace the default
    const enough = (c: string): boolean => (r.batches[c] ?? 0) >= Math.min(MIN_BATCHES, rounds);
    let best = fallback;
    for (const [c, t] of Object.entries(ms)) if (enough(c) && t < (ms[best] ?? Infinity)) best = c;
    const keep = best !== fallback && ms[fallback] !== undefined && ms[best]! > MARGIN * ms[fallback]!;
    const chosen = keep ? fallback : best;
    const few = Object.keys(ms).some((c) => c !== fallback && !enough(c) && ms[c]! < ms[fallback]!);
    const e: TableEntry = {
      ...base, ms, chosen,
      why: chosen !== fallback ? 'fastest'
        : best !== fallback ? 'default: within 3% of the fastest'
          : few ? `default: the faster ones timed in fewer than ${MIN_BATCHES} batches (budget)` : 'fastest (the default)',
    };
    entries.push(e);
    progress(w, 'chosen', e);
  }
  return {
    format: TABLE_FORMAT, library: LIBRARY_VERSION, adapter: ctx.adapter, key: contextKey(ctx), created: new Date().toISOString(),
    budgetMs, elapsedMs: elapsed(), complete, entries,
  };
}

/** The table as text: per operation and class, each candidate's ms, the choice. */
export function formatTable(t: TuningTable): string {
  const lines = [
    `kernel table for ${adapterName(t.adapter)}, library ${t.library}, made ${t.created}`,
    `tuning took ${(t.elapsedMs / 1000).toFixed(1)} s of a ${(t.budgetMs / 1000).toFixed(0)} s budget${t.complete ? '' : ' (budget spent: untimed classes use the defaults)'}`,
  ];
  const cands = new Map<string, string[]>();
  for (const e of t.entries) {
    const fam = FAMILIES.find((f) => f.op === e.op);
    cands.set(e.op, [...(fam?.candidates ?? Object.keys(e.ms))]);
  }
  for (const [op, names] of cands) {
    lines.push('', `${op}: ms per call (median)`);
    const rows = t.entries.filter((e) => e.op === op).map((e) => [
      e.class, String(e.calls), ...names.map((n) => (e.ms[n] === undefined ? '-' : e.ms[n]!.toPrecision(3))), e.chosen, e.why,
    ]);
    const head = ['class', 'calls', ...names, 'chosen', 'why'];
    const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const fmt = (r: string[]): string => r.map((c, i) => c.padEnd(width[i]!)).join('  ').trimEnd();
    lines.push(fmt(head), ...rows.map(fmt));
  }
  return lines.join('\n');
}
