import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d, header1d, memoWGSL } from './util.js';

/**
 * Element-wise binary ops with broadcasting of `b` along leading axes:
 * out[i] = a[i] OP b[i % b.size]. Used for adding position tables, residuals of layers that
 * are not matmuls, and the like.
 */
export type BinaryOp = 'add' | 'mul' | 'sub';

const WG = 256;

/**
 * One kernel per (op, whether b is broadcast): the sizes are uniforms, so every shape shares the
 * variant's pipeline (the memory bank of a video grows frame by frame; no compile per frame).
 * A b as large as a is read without the modulo (i % m would be i).
 */
const binaryWGSL = memoWGSL((op: BinaryOp, broadcast: boolean): string => /* wgsl */ `
// ---- kernel: elementwise_${op}${broadcast ? ' (b broadcast)' : ''} ----
struct Sizes {
  n: u32,   // elements of a and out
  m: u32,   // elements of b (n is a multiple)
}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> Z: Sizes;

${header1d('Z.n', WG)}
  out[i] = a[i] ${op === 'add' ? '+' : op === 'mul' ? '*' : '-'} b[${broadcast ? 'i % Z.m' : 'i'}];
}
`);

export function binary(ctx: GpuContext, op: BinaryOp, a: Tensor, b: Tensor, out?: Tensor): Tensor {
  if (a.size % b.size !== 0) throw new Error(`${op}: [${b.shape}] does not broadcast onto [${a.shape}]`);
  const o = out ?? ctx.empty(a.shape);
  const broadcast = b.size !== a.size;
  ctx.run({
    pipeline: ctx.pipeline(`elementwise_${op}`, binaryWGSL(op, broadcast)),
    bindings: [a, b, o, ctx.uniform(new Uint32Array([a.size, b.size]))],
    workgroups: grid1d(Math.ceil(a.size / WG)).workgroups,
  });
  return o;
}

export const add = (ctx: GpuContext, a: Tensor, b: Tensor, out?: Tensor): Tensor => binary(ctx, 'add', a, b, out);
