/**
 * Mask postprocessing of the official predictors, on low-res mask logits, on the GPU:
 *
 *   - postprocessLowRes: EfficientTAMTransforms.postprocess_masks (utils/transforms.py) before its
 *     bilinear resize, used by the image predictor with max_hole_area / max_sprinkle_area:
 *       holes     = background components (logit <= threshold) of area <= maxHoleArea
 *                   -> set to threshold + 10
 *       sprinkles = foreground components (logit > threshold) of area <= maxSprinkleArea
 *                   -> set to threshold - 10
 *   - fillHolesInMaskScores: fill_holes_in_mask_scores (utils/misc.py), used by the video
 *     predictor with fill_hole_area: background components (logit <= 0, whatever the threshold)
 *     of area <= maxArea -> 0.1.
 *
 * Components are 8-connected, per image plane (connected_components.ts).
 *
 * Note on the order of the two steps of postprocess_masks: the official code flattens its input
 * into the image batch it labels once, before filling holes, and labels the sprinkles from that
 * same flattened tensor. So the sprinkles are the foreground components of the *input* logits, not
 * of the hole-filled ones: a filled hole does not join (or enlarge) the foreground around it, and a
 * small foreground ring can be removed while the hole it enclosed stays filled. We reproduce that:
 * both component passes read the input, and one final pass writes
 *   out = sprinkle ? threshold - 10 : hole ? threshold + 10 : x
 * (a pixel cannot be both: holes are input background, sprinkles input foreground).
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { connectedComponents, f32bits } from './connected_components.js';
import { grid1d } from './util.js';

const WG = 256;

export interface PostprocessOptions {
  /** fill background components of at most this area (0: off, the official default) */
  maxHoleArea?: number;
  /** remove foreground components of at most this area (0: off, the official default) */
  maxSprinkleArea?: number;
  /** the mask threshold on logits (the official mask_threshold, 0) */
  threshold?: number;
}

// The final select. Areas are 0 on pixels outside the tested set, so `area > 0` is the
// reference's `labels > 0`; a step that is off gets max = -1 and never fires.
const applyWGSL = /* wgsl */ `
// ---- kernel: mask_postprocess_apply ----
struct Params {
  n: u32,
  max_hole: f32,
  max_sprinkle: f32,
  hole_value: f32,
  sprinkle_value: f32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> hole_areas: array<f32>;
@group(0) @binding(3) var<storage, read> sprinkle_areas: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (i >= P.n) { return; }
  let ha = hole_areas[i];
  let sa = sprinkle_areas[i];
  var v = x[i];
  if (ha > 0.0 && ha <= P.max_hole) { v = P.hole_value; }
  if (sa > 0.0 && sa <= P.max_sprinkle) { v = P.sprinkle_value; }
  out[i] = v;
}
`;

interface Step {
  areas: Tensor;
  max: number;
  value: number;
}

function apply(ctx: GpuContext, x: Tensor, hole: Step | null, sprinkle: Step | null): Tensor {
  const out = ctx.empty(x.shape);
  if (x.size === 0) return out;
  const params = ctx.uniform(new Uint32Array([
    x.size,
    f32bits(hole ? hole.max : -1), f32bits(sprinkle ? sprinkle.max : -1),
    f32bits(hole ? hole.value : 0), f32bits(sprinkle ? sprinkle.value : 0),
  ]));
  ctx.run({
    pipeline: ctx.pipeline('mask_postprocess_apply', applyWGSL),
    // a step that is off reads x in its slot (never used: its max is -1)
    bindings: [params, x, hole?.areas ?? x, sprinkle?.areas ?? x, out],
    workgroups: grid1d(Math.ceil(x.size / WG)).workgroups,
  });
  return out;
}

function checkArea(name: string, v: number): void {
  if (!(v >= 0) || !Number.isFinite(v)) throw new Error(`${name}: ${v} is not a non-negative finite area`);
}

/** The areas of the background (logit <= threshold) components, released by the caller. */
function holeAreas(ctx: GpuContext, logits: Tensor, threshold: number): Tensor {
  const cc = connectedComponents(ctx, logits, { threshold, below: true });
  cc.labels.release();
  return cc.areas;
}

function sprinkleAreas(ctx: GpuContext, logits: Tensor, threshold: number): Tensor {
  const cc = connectedComponents(ctx, logits, { threshold });
  cc.labels.release();
  return cc.areas;
}

/**
 * Fills holes: background components (logit <= threshold) of area <= maxHoleArea get
 * threshold + 10. logits [..., H, W] -> a new tensor of the same shape.
 */
export function fillHoles(ctx: GpuContext, logits: Tensor, maxHoleArea: number, threshold = 0): Tensor {
  return postprocessLowRes(ctx, logits, { maxHoleArea, threshold });
}

/**
 * Removes sprinkles: foreground components (logit > threshold) of area <= maxSprinkleArea get
 * threshold - 10. logits [..., H, W] -> a new tensor of the same shape.
 */
export function removeSprinkles(ctx: GpuContext, logits: Tensor, maxSprinkleArea: number, threshold = 0): Tensor {
  return postprocessLowRes(ctx, logits, { maxSprinkleArea, threshold });
}

/**
 * postprocess_masks without the resize: holes, then sprinkles (both found on the input logits,
 * see the note at the top). logits [..., H, W] (e.g. [B, M, 256, 256]) -> a new tensor of the same
 * shape; with both areas 0 it is a copy.
 */
export function postprocessLowRes(ctx: GpuContext, logits: Tensor, o: PostprocessOptions = {}): Tensor {
  const maxHole = o.maxHoleArea ?? 0, maxSprinkle = o.maxSprinkleArea ?? 0;
  const thr = o.threshold ?? 0;
  checkArea('postprocessLowRes: maxHoleArea', maxHole);
  checkArea('postprocessLowRes: maxSprinkleArea', maxSprinkle);
  if (!Number.isFinite(thr)) throw new Error(`postprocessLowRes: threshold ${thr} is not finite`);
  // the fill values: Python floats (threshold +- 10.0) stored into the f32 logits
  const hole = maxHole > 0 ? { areas: holeAreas(ctx, logits, thr), max: maxHole, value: thr + 10 } : null;
  const sprinkle = maxSprinkle > 0 ? { areas: sprinkleAreas(ctx, logits, thr), max: maxSprinkle, value: thr - 10 } : null;
  const out = apply(ctx, logits, hole, sprinkle);
  hole?.areas.release();
  sprinkle?.areas.release();
  return out;
}

/**
 * fill_holes_in_mask_scores (the video predictor's fill_hole_area): background components
 * (logit <= 0) of area <= maxArea get 0.1. mask [..., H, W] -> a new tensor of the same shape.
 */
export function fillHolesInMaskScores(ctx: GpuContext, mask: Tensor, maxArea: number): Tensor {
  if (!(maxArea > 0) || !Number.isFinite(maxArea)) throw new Error(`fillHolesInMaskScores: maxArea ${maxArea} must be positive`);
  const areas = holeAreas(ctx, mask, 0);
  const out = apply(ctx, mask, { areas, max: maxArea, value: 0.1 }, null);
  areas.release();
  return out;
}
