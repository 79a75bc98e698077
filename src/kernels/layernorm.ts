import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { bucket4, choose, randomValues, softwareDefaults, type KernelFamily } from './choice.js';
import { reduceArgs, reduceEnable, reduceParams, reduceWGSL, type Reduction } from './reduce.js';
import { assertShape, f32lit, grid1d, memoWGSL } from './util.js';

/**
 * LayerNorm over the last axis, as torch.nn.LayerNorm(C) / F.layer_norm: biased variance, eps
 * added to the variance, by one of the candidates of the layernorm family (LAYERNORM below):
 *
 * - 'row': one invocation per row (rows side by side in a workgroup): on software WebGPU the
 *   invocations of a workgroup run as SIMD lanes, and a row per lane beats a tree reduction with
 *   barriers by an order of magnitude;
 * - 'workgroup' / 'subgroup': one workgroup of 64 invocations per row (reduce.ts), for GPUs, where
 *   the row is then read coalesced and each invocation has C/64 values to sum instead of C.
 *
 * The statistics are numerically careful ("corrected two-pass"): pass 1 gives
 * a mean m0; pass 2 sums d = x - m0 and d², so mean = m0 + Σd/C and var = Σd²/C - (Σd/C)², where
 * Σd/C is tiny and nothing cancels catastrophically even when |mean| >> std. Pass 3 writes
 * (x - mean) / sqrt(var + eps) * w + b.
 */

const WG = 64;

const layerNormWGSL = memoWGSL((c: number, eps: number): string => /* wgsl */ `
// ---- kernel: layer_norm (C ${c}) ----
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> rows: u32;

const C = ${c}u;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (row >= rows) { return; }
  let base = row * C;

  // pass 1: a first estimate of the mean
  var s = 0.0;
  for (var i = 0u; i < C; i++) { s += x[base + i]; }
  let m0 = s / f32(C);

  // pass 2: sums of d = x - m0 and d²
  var sd = vec2f(0.0);
  for (var i = 0u; i < C; i++) {
    let d = x[base + i] - m0;
    sd += vec2f(d, d * d);
  }
  let t = sd / f32(C);
  let dm = t.x;                                   // mean - m0
  let variance = max(t.y - dm * dm, 0.0);         // biased, as torch
  let rstd = inverseSqrt(variance + ${f32lit(eps)});

  // pass 3: normalise, scale, shift
  for (var i = 0u; i < C; i++) {
    out[base + i] = ((x[base + i] - m0) - dm) * rstd * weight[i] + bias[i];
  }
}
`);

/** One workgroup per row (the GPU-shaped candidates). */
const RWG = 64;

const layerNormRowWGSL = memoWGSL((eps: number, r: Reduction): string => {
  const args = reduceArgs(r);
  return /* wgsl */ `${reduceEnable(r)}
// ---- kernel: layer_norm, a workgroup per row (${r} reduction) ----
struct Sizes { rows: u32, C: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> Z: Sizes;
${reduceWGSL(r, RWG)}

@compute @workgroup_size(${RWG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32${reduceParams(r)}) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= Z.rows) { return; }
  let C = Z.C;
  let base = row * C;
  // the same corrected two passes as the row kernel, each a workgroup sum
  var s = 0.0;
  for (var i = lid; i < C; i += ${RWG}u) { s += x[base + i]; }
  let m0 = rowSum(s, ${args}) / f32(C);
  var sd = vec2f(0.0);
  for (var i = lid; i < C; i += ${RWG}u) {
    let d = x[base + i] - m0;
    sd += vec2f(d, d * d);
  }
  let t = rowSum2(sd, ${args}) / f32(C);
  let dm = t.x;
  let rstd = inverseSqrt(max(t.y - dm * dm, 0.0) + ${f32lit(eps)});
  for (var i = lid; i < C; i += ${RWG}u) {
    out[base + i] = ((x[base + i] - m0) - dm) * rstd * weight[i] + bias[i];
  }
}
`;
});

/** One layer-norm call as the kernel choice sees it. */
export interface LayerNormCall {
  rows: number;
  c: number;
  eps: number;
}

export const LAYERNORM: KernelFamily<LayerNormCall> = {
  op: 'layernorm',
  candidates: ['row', 'workgroup', 'subgroup'],
  eligible: (ctx) => (ctx.hasSubgroups ? ['row', 'workgroup', 'subgroup'] : ['row', 'workgroup']),
  classOf: (c) => `c${bucket4(c.c)} rows${bucket4(c.rows)}`,
  fallback: (ctx, c) => (softwareDefaults(ctx) || c.c < 32 ? 'row' : ctx.hasSubgroups ? 'subgroup' : 'workgroup'),
  flops: (c) => 8 * c.rows * c.c,
  instance: (ctx, c) => {
    const x = ctx.upload(randomValues(c.rows * c.c, 1, 3), [c.rows, c.c]);
    const w = ctx.upload(randomValues(c.c, 2), [c.c]), b = ctx.upload(randomValues(c.c, 3), [c.c]);
    const out = ctx.empty([c.rows, c.c]);
    return {
      run: (cand) => { layerNorm(ctx, x, w, b, c.eps, out, cand); },
      release: () => { for (const t of [x, w, b, out]) t.release(); },
    };
  },
};

/**
 * torch.nn.LayerNorm over the last axis.
 * x: [..., C], weight: [C], bias: [C] -> [..., C]
 * `kernel` runs that candidate of the layernorm family (tests, benchmarks); default: the context's choice.
 */
export function layerNorm(ctx: GpuContext, x: Tensor, weight: Tensor, bias: Tensor, eps: number, out?: Tensor, kernel?: string): Tensor {
  if (x.shape.length < 1) throw new Error(`layerNorm: x must have at least one axis, got [${x.shape}]`);
  const c = x.shape[x.shape.length - 1]!;
  if (c < 1) throw new Error(`layerNorm: empty last axis in [${x.shape}]`);
  assertShape('layerNorm weight', weight.shape, [c]);
  assertShape('layerNorm bias', bias.shape, [c]);
  if (out && out.size !== x.size) throw new Error(`layerNorm: out [${out.shape}] does not match x [${x.shape}]`);
  const rows = x.size / c;
  const o = out ?? ctx.empty(x.shape);
  if (rows === 0) return o;
  const k = choose(ctx, LAYERNORM, { rows, c, eps }, kernel);
  if (k === 'row') {
    ctx.run({
      pipeline: ctx.pipeline('layer_norm', layerNormWGSL(c, eps)),
      bindings: [x, weight, bias, o, ctx.uniform(new Uint32Array([rows]))],
      workgroups: grid1d(Math.ceil(rows / WG)).workgroups,
    });
  } else {
    ctx.run({
      pipeline: ctx.pipeline('layer_norm_rows', layerNormRowWGSL(eps, k as Reduction)),
      bindings: [x, weight, bias, o, ctx.uniform(new Uint32Array([rows, c]))],
      workgroups: grid1d(rows).workgroups,
    });
  }
  return o;
}

/**
 * SAM's LayerNorm2d: normalises each pixel over its channels (dim 1 of an NCHW tensor). Our feature
 * maps are channels-last, so that is the last axis and this is layerNorm on it.
 * x: [B, H, W, C] (or [H, W, C]), weight: [C], bias: [C] -> same shape as x
 */
export function layerNorm2d(ctx: GpuContext, x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-6, out?: Tensor): Tensor {
  if (x.shape.length !== 3 && x.shape.length !== 4) {
    throw new Error(`layerNorm2d: x must be [B, H, W, C] or [H, W, C], got [${x.shape}]`);
  }
  return layerNorm(ctx, x, weight, bias, eps, out);
}
