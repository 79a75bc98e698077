import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d } from './util.js';

/**
 * Softmax over the last axis, numerically stable (the row maximum is subtracted before exp).
 *
 * One invocation per row, rows side by side in a workgroup (SIMD lanes on software WebGPU, where
 * this beats a per-row tree reduction with barriers several times over). Three passes over the
 * row: its maximum, the sum of exp(x - max), and the normalised exponentials.
 */

const WG = 64;

const softmaxWGSL = (rows: number, n: number): string => /* wgsl */ `
// ---- kernel: softmax (rows ${rows}, N ${n}) ----
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

const N = ${n}u;
const LOG2E = 1.4426950408889634;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (row >= ${rows}u) { return; }
  let base = row * N;

  var m = x[base];
  for (var i = 1u; i < N; i++) { m = max(m, x[base + i]); }
  var sum = 0.0;
  for (var i = 0u; i < N; i++) { sum += exp2((x[base + i] - m) * LOG2E); }
  let inv = 1.0 / sum;
  for (var i = 0u; i < N; i++) {
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
  ctx.run({
    pipeline: ctx.pipeline('softmax', softmaxWGSL(rows, n)),
    bindings: [x, o],
    workgroups: grid1d(Math.ceil(rows / WG)).workgroups,
  });
  return o;
}
