import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d } from './util.js';

/**
 * Softmax over the last axis, numerically stable (the row maximum is subtracted before exp).
 *
 * One workgroup per row. Pass 1: each invocation keeps a running (max, sum of exp(x - max)) over
 * its strided share of the row, rescaling the sum when the max grows; the pairs are then merged by
 * a tree reduction. Pass 2 writes exp(x - max) / sum. The row is read twice whatever its length.
 */

/** Workgroup size for rows of n: a power of two in [32, 256], about n/4 threads. */
function wgSize(n: number): number {
  let wg = 32;
  while (wg < 256 && wg * 4 <= n) wg *= 2;
  return wg;
}

const softmaxWGSL = (rows: number, n: number, wg: number): string => /* wgsl */ `
// ---- kernel: softmax (rows ${rows}, N ${n}) ----
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

const N = ${n}u;
const WG = ${wg}u;
const LOWEST = -3.4028234e38;   // finite, so that merging two empty partials gives exp(0) * 0
const LOG2E = 1.4426950408889634;
var<workgroup> red: array<vec2f, WG>;   // (max, sum of exp(x - max)) per invocation

fn merge(a: vec2f, b: vec2f) -> vec2f {
  let m = max(a.x, b.x);
  return vec2f(m, a.y * exp2((a.x - m) * LOG2E) + b.y * exp2((b.x - m) * LOG2E));
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= ${rows}u) { return; }
  let base = row * N;

  // pass 1: running max and rescaled sum over this invocation's elements
  var ms = vec2f(LOWEST, 0.0);
  for (var i = lid; i < N; i += WG) {
    let v = x[base + i];
    if (v > ms.x) {
      ms = vec2f(v, ms.y * exp2((ms.x - v) * LOG2E) + 1.0);
    } else {
      ms.y += exp2((v - ms.x) * LOG2E);
    }
  }
  red[lid] = ms;
  workgroupBarrier();
  for (var off = WG / 2u; off > 0u; off = off / 2u) {
    if (lid < off) { red[lid] = merge(red[lid], red[lid + off]); }
    workgroupBarrier();
  }
  let total = red[0];
  let m = total.x;
  let inv = 1.0 / total.y;

  // pass 2: normalised exponentials
  for (var i = lid; i < N; i += WG) {
    out[base + i] = exp2((x[base + i] - m) * LOG2E) * inv;
  }
}
`;

/** Softmax over the last axis. x: [..., N] -> [..., N] */
export function softmax(ctx: GpuContext, x: Tensor, out?: Tensor): Tensor {
  if (x.shape.length < 1) throw new Error(`softmax: x must have at least one axis, got [${x.shape}]`);
  const n = x.shape[x.shape.length - 1]!;
  if (n < 1) throw new Error(`softmax: empty last axis in [${x.shape}]`);
  if (out && out.size !== x.size) throw new Error(`softmax: out [${out.shape}] does not match x [${x.shape}]`);
  const rows = x.size / n;
  const o = out ?? ctx.empty(x.shape);
  if (rows === 0) return o;
  const wg = wgSize(n);
  ctx.run({
    pipeline: ctx.pipeline('softmax', softmaxWGSL(rows, n, wg)),
    bindings: [x, o],
    workgroups: grid1d(rows).workgroups,
  });
  return o;
}
