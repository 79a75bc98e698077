import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { bucket4, choose, randomValues, softwareDefaults, type KernelFamily } from './choice.js';
import { reduceArgs, reduceEnable, reduceParams, reduceWGSL, type Reduction } from './reduce.js';
import { grid1d, memoWGSL } from './util.js';

/**
 * Softmax over the last axis, numerically stable (the row maximum is subtracted before exp).
 * Three passes over the row: its maximum, the sum of exp(x - max), and the normalised exponentials,
 * by one of the candidates of the softmax family (SOFTMAX below, chosen per adapter and row length):
 *
 * - 'row': one invocation per row, rows side by side in a workgroup (SIMD lanes on software
 *   WebGPU, where this beats a per-row tree reduction with barriers several times over);
 * - 'workgroup' / 'subgroup': one workgroup of 128 invocations per row (reduce.ts), for GPUs,
 *   where a row per invocation is a long serial loop reading memory no neighbour shares.
 *
 * Optionally a constant is added to the first `columns` entries of every row before all of that
 * (SoftmaxOptions.bias), as attention does with a logit bias on its first keys.
 */

const WG = 64;

/** The constant added to the first `columns` entries of each row. */
export interface ColumnBias {
  columns: number;
  value: number;
}

/**
 * One kernel per variant (with or without the column bias); the sizes and the bias are uniforms,
 * so every shape shares the variant's pipeline: attention over a video's memory has one more
 * frame of keys on each of the first frames, and a pipeline compile per frame would cost more
 * than the frame.
 */
const softmaxWGSL = memoWGSL((bias: boolean): string => {
  // x[base + i] as the passes read it: plain, or with the bias on columns i < Z.NB
  const xi = bias ? (i: string): string => `(x[base + ${i}] + select(0.0, Z.BIAS, ${i} < Z.NB))` : (i: string): string => `x[base + ${i}]`;
  return /* wgsl */ `
// ---- kernel: softmax${bias ? ' (+ a bias on the first columns)' : ''} ----
struct Sizes {
  rows: u32,
  N: u32,      // row length
  NB: u32,     // columns that get the bias (>= 1 in the bias variant)
  BIAS: f32,   // the bias
}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> Z: Sizes;

const LOG2E = 1.4426950408889634;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (row >= Z.rows) { return; }
  let N = Z.N;
  let base = row * N;

  var m = x[base]${bias ? ' + Z.BIAS' : ''};${bias ? '   // NB >= 1' : ''}
  for (var i = 1u; i < N; i++) { m = max(m, ${xi('i')}); }
  var sum = 0.0;
  for (var i = 0u; i < N; i++) { sum += exp2((${xi('i')} - m) * LOG2E); }
  let inv = 1.0 / sum;
  for (var i = 0u; i < N; i++) {
    out[base + i] = exp2((${xi('i')} - m) * LOG2E) * inv;
  }
}
`;
});

/** One workgroup per row (the GPU-shaped candidates): 128 invocations stride along the row. */
const RWG = 128;

const softmaxRowWGSL = memoWGSL((bias: boolean, r: Reduction): string => {
  const xi = bias ? (i: string): string => `(x[base + ${i}] + select(0.0, Z.BIAS, ${i} < Z.NB))` : (i: string): string => `x[base + ${i}]`;
  const args = reduceArgs(r);
  return /* wgsl */ `${reduceEnable(r)}
// ---- kernel: softmax, a workgroup per row (${r} reduction)${bias ? ' (+ a bias on the first columns)' : ''} ----
struct Sizes {
  rows: u32,
  N: u32,      // row length
  NB: u32,     // columns that get the bias
  BIAS: f32,   // the bias
}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> Z: Sizes;
${reduceWGSL(r, RWG)}

const LOG2E = 1.4426950408889634;

@compute @workgroup_size(${RWG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32${reduceParams(r)}) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= Z.rows) { return; }
  let N = Z.N;
  let base = row * N;
  var m = -3.4028234e38;
  for (var i = lid; i < N; i += ${RWG}u) { m = max(m, ${xi('i')}); }
  m = rowMax(m, ${args});
  var sum = 0.0;
  for (var i = lid; i < N; i += ${RWG}u) { sum += exp2((${xi('i')} - m) * LOG2E); }
  let inv = 1.0 / rowSum(sum, ${args});
  for (var i = lid; i < N; i += ${RWG}u) {
    out[base + i] = exp2((${xi('i')} - m) * LOG2E) * inv;
  }
}
`;
});

/** One softmax call as the kernel choice sees it. */
export interface SoftmaxCall {
  rows: number;
  n: number;
  bias: boolean;
}

export const SOFTMAX: KernelFamily<SoftmaxCall> = {
  op: 'softmax',
  candidates: ['row', 'workgroup', 'subgroup'],
  eligible: (ctx) => (ctx.hasSubgroups ? ['row', 'workgroup', 'subgroup'] : ['row', 'workgroup']),
  classOf: (c) => `n${bucket4(c.n)} rows${bucket4(c.rows)}`,
  // GPU: short rows (a handful of keys) one per invocation, longer ones a workgroup each
  fallback: (ctx, c) => (softwareDefaults(ctx) || c.n < 64 ? 'row' : ctx.hasSubgroups ? 'subgroup' : 'workgroup'),
  flops: (c) => 5 * c.rows * c.n,
  instance: (ctx, c) => {
    const x = ctx.upload(randomValues(c.rows * c.n, 1, 4), [c.rows, c.n]);
    const out = ctx.empty([c.rows, c.n]);
    const bias = c.bias ? { columns: Math.ceil(c.n / 2), value: 1 } : undefined;
    return {
      run: (cand) => { softmax(ctx, x, out, { bias, kernel: cand }); },
      release: () => { x.release(); out.release(); },
    };
  },
};

/** The uniform block `Sizes` of the kernel. */
function sizesData(rows: number, n: number, bias?: ColumnBias): Uint32Array {
  const u = new Uint32Array([rows, n, bias?.columns ?? 0, 0]);
  new Float32Array(u.buffer)[3] = bias?.value ?? 0;
  return u;
}

export interface SoftmaxOptions {
  /** add `value` to the first `columns` (<= N) entries of every row before the softmax; default none */
  bias?: ColumnBias;
  /** run this candidate of the softmax family (tests, benchmarks); default: the context's choice */
  kernel?: string;
}

/** Softmax over the last axis. x: [..., N] -> [..., N] */
export function softmax(ctx: GpuContext, x: Tensor, out?: Tensor, opts: SoftmaxOptions = {}): Tensor {
  if (x.shape.length < 1) throw new Error(`softmax: x must have at least one axis, got [${x.shape}]`);
  const n = x.shape[x.shape.length - 1]!;
  if (n < 1) throw new Error(`softmax: empty last axis in [${x.shape}]`);
  if (out && out.size !== x.size) throw new Error(`softmax: out [${out.shape}] does not match x [${x.shape}]`);
  const b = opts.bias;
  if (b && !(Number.isInteger(b.columns) && b.columns >= 0 && b.columns <= n && Number.isFinite(b.value))) {
    throw new Error(`softmax: bad bias (columns ${b.columns} of ${n}, value ${b.value})`);
  }
  // a bias on no columns (or of 0) is no bias: the plain kernel
  const bias = b && b.columns > 0 && b.value !== 0 ? b : undefined;
  const rows = x.size / n;
  const o = out ?? ctx.empty(x.shape);
  if (rows === 0) return o;
  const k = choose(ctx, SOFTMAX, { rows, n, bias: bias !== undefined }, opts.kernel);
  if (k === 'row') {
    ctx.run({
      pipeline: ctx.pipeline('softmax', softmaxWGSL(bias !== undefined)),
      bindings: [x, o, ctx.uniform(sizesData(rows, n, bias))],
      workgroups: grid1d(Math.ceil(rows / WG)).workgroups,
    });
  } else {
    ctx.run({
      pipeline: ctx.pipeline('softmax_rows', softmaxRowWGSL(bias !== undefined, k as Reduction)),
      bindings: [x, o, ctx.uniform(sizesData(rows, n, bias))],
      workgroups: grid1d(rows).workgroups,
    });
  }
  return o;
}
