/**
 * The automatic mask generator's output masks, made on the GPU once the survivors are known:
 *
 *   maskBits:  chosen low-res planes [K, m, m] of one crop -> each one's binary mask at the image's
 *              size, as a bit stream: upsampled to the crop's size (resizeBilinear's arithmetic),
 *              thresholded, and placed at the crop's offset in an otherwise empty image (the
 *              official uncrop_masks pads with zeros). Bit k of a mask is pixel k in row-major
 *              order (binary masks), or column-major (what a COCO run-length encoding reads), 32
 *              pixels a u32 word, pixel k at word k >> 5, bit k & 31.
 *   labelMap:  bit streams -> for each pixel, 1 + the largest `rank` of the masks covering
 *              it (0: none), for drawing every mask at once (draw_masks.ts drawLabels).
 *
 * Why this shape: one invocation per output word, so each word is written whole (no atomics) and
 * the bits come out in the order the CPU reads them: run lengths are a scan of the stream that
 * skips whole words of 0s or 1s. The crop's masks are read back only through these streams, after
 * NMS, so the megapixel masks of the candidates that lose are never made.
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { f32bits } from './connected_components.js';
import { upsampledWGSL } from './mask_stats.js';
import { grid1d } from './util.js';

const WG = 256;

export type BitLayout = 'rows' | 'columns';

/** u32 words of one mask's bit stream for an H x W image. */
export const maskWords = (height: number, width: number): number => Math.ceil((height * width) / 32);

const bitsWGSL = /* wgsl */ `
// ---- kernel: amg_mask_bits ----
struct Params {
  count: u32, m: u32, height: u32, width: u32,      // K masks of an H x W image
  crop: vec4u,                                       // x0, y0, x1, y1 (exclusive)
  words: u32, out_offset: u32, columns: u32, _p: u32, // words per mask, first word written, layout
  f: vec4f,                                          // threshold, m / crop h, m / crop w, -
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> planes: array<f32>;   // [*, m, m]
@group(0) @binding(2) var<storage, read> index: array<u32>;    // [K, 2]: (plane, output slot) of each mask
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
${upsampledWGSL('planes')}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (t >= P.count * P.words) { return; }
  let k = t / P.words;
  let word = t % P.words;
  let base = index[2u * k] * P.m * P.m;
  let n = P.height * P.width;
  var bits = 0u;
  for (var b = 0u; b < 32u; b++) {
    let s = word * 32u + b;
    if (s >= n) { break; }
    var y: u32; var x: u32;
    if (P.columns == 1u) { x = s / P.height; y = s % P.height; } else { y = s / P.width; x = s % P.width; }
    if (x < P.crop.x || x >= P.crop.z || y < P.crop.y || y >= P.crop.w) { continue; }
    if (upsampled(base, y - P.crop.y, x - P.crop.x, P.m, P.f.y, P.f.z) > P.f.x) { bits |= 1u << b; }
  }
  out[P.out_offset + index[2u * k + 1u] * P.words + word] = bits;
}
`;

export interface MaskBitsOptions {
  /** the crop the planes were decoded on, XYXY in the image (x1, y1 exclusive) */
  crop: readonly [number, number, number, number];
  width: number;
  height: number;
  /** logit threshold (the generator's mask_threshold) */
  threshold: number;
  layout: BitLayout;
}

/**
 * Writes K bit streams into `out`: mask k is plane index[2k] of `planes` [*, m, m], written at word
 * outOffset + index[2k + 1] * maskWords(H, W). `index` is u32 [K, 2] on the GPU.
 */
export function maskBits(ctx: GpuContext, planes: Tensor, index: Tensor, count: number, out: Tensor, outOffset: number, o: MaskBitsOptions): void {
  const m = planes.shape[planes.shape.length - 1]!;
  const words = maskWords(o.height, o.width);
  if (count === 0) return;
  const [x0, y0, x1, y1] = o.crop;
  const f = Math.fround;
  const params = ctx.uniform(new Uint32Array([
    count, m, o.height, o.width,
    x0, y0, x1, y1,
    words, outOffset, o.layout === 'columns' ? 1 : 0, 0,
    f32bits(f(o.threshold)), f32bits(f(m / (y1 - y0))), f32bits(f(m / (x1 - x0))), 0,
  ]));
  ctx.run({
    pipeline: ctx.pipeline('amg_mask_bits', bitsWGSL),
    bindings: [params, planes, index, out],
    workgroups: grid1d(Math.ceil((count * words) / WG)).workgroups,
  });
}

const labelWGSL = /* wgsl */ `
// ---- kernel: amg_label_map ----
struct Params { count: u32, words: u32, first: u32, columns: u32, height: u32, width: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> bits: array<u32>;    // [K, words], streams in either layout
@group(0) @binding(2) var<storage, read> rank: array<u32>;    // [K]
@group(0) @binding(3) var<storage, read_write> labels: array<u32>; // [H * W]
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (i >= P.height * P.width) { return; }
  // the pixel's place in the streams
  let s = select(i, (i % P.width) * P.height + i / P.width, P.columns == 1u);
  var label = 0u;
  if (P.first == 0u) { label = labels[i]; }
  for (var k = 0u; k < P.count; k++) {
    if (((bits[k * P.words + (s >> 5u)] >> (s & 31u)) & 1u) == 1u) { label = max(label, rank[k] + 1u); }
  }
  labels[i] = label;
}
`;

/**
 * Updates `labels` u32 [H * W] (row-major) with K bit streams: labels = max(labels, rank[k] + 1)
 * where mask k covers the pixel; with `first`, labels start from 0 (whatever the buffer held).
 */
export function labelMap(ctx: GpuContext, bits: Tensor, rank: Tensor, count: number, height: number, width: number, labels: Tensor,
  first: boolean, layout: BitLayout = 'rows'): void {
  if (count === 0 && !first) return;
  const params = ctx.uniform(new Uint32Array([count, maskWords(height, width), first ? 1 : 0, layout === 'columns' ? 1 : 0, height, width, 0, 0]));
  ctx.run({
    pipeline: ctx.pipeline('amg_label_map', labelWGSL),
    bindings: [params, bits, rank, labels],
    workgroups: grid1d(Math.ceil((height * width) / WG)).workgroups,
  });
}
