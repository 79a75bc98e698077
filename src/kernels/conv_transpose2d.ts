import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { ERF_WGSL } from './matmul.js';
import { grid1d, memoWGSL } from './util.js';

/**
 * torch.nn.ConvTranspose2d with kernel_size == stride (k) and no padding, as SAM's output_upscaling
 * uses (2x2, stride 2): the output windows do not overlap, so each output pixel comes from one
 * input pixel and one kernel tap:
 *
 *   out[b, k*y + ky, k*x + kx, co] = bias[co] + sum_ci x[b, y, x, ci] * weight[ci, co, ky, kx]
 *
 * x [B, H, W, Cin] channels-last, weight [Cin, Cout, k, k] (PyTorch's layout) -> [B, k*H, k*W, Cout].
 * An optional GELU (exact, erf) is fused after the bias, and optionally a map `add` [1 or B, k*H,
 * k*W, Cout] is added before it (SAM 2's high-resolution decoder: act(dc(x) + feat_s), the one map
 * of the image shared by every prompt of the batch).
 */
export interface ConvTranspose2dOptions {
  activation?: 'none' | 'gelu';
  /** added after the bias and before the activation; [1, Ho, Wo, Cout] is broadcast over the batch */
  add?: Tensor;
}

const WG = 64;

/** The batch size is a uniform (the output count): prompts batched in any number share a pipeline. */
const convTWGSL = memoWGSL((H: number, W: number, Cin: number, Cout: number, k: number, bias: boolean, gelu: boolean,
  add: 'none' | 'same' | 'broadcast'): string => {
  const Ho = H * k, Wo = W * k;
  let slot = 2;
  const decl = (name: string, access: string) => `@group(0) @binding(${slot++}) var<storage, ${access}> ${name}: array<f32>;`;
  return /* wgsl */ `
// ---- kernel: conv_transpose2d (kernel = stride = ${k}${add !== 'none' ? `, + a map (${add})` : ''}) ----
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
${bias ? decl('bias', 'read') : ''}
${add !== 'none' ? decl('addend', 'read') : ''}
${decl('out', 'read_write')}
@group(0) @binding(${slot}) var<uniform> total: u32;   // B * Ho * Wo * Cout
${gelu ? ERF_WGSL : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let o = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (o >= total) { return; }
  let co = o % ${Cout}u;
  let pix = o / ${Cout}u;            // b * Ho * Wo + oy * Wo + ox
  let ox = pix % ${Wo}u;
  let oy = (pix / ${Wo}u) % ${Ho}u;
  let b = pix / ${Ho * Wo}u;
  let iy = oy / ${k}u;
  let ix = ox / ${k}u;
  let tap = (oy % ${k}u) * ${k}u + (ox % ${k}u);
  let xBase = ((b * ${H}u + iy) * ${W}u + ix) * ${Cin}u;
  var acc = 0.0;
  for (var ci = 0u; ci < ${Cin}u; ci++) {
    acc = fma(x[xBase + ci], weight[(ci * ${Cout}u + co) * ${k * k}u + tap], acc);
  }
  var v = acc${bias ? ' + bias[co]' : ''};
  ${add === 'same' ? 'v += addend[o];' : add === 'broadcast' ? `v += addend[o % ${Ho * Wo * Cout}u];` : ''}
  ${gelu ? 'v = 0.5 * v * (1.0 + erf_f32(v * 0.70710678118654752));' : ''}
  out[o] = v;
}
`;
});

export function convTranspose2d(ctx: GpuContext, x: Tensor, weight: Tensor, bias: Tensor | undefined,
  opts: ConvTranspose2dOptions = {}): Tensor {
  if (x.shape.length !== 4) throw new Error(`convTranspose2d: x must be [B, H, W, Cin], got [${x.shape}]`);
  const [B, H, W, Cin] = x.shape as [number, number, number, number];
  if (weight.shape.length !== 4 || weight.shape[0] !== Cin || weight.shape[2] !== weight.shape[3]) {
    throw new Error(`convTranspose2d: weight [${weight.shape}] is not [${Cin}, Cout, k, k]`);
  }
  const Cout = weight.shape[1]!, k = weight.shape[2]!;
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== Cout)) {
    throw new Error(`convTranspose2d: bias [${bias.shape}] does not match Cout=${Cout}`);
  }
  const out = ctx.empty([B, H * k, W * k, Cout]);
  if (out.size === 0) return out;
  const gelu = opts.activation === 'gelu';
  const a = opts.add;
  if (a && (a.shape.length !== 4 || (a.shape[0] !== 1 && a.shape[0] !== B) || a.shape[1] !== H * k || a.shape[2] !== W * k || a.shape[3] !== Cout)) {
    throw new Error(`convTranspose2d: add [${a.shape}] is not [1 or ${B}, ${H * k}, ${W * k}, ${Cout}]`);
  }
  ctx.run({
    // a map of one image is read modulo its size, whatever the batch (B = 1 too: the same kernel)
    pipeline: ctx.pipeline('conv_transpose2d', convTWGSL(H, W, Cin, Cout, k, !!bias, gelu,
      !a ? 'none' : a.shape[0] === 1 ? 'broadcast' : 'same')),
    bindings: [x, weight, ...(bias ? [bias] : []), ...(a ? [a] : []), out, ctx.uniform(new Uint32Array([out.size]))],
    workgroups: grid1d(Math.ceil(out.size / WG)).workgroups,
  });
  return out;
}
