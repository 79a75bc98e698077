import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d } from './util.js';

/**
 * Element-wise binary ops with broadcasting of `b` along leading axes:
 * out[i] = a[i] OP b[i % b.size]. Used for adding position tables, residuals of layers that
 * are not matmuls, and the like.
 */
export type BinaryOp = 'add' | 'mul' | 'sub';

const WG = 256;

const binaryWGSL = (n: number, m: number, op: BinaryOp): string => /* wgsl */ `
// ---- kernel: elementwise_${op} ----
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (i >= ${n}u) { return; }
  out[i] = a[i] ${op === 'add' ? '+' : op === 'mul' ? '*' : '-'} b[i % ${m}u];
}
`;

export function binary(ctx: GpuContext, op: BinaryOp, a: Tensor, b: Tensor, out?: Tensor): Tensor {
  if (a.size % b.size !== 0) throw new Error(`${op}: [${b.shape}] does not broadcast onto [${a.shape}]`);
  const o = out ?? ctx.empty(a.shape);
  ctx.run({
    pipeline: ctx.pipeline(`elementwise_${op}`, binaryWGSL(a.size, b.size, op)),
    bindings: [a, b, o],
    workgroups: grid1d(Math.ceil(a.size / WG)).workgroups,
  });
  return o;
}

export const add = (ctx: GpuContext, a: Tensor, b: Tensor, out?: Tensor): Tensor => binary(ctx, 'add', a, b, out);
