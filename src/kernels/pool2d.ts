import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d, header1d, memoWGSL } from './util.js';

/**
 * torch.nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=False) on channels-last maps, as Hiera's
 * Q-pooling uses it (hieradet.py `do_pool`): at each stage change the block pools its queries
 * (inside each attention window) and its residual branch by 2x2.
 *
 *   x [B, H, W, Cs] (channels [offset, offset + C) of each pixel) -> out [B, floor(H/2), floor(W/2), C]
 *
 * The queries are pooled where the qkv Linear wrote them: the first C of the 3C channels of each
 * token, so the channel stride and offset are parameters and no copy of q is made. Odd rows and
 * columns are dropped (floor), as ceil_mode=False does. One invocation per output value; the
 * channel is the fastest index, so neighbouring invocations read neighbouring floats.
 *
 * Sizes are uniforms: one pipeline serves every block and window shape.
 */

const WG = 256;

const maxPoolWGSL = memoWGSL((): string => /* wgsl */ `
// ---- kernel: max_pool_2x2 ----
struct Sizes {
  n: u32,       // output values: B * Ho * Wo * C
  C: u32,       // channels pooled
  Wo: u32,
  Ho: u32,
  W: u32,       // input width
  H: u32,       // input height
  cs: u32,      // input channel stride (floats per pixel)
  off: u32,     // first input channel pooled
}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> Z: Sizes;

${header1d('Z.n', WG)}
  let c = i % Z.C;
  let p = i / Z.C;              // b * Ho * Wo + oy * Wo + ox
  let ox = p % Z.Wo;
  let oy = (p / Z.Wo) % Z.Ho;
  let b = p / (Z.Wo * Z.Ho);
  let base = ((b * Z.H + 2u * oy) * Z.W + 2u * ox) * Z.cs + Z.off + c;
  let row = Z.W * Z.cs;
  out[i] = max(max(x[base], x[base + Z.cs]), max(x[base + row], x[base + row + Z.cs]));
}
`);

export interface MaxPoolOptions {
  /** channels to pool (default: all of x's last axis from `offset`) */
  channels?: number;
  /** first channel pooled (default 0) */
  offset?: number;
}

/** MaxPool2d(2, 2): x [B, H, W, Cs] -> [B, floor(H/2), floor(W/2), C] over channels [offset, offset + C). */
export function maxPool2x2(ctx: GpuContext, x: Tensor, opts: MaxPoolOptions = {}): Tensor {
  if (x.shape.length !== 4) throw new Error(`maxPool2x2: x must be [B, H, W, C], got [${x.shape}]`);
  const [B, H, W, Cs] = x.shape as [number, number, number, number];
  const off = opts.offset ?? 0;
  const C = opts.channels ?? Cs - off;
  if (!(Number.isInteger(off) && off >= 0 && Number.isInteger(C) && C > 0 && off + C <= Cs)) {
    throw new Error(`maxPool2x2: channels [${off}, ${off + C}) are not within the ${Cs} of [${x.shape}]`);
  }
  const Ho = Math.floor(H / 2), Wo = Math.floor(W / 2);
  if (Ho < 1 || Wo < 1) throw new Error(`maxPool2x2: [${x.shape}] is smaller than the 2x2 window`);
  const out = ctx.empty([B, Ho, Wo, C]);
  ctx.run({
    pipeline: ctx.pipeline('max_pool_2x2', maxPoolWGSL()),
    bindings: [x, out, ctx.uniform(new Uint32Array([out.size, C, Wo, Ho, W, H, Cs, off]))],
    workgroups: grid1d(Math.ceil(out.size / WG)).workgroups,
  });
  return out;
}
