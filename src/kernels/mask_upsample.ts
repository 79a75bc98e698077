/**
 * Masks at the image's resolution, from low-res logits, in tiles.
 *
 * The predictors decode masks at S/4 x S/4 and return them at the image's size: bilinear
 * upsampling (F.interpolate, align_corners=False), then logits, 0/1 bytes or an RGBA overlay. At
 * a phone photo's size that output is larger than one storage binding may be (4000x3000 x 3 masks
 * of f32 is 144 MB; WebGPU's default binding limit is 128 MiB), so it is never made whole on the
 * GPU: each kernel computes one tile of the output straight from the low-res logits (which are
 * small), the tile is copied into the staging buffers of a Readback, and the tile's buffer is
 * reused for the next one (the copies are ordered between the dispatches). Tiles are at most
 * `ctx.tileBytes`.
 *
 * A tile is a run of the output in its own order: elements of [planes, H, W] (logits), words of 4
 * such elements (bytes), or pixels of [H, W] (overlay, which looks at every plane of a pixel). Its
 * start is given as (plane, pixel), so no index in a kernel exceeds H * W plus a tile, whatever the
 * number of planes. Every size is a uniform: one pipeline per mode serves every image size.
 *
 * `nonOverlap` (the video predictor's non_overlap_masks, _apply_non_overlapping_constraints): at
 * each pixel only the plane with the highest upsampled logit (the first on ties) keeps its value,
 * the others are clamped to at most -10, as nonOverlapping(resizeBilinear(x)) would give.
 */
import type { GpuContext, Readback } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { f32bits } from './connected_components.js';
import { grid1d, memoWGSL } from './util.js';

const WG = 256;

export type UpsampleMode = 'logits' | 'bytes' | 'overlay';

/** Largest output side: a texture's side on any device, and what keeps H * W within a u32 index. */
const MAX_SIDE = 65536;

const PARAMS = /* wgsl */ `
struct Params {
  planes: u32,      // low-res planes [planes, h, w]
  h: u32,
  w: u32,
  H: u32,           // output size
  W: u32,
  plane0: u32,      // the tile starts at (plane0, pix0)
  pix0: u32,
  count: u32,       // outputs in the tile (elements, words or pixels)
  plane_end: u32,   // outputs of planes >= plane_end are not produced (bytes: 0)
  sh: f32,          // h / H and w / W, as f32 (the resize scales)
  sw: f32,
  thr: f32,         // logit threshold (bytes, overlay)
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;

// plane p of x upsampled at output pixel (oy, ox): resizeBilinear's arithmetic
fn bilinear(p: u32, oy: u32, ox: u32) -> f32 {
  let ry = max(P.sh * (f32(oy) + 0.5) - 0.5, 0.0);
  let rx = max(P.sw * (f32(ox) + 0.5) - 0.5, 0.0);
  let y0 = u32(ry);
  let x0 = u32(rx);
  let y1 = min(y0 + 1u, P.h - 1u);
  let x1 = min(x0 + 1u, P.w - 1u);
  let ly1 = ry - f32(y0);
  let lx1 = rx - f32(x0);
  let ly0 = 1.0 - ly1;
  let lx0 = 1.0 - lx1;
  let base = p * P.h * P.w;
  return ly0 * (lx0 * x[base + y0 * P.w + x0] + lx1 * x[base + y0 * P.w + x1]) +
         ly1 * (lx0 * x[base + y1 * P.w + x0] + lx1 * x[base + y1 * P.w + x1]);
}
`;

/** The output value of plane p at pixel pix, with or without the non-overlap constraint. */
const valueWGSL = (nonOverlap: boolean): string => nonOverlap ? /* wgsl */ `
fn value(p: u32, pix: u32) -> f32 {
  let oy = pix / P.W;
  let ox = pix % P.W;
  var best = 0u;
  var bestV = bilinear(0u, oy, ox);
  for (var o = 1u; o < P.planes; o++) {
    let v = bilinear(o, oy, ox);
    if (v > bestV) { best = o; bestV = v; }
  }
  let v = select(bilinear(p, oy, ox), bestV, p == best);
  return select(min(v, -10.0), v, p == best);
}
` : /* wgsl */ `
fn value(p: u32, pix: u32) -> f32 {
  return bilinear(p, pix / P.W, pix % P.W);
}
`;

const HEAD = /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let k = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (k >= P.count) { return; }
  let hw = P.H * P.W;`;

const kernelWGSL = memoWGSL((mode: UpsampleMode, nonOverlap: boolean): string => {
  if (mode === 'logits') return /* wgsl */ `
// ---- kernel: upsample_logits${nonOverlap ? ' (non-overlapping)' : ''} ----
${PARAMS}
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${valueWGSL(nonOverlap)}${HEAD}
  let e = P.pix0 + k;
  out[k] = value(P.plane0 + e / hw, e % hw);
}
`;
  if (mode === 'bytes') return /* wgsl */ `
// ---- kernel: upsample_mask_bytes${nonOverlap ? ' (non-overlapping)' : ''} ----
// word k holds elements 4k .. 4k + 3 of the tile, byte j = 1 where the logit is > thr
${PARAMS}
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
${valueWGSL(nonOverlap)}${HEAD}
  var word = 0u;
  for (var j = 0u; j < 4u; j++) {
    let e = P.pix0 + 4u * k + j;
    let p = P.plane0 + e / hw;
    if (p < P.plane_end && value(p, e % hw) > P.thr) { word |= 1u << (8u * j); }
  }
  out[k] = word;
}
`;
  return /* wgsl */ `
// ---- kernel: upsample_overlay ----
// pixel k of the tile: the colour of the last plane covering it (logit > thr), else transparent
${PARAMS}
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read> colors: array<u32>;   // [planes] packed RGBA
${HEAD}
  let pix = P.pix0 + k;
  let oy = pix / P.W;
  let ox = pix % P.W;
  var px = 0u;
  for (var p = 0u; p < P.planes; p++) {
    if (bilinear(p, oy, ox) > P.thr) { px = colors[p]; }
  }
  out[k] = px;
}
`;
});

export interface UpsampleOptions {
  /** output size */
  H: number;
  W: number;
  /** logits, 0/1 bytes (4 per u32 word) or an RGBA overlay (one u32 per pixel) */
  mode: UpsampleMode;
  /** the planes to output, [start, end) (default all; logits and bytes) */
  planes?: readonly [number, number];
  /** bytes and overlay: covered where the logit is > threshold (default 0) */
  threshold?: number;
  /** logits and bytes: the non-overlap constraint across all planes */
  nonOverlap?: boolean;
  /** overlay: [r, g, b] per plane, cycled */
  colors?: readonly (readonly [number, number, number])[];
  /** overlay: alpha 0..255 of covered pixels (default 128) */
  alpha?: number;
}

/** Bytes of the output (a multiple of 4: bytes are packed in words, the last one zero-padded). */
export function upsampleByteLength(low: Tensor, o: UpsampleOptions): number {
  return plan(low, o).bytes;
}

interface Plan {
  planes: number;
  h: number;
  w: number;
  /** the planes output, [start, end) */
  start: number;
  end: number;
  /** outputs: elements of the planes (logits), words of 4 of them (bytes), pixels (overlay) */
  units: number;
  /** bytes of the output */
  bytes: number;
}

function plan(low: Tensor, o: UpsampleOptions): Plan {
  for (const [k, v] of [['H', o.H], ['W', o.W]] as const) {
    if (!(Number.isInteger(v) && v > 0 && v <= MAX_SIDE)) throw new Error(`upsample: ${k} ${v} is not an integer in 1..${MAX_SIDE}`);
  }
  if (o.H * o.W > 2 ** 31) throw new Error(`upsample: ${o.W}x${o.H} is more than 2^31 pixels`);
  const thr = o.threshold ?? 0;
  if (!Number.isFinite(thr)) throw new Error(`upsample: threshold ${thr} is not finite`);
  if (low.shape.length < 2) throw new Error(`upsample: logits [${low.shape}] have no [h, w] axes`);
  const h = low.shape[low.shape.length - 2]!, w = low.shape[low.shape.length - 1]!;
  const planes = h * w > 0 ? low.size / (h * w) : 0;
  const [start, end] = o.planes ?? [0, planes];
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end <= planes && start <= end)) {
    throw new Error(`upsample: planes [${start}, ${end}) of ${planes}`);
  }
  const hw = o.H * o.W, n = (end - start) * hw;
  if (o.mode === 'overlay') return { planes, h, w, start, end, units: hw, bytes: hw * 4 };
  if (o.mode === 'bytes') return { planes, h, w, start, end, units: Math.ceil(n / 4), bytes: Math.ceil(n / 4) * 4 };
  return { planes, h, w, start, end, units: n, bytes: n * 4 };
}

/** The overlay's colour of each plane, packed RGBA in u32 words (held in an f32 tensor). */
function planeColors(ctx: GpuContext, planes: number, o: UpsampleOptions): Tensor {
  const list = o.colors ?? [];
  if (list.length === 0) throw new Error('upsample: an overlay needs colours');
  const alpha = o.alpha ?? 128;
  const packed = new Uint32Array(Math.max(planes, 1));
  for (let p = 0; p < planes; p++) {
    const [r, g, b] = list[p % list.length]!;
    packed[p] = ((r & 255) | ((g & 255) << 8) | ((b & 255) << 16) | ((alpha & 255) << 24)) >>> 0;
  }
  return ctx.upload(new Float32Array(packed.buffer), [packed.length]);
}

/** Records the kernel for `count` outputs from output unit `u0` into `out`. */
function record(ctx: GpuContext, low: Tensor, o: UpsampleOptions, p: Plan, colors: Tensor | null, u0: number, count: number, out: Tensor): void {
  const { H, W, mode } = o;
  const hw = H * W;
  // the tile's first output as (plane, pixel)
  const e0 = mode === 'bytes' ? 4 * u0 : u0;
  const plane0 = mode === 'overlay' ? 0 : p.start + Math.floor(e0 / hw);
  const pix0 = e0 % hw;
  const params = ctx.uniform(new Uint32Array([
    p.planes, p.h, p.w, H, W, plane0, pix0, count, p.end,
    f32bits(p.h / H), f32bits(p.w / W), f32bits(o.threshold ?? 0),
  ]));
  const pipeline = ctx.pipeline(`upsample_${mode}`, kernelWGSL(mode, mode !== 'overlay' && (o.nonOverlap ?? false)));
  ctx.run({
    pipeline,
    bindings: colors ? [params, low, out, colors] : [params, low, out],
    workgroups: grid1d(Math.ceil(count / WG)).workgroups,
  });
}

/**
 * Upsamples low-res logits [..., h, w] (planes = the leading axes) to H x W and records the output
 * (see UpsampleOptions), tile by tile, into the current part of the readback `rb`.
 */
export function upsampleInto(ctx: GpuContext, low: Tensor, o: UpsampleOptions, rb: Readback): void {
  const p = plan(low, o);
  const unitsPerTile = Math.max(1, Math.floor(ctx.tileBytes / 4));
  const colors = o.mode === 'overlay' ? planeColors(ctx, p.planes, o) : null;
  const tile = ctx.empty([Math.max(1, Math.min(p.units, unitsPerTile))]);
  try {
    for (let u0 = 0; u0 < p.units; u0 += unitsPerTile) {
      const count = Math.min(unitsPerTile, p.units - u0);
      record(ctx, low, o, p, colors, u0, count, tile);
      rb.add(tile, count * 4);
    }
  } finally {
    tile.release();
    colors?.release();
  }
}

/**
 * The whole output as one tensor, for outputs that fit one binding: logits [..., H, W], or the
 * words of bytes / an overlay. Used where the next kernel reads the upsampled logits on the GPU
 * (resizeBilinear to the model's input size).
 */
export function upsampleTensor(ctx: GpuContext, low: Tensor, o: UpsampleOptions): Tensor {
  const p = plan(low, o);
  if (p.bytes > ctx.maxBindingBytes) {
    throw new RangeError(`upsample: ${p.bytes} bytes of output (${p.end - p.start} planes of ${o.W}x${o.H}) exceed one GPU binding (${ctx.maxBindingBytes} bytes); read them back in tiles (upsampleInto)`);
  }
  const all = p.start === 0 && p.end === p.planes;
  const out = ctx.empty(o.mode !== 'logits' ? [Math.max(1, p.units)] : all ? [...low.shape.slice(0, -2), o.H, o.W] : [p.end - p.start, o.H, o.W]);
  if (p.units === 0) return out;
  const colors = o.mode === 'overlay' ? planeColors(ctx, p.planes, o) : null;
  record(ctx, low, o, p, colors, 0, p.units, out);
  colors?.release();
  return out;
}
