/**
 * Running the golden comparison on one case folder (config.json, weights.safetensors,
 * tensors.safetensors; see /work/shared/golden/README.md).
 *
 * A stage is one piece of the model run on the case (e.g. "image encoder"): it says which
 * reference tensors it will output, then outputs them under the same names. `runGolden` compares
 * every output that has a reference, and lists the references that no stage outputs yet.
 * It works on any folder of that form: stages only claim the references the folder holds.
 */
import type { LoadOptions } from '../model/efficienttam.js';
import type { GpuContext } from '../gpu/context.js';
import { readSafetensorsFile, type SafetensorsFile } from '../io/safetensors.js';
import {
  compare, compareMaskLogits, failedRow, formatTable, toleranceRule, type GoldenRow, type ToleranceRule,
} from './compare.js';

export interface CaseData {
  dir: string;
  /** config.json: the resolved model config. */
  config: any;
  weights: SafetensorsFile;
  tensors: SafetensorsFile;
  /** The float bound's rule, from the weights' dtype (F16 weights: the f16 rule). */
  rule: ToleranceRule;
  /** How the stages load the case's model (e.g. precision 'f16'); default the defaults. */
  load?: LoadOptions;
}

export interface GoldenStage {
  name: string;
  /** Which of the case's reference names this stage will output (a subset of `refNames`). */
  produces(refNames: string[]): string[];
  /**
   * Optional: reference tensors the stage reads as inputs (e.g. `prompt.point.point_coords`);
   * they are then listed as inputs rather than as not implemented.
   */
  consumes?(refNames: string[]): string[];
  /**
   * Runs the stage; outputs [reference name, values] in the reference's element order (for
   * `*.masks_bits`: our logits at the mask's resolution, [..., H, W]; mask = logit > 0).
   */
  run(ctx: GpuContext, c: CaseData): AsyncIterable<[string, Float32Array]> | Promise<Map<string, Float32Array>>;
  /**
   * Optional: the stage's own comparison for some of its outputs (a rule that needs more than the
   * tensor, e.g. a count bounded by the pixels another row lets differ); undefined: the default.
   */
  compare?(c: CaseData, name: string, ours: Float32Array): GoldenRow | undefined;
}

/** Loads a case folder (Node only). */
export async function loadCase(dir: string): Promise<CaseData> {
  const fsName = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
  const path = (p: string) => `${dir.replace(/\/+$/, '')}/${p}`;
  let config: unknown;
  try {
    config = JSON.parse(await fs.readFile(path('config.json'), 'utf8'));
  } catch (e) {
    throw new Error(`${path('config.json')}: ${(e as Error).message}`);
  }
  const [weights, tensors] = await Promise.all([
    readSafetensorsFile(path('weights.safetensors')),
    readSafetensorsFile(path('tensors.safetensors')),
  ]);
  return { dir, config, weights, tensors, rule: toleranceRule(weights) };
}

export type StageRow = GoldenRow & { stage: string };

export interface GoldenReport {
  rows: StageRow[];
  /** Reference names that no stage outputs (nor reads as input), in file order. */
  notImplemented: string[];
  /** Reference names only read as inputs by stages. */
  inputsOnly: string[];
  /** Names a stage output that the case has no reference for (not compared). */
  withoutReference: { stage: string; name: string }[];
  /** Seconds each stage took (run and comparisons). */
  seconds: { stage: string; seconds: number }[];
  /** True when every row passed. */
  pass: boolean;
}

export interface RunGoldenOptions {
  /** Run only stages with these names. */
  only?: readonly string[];
  /** Called as each stage starts, and with each row as it is made (for progress output). */
  onStage?: (name: string, claimed: number) => void;
  onRow?: (row: StageRow) => void;
}

/**
 * How many leading elements of a reference tensor the reference stored in bfloat16 (the
 * golden README's rule): all of `video.*.maskmem_features`; of `module.memory_attention.in.memory`
 * [tokens, 1, memDim] the spatial memories, which come before the `num_obj_ptr_tokens` object
 * pointer tokens (those are kept in float32).
 */
export function bfloat16Elements(c: CaseData, name: string): number {
  const info = c.tensors.info(name);
  const n = info.shape.reduce((a, b) => a * b, 1);
  if (/^video\..*\.maskmem_features$/.test(name)) return n;
  if (name === 'module.memory_attention.in.memory') {
    const ptrName = 'module.memory_attention.in.num_obj_ptr_tokens';
    const ptrs = c.tensors.names().includes(ptrName) ? c.tensors.getF32(ptrName)[0]! : 0;
    const [tokens = 0] = info.shape;
    const D = tokens > 0 ? n / tokens : 0;
    return Math.max(0, tokens - ptrs) * D;
  }
  return 0;
}

/** Compares one output with its reference (mask or float by the reference's dtype and name). */
export function compareWithReference(c: CaseData, name: string, ours: Float32Array): GoldenRow {
  const info = c.tensors.info(name);
  if (name.endsWith('masks_bits') && info.dtype === 'U8') {
    return compareMaskLogits(name, ours, c.tensors.getRaw(name) as Uint8Array, info.shape);
  }
  return compare(name, ours, c.tensors.getF32(name), c.rule, { bfloat16Elements: bfloat16Elements(c, name) });
}

/**
 * Runs the stages on a case and compares what they output. A stage that throws gives a failing
 * row (with the error) for each tensor it claimed and had not output; the other stages still run.
 * A stage that claims nothing on this case is skipped.
 */
export async function runGolden(ctx: GpuContext, c: CaseData, stages: readonly GoldenStage[], opts: RunGoldenOptions = {}): Promise<GoldenReport> {
  const refNames = c.tensors.names();
  const refSet = new Set(refNames);
  const rows: StageRow[] = [];
  const compared = new Set<string>();
  const consumed = new Set<string>();
  const withoutReference: { stage: string; name: string }[] = [];
  const seconds: { stage: string; seconds: number }[] = [];
  const push = (row: StageRow) => {
    rows.push(row);
    opts.onRow?.(row);
  };

  for (const stage of stages) {
    if (opts.only && !opts.only.includes(stage.name)) continue;
    for (const n of stage.consumes?.(refNames) ?? []) if (refSet.has(n)) consumed.add(n);
    const claimed = stage.produces(refNames).filter((n) => refSet.has(n));
    if (claimed.length === 0) continue;
    opts.onStage?.(stage.name, claimed.length);
    const t0 = performance.now();
    const done = new Set<string>();
    const take = (name: string, ours: Float32Array) => {
      if (!refSet.has(name)) {
        withoutReference.push({ stage: stage.name, name });
        return;
      }
      done.add(name);
      compared.add(name);
      let row: GoldenRow;
      try {
        row = stage.compare?.(c, name, ours) ?? compareWithReference(c, name, ours);
      } catch (e) {
        row = failedRow(name, (e as Error).message);
      }
      push({ ...row, stage: stage.name });
    };
    let error: unknown = null;
    try {
      const out = stage.run(ctx, c);
      if (out instanceof Promise) {
        for (const [name, v] of await out) take(name, v);
      } else {
        for await (const [name, v] of out) take(name, v);
      }
    } catch (e) {
      error = e;
    }
    for (const name of claimed) {
      if (done.has(name)) continue;
      compared.add(name);
      const why = error ? `stage "${stage.name}" threw: ${(error as Error)?.message ?? String(error)}` : `stage "${stage.name}" did not output it`;
      push({ ...failedRow(name, why), stage: stage.name });
    }
    seconds.push({ stage: stage.name, seconds: (performance.now() - t0) / 1000 });
  }

  const notImplemented = refNames.filter((n) => !compared.has(n) && !consumed.has(n));
  const inputsOnly = refNames.filter((n) => !compared.has(n) && consumed.has(n));
  return { rows, notImplemented, inputsOnly, withoutReference, seconds, pass: rows.every((r) => r.pass) };
}

/**
 * Groups names by dotted prefix for a short listing: a prefix whose names are all in `names`
 * is shown as "prefix.* (count)"; a prefix only partly in it is split one level further (down
 * to `maxDepth` components). `all` is the full list of names the prefixes are judged against.
 */
export function groupByPrefix(names: readonly string[], all: readonly string[], maxDepth = 3): { prefix: string; count: number }[] {
  const out: { prefix: string; count: number }[] = [];
  const go = (group: readonly string[], pool: readonly string[], depth: number) => {
    const keyOf = (n: string) => n.split('.').slice(0, depth).join('.');
    const groups = new Map<string, string[]>();
    for (const n of group) {
      const k = keyOf(n);
      const g = groups.get(k);
      if (g) g.push(n);
      else groups.set(k, [n]);
    }
    for (const [k, g] of groups) {
      const inPool = pool.filter((n) => n === k || n.startsWith(k + '.'));
      if (g.length === 1 && g[0] === k) out.push({ prefix: k, count: 1 });
      else if (g.length === inPool.length || depth >= maxDepth) out.push({ prefix: `${k}.*`, count: g.length });
      else go(g, inPool, depth + 1);
    }
  };
  go(names, all, 1);
  return out;
}

/** "prompt.* (25 tensors), video.* (148 tensors)". */
export function formatGroups(groups: readonly { prefix: string; count: number }[]): string {
  return groups.map((g) => (g.count === 1 && !g.prefix.endsWith('*') ? g.prefix : `${g.prefix} (${g.count} tensor${g.count === 1 ? '' : 's'})`)).join(', ');
}

/** The report as text: the table, then what no stage implements yet. */
export function formatReport(c: CaseData, report: GoldenReport): string {
  const all = c.tensors.names();
  const lines: string[] = [];
  if (report.rows.length) lines.push(formatTable(report.rows));
  else lines.push('no stage produced any reference tensor of this case');
  if (report.inputsOnly.length) lines.push(`used as inputs only: ${formatGroups(groupByPrefix(report.inputsOnly, all))}`);
  if (report.notImplemented.length) {
    lines.push(`not implemented yet (${report.notImplemented.length} of ${all.length}): ${formatGroups(groupByPrefix(report.notImplemented, all))}`);
  }
  if (report.withoutReference.length) {
    lines.push(`output without a reference in this case (not compared): ${report.withoutReference.map((w) => w.name).join(', ')}`);
  }
  return lines.join('\n');
}
