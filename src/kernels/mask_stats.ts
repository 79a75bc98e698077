/**
 * What the automatic mask generator needs to know about each candidate mask before any of them
 * is read back, on the GPU (the official `_process_batch`, utils/amg.py):
 *
 *   the mask is the low-res logits [m, m] upsampled bilinearly to the crop's size [h, w]
 *   (postprocess_masks: F.interpolate, align_corners=False) and thresholded;
 *   stability_score = #(logit > t + offset) / #(logit > t - offset)   (calculate_stability_score)
 *   area = #(logit > t),  box = [x0, y0, x1, y1] of those pixels       (batched_mask_to_box; empty: 0s)
 *   keep = iou > pred_iou_thresh (if > 0) and stability >= stability_score_thresh (if > 0)
 *          and not is_box_near_crop_edge(box)
 *
 * Why this shape: the official code upsamples every candidate to the crop's full resolution
 * (points_per_batch x 3 masks of up to megapixels each) just to count pixels. Here the upsampled
 * logits are never stored. An invocation takes 8 output rows and one low-res column i: the pixels
 * of a row whose bilinear source column is i are a run (the source index is monotone in the
 * output index; the runs' bounds come from `cellTables`, made with the same arithmetic), and each
 * of them is a convex combination of the row's two vertically interpolated values at columns i and
 * i + 1. So a run whose two ends are both above (or both at or below) a threshold, by more than the
 * rounding of the interpolation, is counted at once; in a run that the mask's edge crosses, a pixel
 * is decided by that linear form too unless it lies within the rounding of a threshold, where the
 * exact arithmetic of `resizeBilinear` decides (so the counts and boxes are those of the masks the
 * generator outputs). Runs are short (the upsampling factor:
 * about 15 pixels for a 512 model's 128x128 logits on a 1920-pixel-wide photo) and many, so the
 * work spreads evenly over the invocations (whole low-res cells per invocation left a few
 * invocations with thousands of pixels each when the factor is large).
 * Per-workgroup partial sums go to a buffer that one thread per mask adds up (no atomics,
 * the same result on every run); that pass also applies the filters, the stability test exactly as
 * float32(I / U) >= thresh (ratio.ts).
 *
 * Outputs, per candidate c of the crop (at `offset + p` for mask p of the batch): stats u32
 * [N, 8] = (I, U, area, x0, y0, x1, y1, keep) and scores f32 [N] (the predicted IoU).
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { f32bits } from './connected_components.js';
import { MUL_WIDE_WGSL, ratioTest, ratioTestWGSL } from './ratio.js';
import { grid1d, memoWGSL } from './util.js';

const WG = 256;
/** output rows per invocation of the partial sums */
const ROWS = 8;
/** u32 words per candidate in the stats buffer */
export const STATS_WORDS = 8;

/**
 * WGSL of `fn upsampled(base, oy, ox, m, sh, sw) -> f32`: the bilinear value at output pixel (oy, ox)
 * of the m x m plane at `base` in the array `src`, as resizeBilinear computes it.
 */
export const upsampledWGSL = (src: string): string => /* wgsl */ `
fn src_index(o: u32, s: f32) -> f32 { return max(s * (f32(o) + 0.5) - 0.5, 0.0); }
fn upsampled(base: u32, oy: u32, ox: u32, m: u32, sh: f32, sw: f32) -> f32 {
  let ry = src_index(oy, sh);
  let rx = src_index(ox, sw);
  let y0 = u32(ry);
  let x0 = u32(rx);
  let y1 = min(y0 + 1u, m - 1u);
  let x1 = min(x0 + 1u, m - 1u);
  let ly1 = ry - f32(y0);
  let lx1 = rx - f32(x0);
  let ly0 = 1.0 - ly1;
  let lx0 = 1.0 - lx1;
  return ly0 * (lx0 * ${src}[base + y0 * m + x0] + lx1 * ${src}[base + y0 * m + x1]) +
         ly1 * (lx0 * ${src}[base + y1 * m + x0] + lx1 * ${src}[base + y1 * m + x1]);
}
`;

// ------------------------------------------------------------------------------------------------
// cell tables

const tablesWGSL = /* wgsl */ `
// ---- kernel: amg_cell_tables ----
// start[j] = the first output index whose bilinear source index is >= j (out if none), j = 0..m,
// for the rows (out = h, scale sh) then the columns (out = w, scale sw).
struct Params { m: u32, h: u32, w: u32, _p: u32, scale: vec4f }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> start: array<u32>;
fn src_index(o: u32, s: f32) -> f32 { return max(s * (f32(o) + 0.5) - 0.5, 0.0); }

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.x;
  if (t >= 2u * (P.m + 1u)) { return; }
  let cols = t > P.m;
  let j = select(t, t - P.m - 1u, cols);
  let n = select(P.h, P.w, cols);
  let s = select(P.scale.x, P.scale.y, cols);
  var lo = 0u;
  var hi = n;          // answer in [lo, hi]
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (u32(src_index(mid, s)) >= j) { hi = mid; } else { lo = mid + 1u; }
  }
  start[t] = lo;
}
`;

/**
 * The output rows (then columns) each low-res row (column) covers when an m x m plane is upsampled
 * to h x w: u32 [2 (m + 1)], rows [start_j, start_{j+1}) have source row j.
 */
export function cellTables(ctx: GpuContext, m: number, h: number, w: number): Tensor {
  const out = ctx.empty([2 * (m + 1)]);
  const params = ctx.uniform(new Uint32Array([m, h, w, 0, f32bits(Math.fround(m / h)), f32bits(Math.fround(m / w)), 0, 0]));
  ctx.run({ pipeline: ctx.pipeline('amg_cell_tables', tablesWGSL), bindings: [params, out], workgroups: [Math.ceil((2 * (m + 1)) / 64)] });
  return out;
}

// ------------------------------------------------------------------------------------------------
// partial sums

const partialsWGSL = memoWGSL((iouMin: number | null) => /* wgsl */ `
// ---- kernel: amg_mask_stats_partials ----
struct Params {
  planes: u32, m: u32, groups: u32, h: u32,   // masks, low-res side, workgroups per mask, crop height
  thr: vec4f,     // (t + offset, t - offset, t, -) as float32
  scale: vec4f,   // (m / h, m / w, -, -)
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> planes: array<f32>;     // [planes, m, m]
@group(0) @binding(2) var<storage, read> iou: array<f32>;        // [planes]
@group(0) @binding(3) var<storage, read> start: array<u32>;      // cellTables (columns from m + 1)
@group(0) @binding(4) var<storage, read_write> partials: array<u32>; // [planes, groups, 8]
var<workgroup> counts: array<vec4u, ${WG}>;
var<workgroup> boxes: array<vec4u, ${WG}>;
${upsampledWGSL('planes')}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let wg = wid.y * nwg.x + wid.x;
  let p = wg / P.groups;
  if (p >= P.planes) { return; }
  let m = P.m;
  let base = p * m * m;
  // this invocation: output rows oy0 .. oy0 + ${ROWS - 1}, the pixels of each whose source column is i
  let seg = (wg % P.groups) * ${WG}u + lid;
  let oy0 = (seg / m) * ${ROWS}u;
  let i = seg % m;
  // masks the IoU filter drops are not counted (their stats are never used)
  let score = iou[p];
  let live = oy0 < P.h${iouMin === null ? '' : ` && score >= ${f32lit(iouMin)}`};
  var c = vec4u(0u);                                   // (I, U, area, -)
  var b = vec4u(0xffffffffu, 0xffffffffu, 0u, 0u);     // (x0, y0, x1, y1) of logit > t
  let c0 = start[m + 1u + i];
  let c1 = start[m + 1u + i + 1u];
  if (live && c1 > c0) {
    let i1 = min(i + 1u, m - 1u);
    for (var oy = oy0; oy < min(oy0 + ${ROWS}u, P.h); oy++) {
      let ry = src_index(oy, P.scale.x);
      let y0 = u32(ry);
      let y1 = min(y0 + 1u, m - 1u);
      let ly1 = ry - f32(y0);
      let ly0 = 1.0 - ly1;
      let a = planes[base + y0 * m + i];
      let bb = planes[base + y0 * m + i1];
      let cc = planes[base + y1 * m + i];
      let d = planes[base + y1 * m + i1];
      // every pixel of the run is lx0 * left + lx1 * right (up to rounding)
      let left = ly0 * a + ly1 * cc;
      let right = ly0 * bb + ly1 * d;
      let lo = min(left, right);
      let hi = max(left, right);
      // the interpolation's rounding (exact formula or linear form) stays far inside 2^-18 of the
      // largest corner (a few ulps: 2^-22)
      let slack = max(max(abs(a), abs(bb)), max(abs(cc), abs(d))) * (1.0 / 262144.0);
      let above = vec3<bool>(lo - slack > P.thr.x, lo - slack > P.thr.y, lo - slack > P.thr.z);
      let below = vec3<bool>(hi + slack <= P.thr.x, hi + slack <= P.thr.y, hi + slack <= P.thr.z);
      if (all(above | below)) {
        let n = c1 - c0;
        c += vec4u(select(0u, n, above.x), select(0u, n, above.y), select(0u, n, above.z), 0u);
        if (above.z) { b = vec4u(min(b.x, c0), min(b.y, oy), max(b.z, c1 - 1u), max(b.w, oy)); }
      } else {
        // the run's linear form decides a pixel unless it is within the slack of a threshold,
        // where the exact arithmetic decides
        let thr = vec3f(P.thr.x, P.thr.y, P.thr.z);
        for (var ox = c0; ox < c1; ox++) {
          let lx1 = src_index(ox, P.scale.y) - f32(i);
          let est = left + (right - left) * lx1;
          var v = est;
          if (any(abs(vec3f(est) - thr) <= vec3f(slack))) { v = upsampled(base, oy, ox, m, P.scale.x, P.scale.y); }
          c += vec4u(select(0u, 1u, v > P.thr.x), select(0u, 1u, v > P.thr.y), select(0u, 1u, v > P.thr.z), 0u);
          if (v > P.thr.z) { b = vec4u(min(b.x, ox), min(b.y, oy), max(b.z, ox), max(b.w, oy)); }
        }
      }
    }
  }
  counts[lid] = c;
  boxes[lid] = b;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
      counts[lid] += counts[lid + s];
      let o = boxes[lid + s];
      let q = boxes[lid];
      boxes[lid] = vec4u(min(q.x, o.x), min(q.y, o.y), max(q.z, o.z), max(q.w, o.w));
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let k = wg * 8u;
    let cc = counts[0];
    let bb = boxes[0];
    partials[k] = cc.x; partials[k + 1u] = cc.y; partials[k + 2u] = cc.z;
    partials[k + 3u] = bb.x; partials[k + 4u] = bb.y; partials[k + 5u] = bb.z; partials[k + 6u] = bb.w;
  }
}
`);

// ------------------------------------------------------------------------------------------------
// finalize: sums, filters

const finalizeWGSL = memoWGSL((iouMin: number | null, stabTest: string | null) => /* wgsl */ `
// ---- kernel: amg_mask_stats_finalize ----
struct Params {
  planes: u32, groups: u32, offset: u32, _p: u32,
  crop: vec4i,    // the crop box in the image, XYXY (x1, y1 exclusive)
  orig: vec4i,    // the image box (0, 0, W, H)
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> partials: array<u32>;
@group(0) @binding(2) var<storage, read> iou: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<u32>;   // [N, 8]
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;  // [N]
${stabTest === null ? '' : MUL_WIDE_WGSL + stabTest}
fn near(v: i32, c: i32, o: i32) -> bool { return abs(v - c) <= 20 && !(abs(v - o) <= 20); }

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let p = gid.x;
  if (p >= P.planes) { return; }
  var c = vec3u(0u);
  var b = vec4u(0xffffffffu, 0xffffffffu, 0u, 0u);
  for (var g = 0u; g < P.groups; g++) {
    let k = (p * P.groups + g) * 8u;
    c += vec3u(partials[k], partials[k + 1u], partials[k + 2u]);
    b = vec4u(min(b.x, partials[k + 3u]), min(b.y, partials[k + 4u]), max(b.z, partials[k + 5u]), max(b.w, partials[k + 6u]));
  }
  if (c.z == 0u) { b = vec4u(0u); }   // an empty mask's box is [0, 0, 0, 0]
  let score = iou[p];
  var keep = true;
  ${iouMin === null ? '' : `keep = keep && score >= ${f32lit(iouMin)};   // iou > pred_iou_thresh`}
  ${stabTest === null ? '' : 'keep = keep && stability_passes(u32(f32(c.x)), u32(f32(c.y)));   // float32 counts, as torch divides them'}
  // is_box_near_crop_edge, on the box moved into the image's frame
  let v = vec4i(b) + vec4i(P.crop.x, P.crop.y, P.crop.x, P.crop.y);
  let edge = near(v.x, P.crop.x, P.orig.x) || near(v.y, P.crop.y, P.orig.y) ||
             near(v.z, P.crop.z, P.orig.z) || near(v.w, P.crop.w, P.orig.w);
  keep = keep && !edge;
  let o = (P.offset + p) * 8u;
  stats[o] = c.x; stats[o + 1u] = c.y; stats[o + 2u] = c.z;
  stats[o + 3u] = b.x; stats[o + 4u] = b.y; stats[o + 5u] = b.z; stats[o + 6u] = b.w;
  stats[o + 7u] = select(0u, 1u, keep);
  scores[P.offset + p] = score;
}
`);

function f32lit(v: number): string {
  // an exact float32 literal: its bit pattern
  return `bitcast<f32>(${f32bits(v)}u)`;
}

/** The smallest float32 above a double (x > t <=> x >= it, for any float32 x). */
export function f32Above(t: number): number {
  const r = Math.fround(t);
  if (r > t) return r;
  const a = new Float32Array([r]), u = new Uint32Array(a.buffer);
  if (r === 0) { u[0] = 1; return a[0]!; }
  u[0] = u[0]! + (r > 0 ? 1 : -1);
  return a[0]!;
}

export interface MaskStatsOptions {
  /** the generator's mask_threshold (logit), stability_score_offset */
  maskThreshold: number;
  stabilityScoreOffset: number;
  /** filters: off when <= 0, as in the reference */
  predIouThresh: number;
  stabilityScoreThresh: number;
  /** the crop, XYXY in the image (x1, y1 exclusive), and the image's size */
  crop: readonly [number, number, number, number];
  imageWidth: number;
  imageHeight: number;
}

/**
 * The stats of a batch of candidate masks of one crop: planes [P, m, m] (low-res logits, after any
 * hole / sprinkle postprocessing) and their predicted IoUs [P]; `tables` from cellTables(m, h, w)
 * for the crop's size. Writes candidates offset .. offset + P - 1 of `stats` and `scores`.
 */
export function maskStats(ctx: GpuContext, planes: Tensor, iou: Tensor, tables: Tensor, o: MaskStatsOptions,
  out: { stats: Tensor; scores: Tensor; offset: number }): void {
  const m = planes.shape[planes.shape.length - 1]!;
  const P = planes.size / (m * m);
  if (iou.size !== P) throw new Error(`maskStats: ${iou.size} IoUs for ${P} masks`);
  if ((out.offset + P) * STATS_WORDS > out.stats.size || out.offset + P > out.scores.size) {
    throw new Error(`maskStats: masks ${out.offset}..${out.offset + P - 1} do not fit the stats of ${out.scores.size} candidates`);
  }
  if (P === 0) return;
  const [x0, y0, x1, y1] = o.crop;
  const h = y1 - y0, w = x1 - x0;
  const f = Math.fround;
  const groups = Math.ceil((Math.ceil(h / ROWS) * m) / WG);
  const iouMin = o.predIouThresh > 0 ? f32Above(o.predIouThresh) : null;
  const partials = ctx.empty([P * groups * 8]);
  const p1 = ctx.uniform(new Uint32Array([
    P, m, groups, h,
    f32bits(f(o.maskThreshold + o.stabilityScoreOffset)), f32bits(f(o.maskThreshold - o.stabilityScoreOffset)), f32bits(f(o.maskThreshold)), 0,
    f32bits(f(m / h)), f32bits(f(m / w)), 0, 0,
  ]));
  ctx.run({
    pipeline: ctx.pipeline('amg_mask_stats_partials', partialsWGSL(iouMin)),
    bindings: [p1, planes, iou, tables, partials],
    workgroups: grid1d(P * groups).workgroups,
  });
  const stab = o.stabilityScoreThresh > 0 ? ratioTestWGSL('stability_passes', ratioTest(o.stabilityScoreThresh, '>=')) : null;
  const p2 = ctx.uniform(new Uint32Array([
    P, groups, out.offset, 0,
    x0, y0, x1, y1,
    0, 0, o.imageWidth, o.imageHeight,
  ]));
  ctx.run({
    pipeline: ctx.pipeline('amg_mask_stats_finalize', finalizeWGSL(iouMin, stab)),
    bindings: [p2, partials, iou, out.stats, out.scores],
    workgroups: [Math.ceil(P / 64)],
  });
  partials.release();
}
