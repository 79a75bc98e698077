import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { assertShape, f32lit, grid1d, memoWGSL } from './util.js';

/**
 * LayerNorm over the last axis, as torch.nn.LayerNorm(C) / F.layer_norm: biased variance, eps
 * added to the variance.
 *
 * One invocation per row (rows side by side in a workgroup): on software WebGPU the invocations
 * of a workgroup run as SIMD lanes, and a row per lane beats a tree reduction with barriers by an
 * order of magnitude. The statistics are numerically careful ("corrected two-pass"): pass 1 gives
 * a mean m0; pass 2 sums d = x - m0 and d², so mean = m0 + Σd/C and var = Σd²/C - (Σd/C)², where
 * Σd/C is tiny and nothing cancels catastrophically even when |mean| >> std. Pass 3 writes
 * (x - mean) / sqrt(var + eps) * w + b.
 */

const WG = 64;

const layerNormWGSL = memoWGSL((rows: number, c: number, eps: number): string => /* wgsl */ `
// ---- kernel: layer_norm (rows ${rows}, C ${c}) ----
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const C = ${c}u;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (row >= ${rows}u) { return; }
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

/**
 * torch.nn.LayerNorm over the last axis.
 * x: [..., C], weight: [C], bias: [C] -> [..., C]
 */
export function layerNorm(ctx: GpuContext, x: Tensor, weight: Tensor, bias: Tensor, eps: number, out?: Tensor): Tensor {
  if (x.shape.length < 1) throw new Error(`layerNorm: x must have at least one axis, got [${x.shape}]`);
  const c = x.shape[x.shape.length - 1]!;
  if (c < 1) throw new Error(`layerNorm: empty last axis in [${x.shape}]`);
  assertShape('layerNorm weight', weight.shape, [c]);
  assertShape('layerNorm bias', bias.shape, [c]);
  if (out && out.size !== x.size) throw new Error(`layerNorm: out [${out.shape}] does not match x [${x.shape}]`);
  const rows = x.size / c;
  const o = out ?? ctx.empty(x.shape);
  if (rows === 0) return o;
  ctx.run({
    pipeline: ctx.pipeline('layer_norm', layerNormWGSL(rows, c, eps)),
    bindings: [x, weight, bias, o],
    workgroups: grid1d(Math.ceil(rows / WG)).workgroups,
  });
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
