import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d, header1d, memoWGSL } from './util.js';

/**
 * torch.nn.functional.interpolate(mode='bicubic', align_corners=False) on channels-last maps:
 * x [B, H, W, C] -> [B, outH, outW, C]. Used to resize the ViT's pretraining position table to the
 * token grid (get_abs_pos in the reference's backbones/utils.py).
 *
 * PyTorch's algorithm (upsample_bicubic2d): per axis, with scale = in / out,
 *   src = (dst + 0.5) * scale - 0.5          (NOT clamped at 0 for bicubic)
 *   i0 = floor(src), t = src - i0
 *   taps i0-1 .. i0+2, each read at clamp(tap, 0, in-1), weighted by the cubic convolution
 *   kernel with A = -0.75: [k2(t + 1), k1(t), k1(1 - t), k2(2 - t)] where
 *   k1(d) = ((A + 2) d - (A + 3)) d^2 + 1   (|d| <= 1),  k2(d) = ((A d - 5A) d + 8A) d - 4A  (1 < |d| < 2).
 * The 2-D result is the separable product (x weights inside, y weights outside).
 */

const WG = 256;

const bicubicWGSL = (B: number, H: number, W: number, C: number, oh: number, ow: number): string => {
  const total = B * oh * ow * C;
  return /* wgsl */ `
// ---- kernel: resize_bicubic ----
// x [${B}, ${H}, ${W}, ${C}] -> out [${B}, ${oh}, ${ow}, ${C}] (align_corners=False, A=-0.75)
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

const A = -0.75;
fn cubic1(d: f32) -> f32 { return ((A + 2.0) * d - (A + 3.0)) * d * d + 1.0; }
fn cubic2(d: f32) -> f32 { return ((A * d - 5.0 * A) * d + 8.0 * A) * d - 4.0 * A; }
fn weights(t: f32) -> vec4f { return vec4f(cubic2(t + 1.0), cubic1(t), cubic1(1.0 - t), cubic2(2.0 - t)); }

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (i >= ${total}u) { return; }
  let c = i % ${C}u;
  let ox = (i / ${C}u) % ${ow}u;
  let oy = (i / ${C * ow}u) % ${oh}u;
  let b = i / ${C * ow * oh}u;
  let sx = (f32(ox) + 0.5) * ${(W / ow).toPrecision(17)} - 0.5;
  let sy = (f32(oy) + 0.5) * ${(H / oh).toPrecision(17)} - 0.5;
  let fx = floor(sx); let fy = floor(sy);
  let wx = weights(sx - fx); let wy = weights(sy - fy);
  let x0 = i32(fx) - 1; let y0 = i32(fy) - 1;
  var acc = 0.0;
  for (var r = 0; r < 4; r++) {
    let yy = u32(clamp(y0 + r, 0, ${H - 1}));
    let row = (b * ${H}u + yy) * ${W}u;
    var s = 0.0;
    for (var q = 0; q < 4; q++) {
      let xx = u32(clamp(x0 + q, 0, ${W - 1}));
      s += x[(row + xx) * ${C}u + c] * wx[q];
    }
    acc += s * wy[r];
  }
  out[i] = acc;
}
`;
};

/** F.interpolate(mode='bicubic', align_corners=False): x [B, H, W, C] -> [B, outH, outW, C]. */
export function resizeBicubic(ctx: GpuContext, x: Tensor, outH: number, outW: number): Tensor {
  if (x.shape.length !== 4) throw new Error(`resizeBicubic: x must be [B, H, W, C], got [${x.shape}]`);
  const [B, H, W, C] = x.shape as [number, number, number, number];
  const out = ctx.empty([B, outH, outW, C]);
  ctx.run({
    pipeline: ctx.pipeline('resize_bicubic', bicubicWGSL(B, H, W, C, outH, outW)),
    bindings: [x, out],
    workgroups: grid1d(Math.ceil(out.size / WG)).workgroups,
  });
  return out;
}

/**
 * The FPN neck's top-down step (SAM 2's FpnNeck with fpn_interp_model 'nearest'):
 *
 *   out = (lateral + F.interpolate(prev, scale_factor=2, mode='nearest')) * scale
 *
 * lateral [B, 2H, 2W, C], prev [B, H, W, C] -> [B, 2H, 2W, C]. Nearest at scale 2 reads
 * prev[floor(y / 2), floor(x / 2)]; the upsampled map is never stored. `scale` is 1 for the 'sum'
 * fusion and 0.5 for 'avg' ((a + b) / 2 and (a + b) * 0.5 are the same float). One invocation per
 * output value, channels fastest; sizes are uniforms (one pipeline for every level).
 */
const upNearestAddWGSL = memoWGSL((scaled: boolean): string => /* wgsl */ `
// ---- kernel: upsample_nearest2x_add${scaled ? ' (avg)' : ''} ----
struct Sizes {
  n: u32,   // output values B * 2H * 2W * C
  C: u32,
  Wo: u32,  // 2W
  Ho: u32,  // 2H
}
@group(0) @binding(0) var<storage, read> lateral: array<f32>;
@group(0) @binding(1) var<storage, read> prev: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> Z: Sizes;

${header1d('Z.n', WG)}
  let c = i % Z.C;
  let p = i / Z.C;
  let x = p % Z.Wo;
  let y = (p / Z.Wo) % Z.Ho;
  let b = p / (Z.Wo * Z.Ho);
  let src = ((b * (Z.Ho / 2u) + y / 2u) * (Z.Wo / 2u) + x / 2u) * Z.C + c;
  out[i] = (lateral[i] + prev[src])${scaled ? ' * 0.5' : ''};
}
`);

/** lateral [B, 2H, 2W, C] + nearest-upsampled prev [B, H, W, C] (times 0.5 with `avg`) -> [B, 2H, 2W, C]. */
export function upsampleNearest2xAdd(ctx: GpuContext, lateral: Tensor, prev: Tensor, opts: { avg?: boolean } = {}): Tensor {
  const [B, Ho, Wo, C] = lateral.shape as [number, number, number, number];
  const ok = lateral.shape.length === 4 && prev.shape.length === 4 && prev.shape[0] === B && 2 * prev.shape[1]! === Ho &&
    2 * prev.shape[2]! === Wo && prev.shape[3] === C;
  if (!ok) throw new Error(`upsampleNearest2xAdd: prev [${prev.shape}] upsampled 2x does not match lateral [${lateral.shape}]`);
  const out = ctx.empty(lateral.shape);
  ctx.run({
    pipeline: ctx.pipeline('upsample_nearest2x_add', upNearestAddWGSL(!!opts.avg)),
    bindings: [lateral, prev, out, ctx.uniform(new Uint32Array([out.size, C, Wo, Ho]))],
    workgroups: grid1d(Math.ceil(out.size / WG)).workgroups,
  });
  return out;
}
