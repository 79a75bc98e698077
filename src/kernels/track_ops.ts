/**
 * Small kernels of the video tracking step (efficienttam_base.py's `_forward_sam_heads` and
 * `_encode_new_memory`), each a few hundred floats or one S x S plane:
 *
 * - pickBestMask: the multimask choice by predicted IoU (first maximum, as torch.argmax), the
 *   matching output token, and the object-score gate (masks of an absent object -> NO_OBJ_SCORE);
 * - objPtrGate: the object pointer's no-object handling (fixed / soft no_obj_ptr);
 * - memoryFinish: the no-object spatial embedding and the bfloat16 rounding of the stored memory
 *   (the official predictor keeps `maskmem_features` in bfloat16).
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { f32lit, grid1d, header1d } from './util.js';

const WG = 256;

/** The reference's placeholder logit for a missing object. */
export const NO_OBJ_SCORE = -1024;

export interface PickBestOptions {
  /** gate the masks on the object score (pred_obj_scores): score <= 0 -> every logit NO_OBJ_SCORE */
  gateOnScore: boolean;
}

/**
 * masks [B, M, h, w], iou [B, M], tokens [B, T, C] (T = M or 1), score [B, 1] ->
 *   lowRes [B, 1, h, w] = masks[b, best] (or NO_OBJ_SCORE where score <= 0 when gated),
 *   token [B, C] = tokens[b, T > 1 ? best : 0]
 * with best = the first index of the largest IoU (0 when M = 1). One workgroup per batch element.
 */
export function pickBestMask(ctx: GpuContext, masks: Tensor, iou: Tensor, tokens: Tensor, score: Tensor,
  o: PickBestOptions): { lowRes: Tensor; token: Tensor } {
  const [B, M, h, w] = masks.shape as [number, number, number, number];
  const [, T, C] = tokens.shape as [number, number, number];
  if (masks.shape.length !== 4 || iou.size !== B * M || tokens.shape.length !== 3 || tokens.shape[0] !== B ||
    !(T === M || T === 1) || score.size !== B) {
    throw new Error(`pickBestMask: masks [${masks.shape}], iou [${iou.shape}], tokens [${tokens.shape}], score [${score.shape}] do not fit`);
  }
  const hw = h * w;
  const lowRes = ctx.empty([B, 1, h, w]);
  const token = ctx.empty([B, C]);
  const wgsl = /* wgsl */ `
// ---- kernel: pick_best_mask ----
@group(0) @binding(0) var<storage, read> masks: array<f32>;
@group(0) @binding(1) var<storage, read> iou: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<f32>;
@group(0) @binding(3) var<storage, read_write> lowRes: array<f32>;
@group(0) @binding(4) var<storage, read_write> token: array<f32>;
${o.gateOnScore ? '@group(0) @binding(5) var<storage, read> score: array<f32>;' : ''}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.x;
  var best = 0u;
  for (var m = 1u; m < ${M}u; m++) { if (iou[b * ${M}u + m] > iou[b * ${M}u + best]) { best = m; } }
  let absent = ${o.gateOnScore ? 'score[b] <= 0.0' : 'false'};
  let src = (b * ${M}u + best) * ${hw}u;
  for (var i = lid; i < ${hw}u; i += ${WG}u) {
    lowRes[b * ${hw}u + i] = select(masks[src + i], ${f32lit(NO_OBJ_SCORE)}, absent);
  }
  let t = ${T > 1 ? 'best' : '0u'};
  for (var c = lid; c < ${C}u; c += ${WG}u) {
    token[b * ${C}u + c] = tokens[(b * ${T}u + t) * ${C}u + c];
  }
}
`;
  ctx.run({ pipeline: ctx.pipeline('pick_best_mask', wgsl), bindings: o.gateOnScore ? [masks, iou, tokens, lowRes, token, score] : [masks, iou, tokens, lowRes, token], workgroups: [B] });
  return { lowRes, token };
}

export interface ObjPtrGateOptions {
  /** fixed_no_obj_ptr: the pointer is replaced (not offset) by no_obj_ptr when the object is absent */
  fixed: boolean;
  /** soft_no_obj_ptr: lambda = sigmoid(score) instead of score > 0 */
  soft: boolean;
}

/**
 * ptr [B, C], score [B, 1], noObjPtr [C] -> [B, C]:
 *   lambda = soft ? sigmoid(score) : (score > 0 ? 1 : 0)
 *   out = (fixed ? lambda * ptr : ptr) + (1 - lambda) * noObjPtr
 */
export function objPtrGate(ctx: GpuContext, ptr: Tensor, score: Tensor, noObjPtr: Tensor, o: ObjPtrGateOptions): Tensor {
  const C = noObjPtr.size;
  const B = ptr.size / C;
  if (!Number.isInteger(B) || score.size !== B) throw new Error(`objPtrGate: ptr [${ptr.shape}], score [${score.shape}], noObjPtr [${noObjPtr.shape}]`);
  const out = ctx.empty(ptr.shape);
  const wgsl = /* wgsl */ `
// ---- kernel: obj_ptr_gate ----
@group(0) @binding(0) var<storage, read> ptr: array<f32>;
@group(0) @binding(1) var<storage, read> score: array<f32>;
@group(0) @binding(2) var<storage, read> noObjPtr: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${header1d(B * C, WG)}
  let s = score[i / ${C}u];
  let lambda = ${o.soft ? '1.0 / (1.0 + exp(-s))' : 'select(0.0, 1.0, s > 0.0)'};
  let p = ${o.fixed ? 'lambda * ptr[i]' : 'ptr[i]'};
  out[i] = p + (1.0 - lambda) * noObjPtr[i % ${C}u];
}
`;
  ctx.run({ pipeline: ctx.pipeline('obj_ptr_gate', wgsl), bindings: [ptr, score, noObjPtr, out], workgroups: grid1d(Math.ceil((B * C) / WG)).workgroups });
  return out;
}

/**
 * The stored spatial memory: features [N, D] (+ noObjEmbed [D] where score <= 0, when given),
 * rounded to bfloat16 (round to nearest even, as torch's `.to(torch.bfloat16)`) and kept as f32.
 */
export function memoryFinish(ctx: GpuContext, features: Tensor, score: Tensor, noObjEmbed: Tensor | null, o: { bf16: boolean }): Tensor {
  const D = features.shape[features.shape.length - 1]!;
  const n = features.size;
  const out = ctx.empty(features.shape);
  const wgsl = /* wgsl */ `
// ---- kernel: memory_finish ----
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${noObjEmbed ? `@group(0) @binding(2) var<storage, read> score: array<f32>;
@group(0) @binding(3) var<storage, read> noObj: array<f32>;` : ''}

fn bf16_round(v: f32) -> f32 {
  let u = bitcast<u32>(v);
  if ((u & 0x7f800000u) == 0x7f800000u) { return v; }   // inf / nan unchanged
  let r = u + 0x7fffu + ((u >> 16u) & 1u);
  return bitcast<f32>(r & 0xffff0000u);
}
${header1d(n, WG)}
  var v = x[i];
  ${noObjEmbed ? `v = v + select(0.0, 1.0, score[0] <= 0.0) * noObj[i % ${D}u];` : ''}
  out[i] = ${o.bf16 ? 'bf16_round(v)' : 'v'};
}
`;
  const bindings = noObjEmbed ? [features, out, score, noObjEmbed] : [features, out];
  ctx.run({ pipeline: ctx.pipeline('memory_finish', wgsl), bindings, workgroups: grid1d(Math.ceil(n / WG)).workgroups });
  return out;
}

/** bfloat16 rounding on the CPU (reference for tests): round to nearest, ties to even. */
export function bf16RoundCpu(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  const u = new Uint32Array(out.buffer);
  out.set(x);
  for (let i = 0; i < u.length; i++) {
    const v = u[i]!;
    if ((v & 0x7f800000) >>> 0 === 0x7f800000) continue;
    u[i] = ((v + 0x7fff + ((v >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
  return out;
}
