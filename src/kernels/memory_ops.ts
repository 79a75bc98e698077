import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { f32lit, grid1d } from './util.js';

/**
 * Small element-wise kernels of the memory path:
 * - `scaledAdd`: out = a + alpha * b (memory attention's `curr + 0.1 * curr_pos`);
 * - `layerScaleResidual`: out = residual + gamma[c] * x (ConvNeXt's layer scale + residual, CXBlock);
 * - `maskForMemory`: the mask the memory encoder is fed (`_encode_new_memory`): logits -> (logit > 0)
 *   or sigmoid(logit), then * scale + bias.
 */

const WG = 256;

const header = (n: number): string => /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (i >= ${n}u) { return; }`;

const groups = (n: number) => grid1d(Math.ceil(n / WG)).workgroups;

/** out = a + alpha * b; a, b of the same size. */
export function scaledAdd(ctx: GpuContext, a: Tensor, b: Tensor, alpha: number, out?: Tensor): Tensor {
  if (a.size !== b.size) throw new Error(`scaledAdd: [${a.shape}] and [${b.shape}] differ in size`);
  const o = out ?? ctx.empty(a.shape);
  if (o.size !== a.size) throw new Error(`scaledAdd: out [${o.shape}] does not match [${a.shape}]`);
  if (a.size === 0) return o;
  const wgsl = /* wgsl */ `
// ---- kernel: scaled_add ----
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${header(a.size)}
  // the product is rounded before the sum, as torch's a + (alpha * b)
  let t = ${f32lit(Math.fround(alpha))} * b[i];
  out[i] = a[i] + t;
}
`;
  ctx.run({ pipeline: ctx.pipeline('scaled_add', wgsl), bindings: [a, b, o], workgroups: groups(a.size) });
  return o;
}

/** out = residual + gamma * x, gamma [C] on the last axis of x [..., C]. */
export function layerScaleResidual(ctx: GpuContext, x: Tensor, gamma: Tensor, residual: Tensor, out?: Tensor): Tensor {
  const C = x.shape[x.shape.length - 1] ?? 0;
  if (gamma.size !== C) throw new Error(`layerScaleResidual: gamma [${gamma.shape}] does not match x [${x.shape}]`);
  if (residual.size !== x.size) throw new Error(`layerScaleResidual: residual [${residual.shape}] does not match x [${x.shape}]`);
  const o = out ?? ctx.empty(x.shape);
  if (x.size === 0) return o;
  const wgsl = /* wgsl */ `
// ---- kernel: layer_scale_residual ----
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> res: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${header(x.size)}
  let t = gamma[i % ${C}u] * x[i];
  out[i] = res[i] + t;
}
`;
  ctx.run({ pipeline: ctx.pipeline('layer_scale_residual', wgsl), bindings: [x, gamma, residual, o], workgroups: groups(x.size) });
  return o;
}

export interface MaskForMemoryOptions {
  /** (logit > 0) as 0/1 instead of sigmoid(logit) (`binarize_mask_from_pts_for_mem_enc` on a frame with clicks) */
  binarize: boolean;
  /** `sigmoid_scale_for_mem_enc` (20 in the official configs) */
  scale: number;
  /** `sigmoid_bias_for_mem_enc` (-10) */
  bias: number;
}

/**
 * The memory encoder's input mask from high-res mask logits, as `_encode_new_memory` makes it:
 * (binarize ? (logit > 0) : sigmoid(logit)) * scale + bias. Feed the result to
 * `MemoryEncoder.forward(pixFeat, mask, true)` (the sigmoid is already applied).
 * logits [...] -> same shape
 */
export function maskForMemory(ctx: GpuContext, logits: Tensor, o: MaskForMemoryOptions, out?: Tensor): Tensor {
  const r = out ?? ctx.empty(logits.shape);
  if (r.size !== logits.size) throw new Error(`maskForMemory: out [${r.shape}] does not match [${logits.shape}]`);
  if (logits.size === 0) return r;
  const prob = o.binarize ? 'select(0.0, 1.0, v > 0.0)' : '1.0 / (1.0 + exp(-v))';
  const scale = o.scale !== 1 ? ` * ${f32lit(Math.fround(o.scale))}` : '';
  const bias = o.bias !== 0 ? ` + ${f32lit(Math.fround(o.bias))}` : '';
  const wgsl = /* wgsl */ `
// ---- kernel: mask_for_memory ----
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${header(logits.size)}
  let v = x[i];
  let p = ${prob};
  let ps = p${scale};
  out[i] = ps${bias};
}
`;
  ctx.run({ pipeline: ctx.pipeline('mask_for_memory', wgsl), bindings: [logits, r], workgroups: groups(logits.size) });
  return r;
}
