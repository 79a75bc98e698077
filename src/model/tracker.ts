/**
 * The per-frame tracking step of EfficientTAM and SAM 2 (efficienttam_base.py, sam2_base.py: the
 * same code but for SAM 2's high-resolution maps) and the memory bank it reads, all on the GPU:
 *
 *   vision features [1, g, g, C] of frame t
 *     -> _prepare_memory_conditioned_features:
 *          first (initial conditioning) frame: + no_mem_embed
 *          otherwise memory attention over
 *            spatial memories [n * g*g, memDim]: the conditioning frames (t_pos 0) and up to
 *              num_maskmem - 1 earlier (later, in reverse) non-conditioning frames, each with
 *              maskmem_pos_enc + maskmem_tpos_enc[num_maskmem - t_pos - 1]
 *            object pointers [k * C/memDim, memDim]: the conditioning frames' (past only) and
 *              up to max_obj_ptrs - 1 earlier non-conditioning frames', each split in C/memDim tokens
 *              (SAM 2.1: with a sine encoding of distance / (min(frames, max_obj_ptrs) - 1),
 *              projected by obj_ptr_tpos_proj)
 *     -> _forward_sam_heads: prompt encoder + mask decoder (SAM 2: with the frame's own
 *          high-resolution maps, not memory-conditioned), the best of the multimask outputs by
 *          predicted IoU, masks of an absent object (object score <= 0) -> NO_OBJ_SCORE,
 *          obj_ptr = obj_ptr_proj(token) (no_obj_ptr when absent)
 *     -> _encode_new_memory: low-res logits upsampled to S x S, binarized (clicked frames) or
 *          sigmoid, * 20 - 10, memory encoder, (+ no_obj_embed_spatial when absent), bfloat16
 *
 * Mask prompts take `_use_mask_as_output`: the mask itself (as +-10 logits) is the output; the
 * pointer comes from the decoder on the mask downsampled by `mask_downsample`.
 *
 * Nothing here reads back to the CPU. Shapes are channels-last: [1, g, g, C] maps, [N, D] tokens.
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import type { WeightLoader } from '../io/weights.js';
import { add } from '../kernels/elementwise.js';
import { resizeBilinear } from '../kernels/mask_ops.js';
import { aaWeights } from '../kernels/preprocess.js';
import { maskForMemory } from '../kernels/memory_ops.js';
import { memoryFinish, objPtrGate, pickBestMask } from '../kernels/track_ops.js';
import { Linear, MLP } from '../layers/linear.js';
import type { EfficientTAMConfig } from './config.js';
import type { EfficientTAM } from './efficienttam.js';
import type { HighResFeatures } from './mask_decoder.js';

const f = Math.fround;

// ------------------------------------------------------------------------------------------------
// the memory modules, as the tracker calls them (src/model/memory_encoder.ts, memory_attention.ts)

export interface MemoryEncoderLike {
  /** pixFeat [1, g, g, C], masks [1, S, S, 1] -> features [1, g, g, memDim] and their position encoding (owned by the encoder) */
  forward(pixFeat: Tensor, masks: Tensor, skipMaskSigmoid: boolean): { visionFeatures: Tensor; visionPosEnc: Tensor };
}

export interface MemoryAttentionLike {
  /** curr, currPos [g*g, C]; memory, memoryPos [Nm, memDim] -> [g*g, C] */
  forward(a: { curr: Tensor; currPos: Tensor; memory: Tensor; memoryPos: Tensor; numObjPtrTokens: number }): Tensor;
}

// ------------------------------------------------------------------------------------------------
// top-level parameters used only by tracking

/**
 * The model's tracking-only parameters (EfficientTAMBase): maskmem_tpos_enc, no_mem_pos_enc,
 * no_obj_ptr, obj_ptr_proj, obj_ptr_tpos_proj, mask_downsample, no_obj_embed_spatial.
 */
export class TrackingParts {
  constructor(
    /** maskmem_tpos_enc [num_maskmem, memDim] (CPU) */
    readonly maskmemTposEnc: Float32Array,
    /** no_mem_pos_enc [C] */
    readonly noMemPosEnc: Tensor,
    /** no_obj_ptr [C] (pred_obj_scores and use_obj_ptrs_in_encoder) */
    readonly noObjPtr: Tensor | null,
    /** obj_ptr_proj: MLP (3 layers) or Linear; null = identity */
    readonly objPtrProj: MLP | Linear | null,
    /** obj_ptr_tpos_proj (proj_tpos_enc_in_obj_ptrs): Linear C -> memDim; null = identity */
    readonly objPtrTposProj: Linear | null,
    /** mask_downsample: Conv2d(1, 1, 4, stride 4), on the CPU: weight [16] and bias */
    readonly maskDownsample: { weight: Float32Array; bias: number } | null,
    /** no_obj_embed_spatial [memDim] */
    readonly noObjEmbedSpatial: Tensor | null,
  ) {}

  static load(ctx: GpuContext, w: WeightLoader, cfg: EfficientTAMConfig): TrackingParts {
    const C = cfg.image_encoder.neck.d_model;
    const memDim = cfg.memory_encoder.out_dim;
    const useObjPtrs = cfg.use_obj_ptrs_in_encoder;
    let proj: MLP | Linear | null = null;
    let maskDownsample: TrackingParts['maskDownsample'] = null;
    if (useObjPtrs) {
      proj = cfg.use_mlp_for_obj_ptr_proj
        ? MLP.load(ctx, w, 'obj_ptr_proj', C, C, C, 3, 'relu')
        : Linear.load(ctx, w, 'obj_ptr_proj', C, C);
      maskDownsample = { weight: w.cpu('mask_downsample.weight', [1, 1, 4, 4]), bias: w.cpu('mask_downsample.bias', [1])[0]! };
    }
    const projTpos = !!(cfg as { proj_tpos_enc_in_obj_ptrs?: boolean }).proj_tpos_enc_in_obj_ptrs;
    return new TrackingParts(
      w.cpu('maskmem_tpos_enc', [cfg.num_maskmem, 1, 1, memDim]),
      w.tensor('no_mem_pos_enc', [1, 1, C]).reshape([C]),
      cfg.pred_obj_scores && useObjPtrs ? w.tensor('no_obj_ptr', [1, C]).reshape([C]) : null,
      proj,
      projTpos ? Linear.load(ctx, w, 'obj_ptr_tpos_proj', C, memDim) : null,
      maskDownsample,
      (cfg as { no_obj_embed_spatial?: boolean }).no_obj_embed_spatial
        ? w.tensor('no_obj_embed_spatial', [1, memDim]).reshape([memDim]) : null,
    );
  }
}

// ------------------------------------------------------------------------------------------------
// the memory bank

/** What the tracker keeps of one object on one frame (the reference's compact `current_out`). */
export interface FrameOutput {
  /** low-res mask logits [1, 1, S/4, S/4] (NO_OBJ_SCORE where the object is judged absent) */
  predMasks: Tensor;
  /** [1, C] */
  objPtr: Tensor;
  /** [1, 1] */
  objectScoreLogits: Tensor;
  /** spatial memory [1, g, g, memDim] (bfloat16 values), null until encoded */
  maskmemFeatures: Tensor | null;
}

export function releaseOutput(o: FrameOutput): void {
  o.predMasks.release();
  o.objPtr.release();
  o.objectScoreLogits.release();
  o.maskmemFeatures?.release();
}

/** One object's outputs by frame, conditioning and non-conditioning (insertion-ordered, like the reference's dicts). */
export interface ObjectBank {
  cond: Map<number, FrameOutput>;
  nonCond: Map<number, FrameOutput>;
}

export const emptyBank = (): ObjectBank => ({ cond: new Map(), nonCond: new Map() });

/**
 * A frame's image features: vision_features and vision_pos_enc, [1, g, g, C] each, and (SAM 2)
 * the high-resolution maps the decoder adds, [feat_s0 [1, 4g, 4g, C/8], feat_s1 [1, 2g, 2g, C/4]]
 * (not memory-conditioned: _track_step takes them from the frame's backbone features as they are).
 */
export interface FrameFeatures {
  visionFeats: Tensor;
  visionPos: Tensor;
  highRes?: HighResFeatures | null;
}

/** Point prompts in the S x S input frame: coords [P, 2] (x, y), labels [P] (-1 pad, 0, 1, 2/3 box corners). */
export interface PointInputs {
  coords: Float32Array;
  labels: Int32Array;
}

export interface SamHeadsOutput {
  /** [1, 1, S/4, S/4] */
  lowRes: Tensor;
  /** [1, C] */
  objPtr: Tensor;
  /** [1, 1] */
  objectScoreLogits: Tensor;
}

export interface TrackStepArgs {
  frameIdx: number;
  isInitCondFrame: boolean;
  features: FrameFeatures;
  points: PointInputs | null;
  /** a binary mask prompt at S x S (row-major, 0/1), on the CPU */
  mask: Float32Array | null;
  bank: ObjectBank;
  numFrames: number;
  reverse: boolean;
  runMemEncoder: boolean;
  /** earlier low-res logits of this object on this frame [1, 1, S/4, S/4], fed with new clicks */
  prevSamMaskLogits?: Tensor | null;
}

/** Settings of EfficientTAMBase that tracking reads, with the reference's defaults. */
export interface TrackerSettings {
  numMaskmem: number;
  memoryTemporalStrideForEval: number;
  maxCondFramesInAttn: number;
  maxObjPtrsInEncoder: number;
  useObjPtrsInEncoder: boolean;
  addTposEncToObjPtrs: boolean;
  projTposEncInObjPtrs: boolean;
  useSignedTposEncToObjPtrs: boolean;
  onlyObjPtrsInThePastForEval: boolean;
  predObjScores: boolean;
  fixedNoObjPtr: boolean;
  softNoObjPtr: boolean;
  directlyAddNoMemEmbed: boolean;
  multimaskOutputInSam: boolean;
  multimaskMinPtNum: number;
  multimaskMaxPtNum: number;
  multimaskOutputForTracking: boolean;
  useMaskInputAsOutputWithoutSam: boolean;
  sigmoidScaleForMemEnc: number;
  sigmoidBiasForMemEnc: number;
  binarizeMaskFromPtsForMemEnc: boolean;
}

export function trackerSettings(cfg: EfficientTAMConfig): TrackerSettings {
  const x = cfg as EfficientTAMConfig & Record<string, unknown>;
  const num = (k: string, d: number): number => (typeof x[k] === 'number' ? (x[k] as number) : d);
  const bool = (k: string, d: boolean): boolean => (typeof x[k] === 'boolean' ? (x[k] as boolean) : d);
  return {
    numMaskmem: num('num_maskmem', 7),
    memoryTemporalStrideForEval: num('memory_temporal_stride_for_eval', 1),
    maxCondFramesInAttn: num('max_cond_frames_in_attn', -1),
    maxObjPtrsInEncoder: num('max_obj_ptrs_in_encoder', 16),
    useObjPtrsInEncoder: bool('use_obj_ptrs_in_encoder', false),
    addTposEncToObjPtrs: bool('add_tpos_enc_to_obj_ptrs', true),
    projTposEncInObjPtrs: bool('proj_tpos_enc_in_obj_ptrs', false),
    useSignedTposEncToObjPtrs: bool('use_signed_tpos_enc_to_obj_ptrs', false),
    onlyObjPtrsInThePastForEval: bool('only_obj_ptrs_in_the_past_for_eval', false),
    predObjScores: bool('pred_obj_scores', false),
    fixedNoObjPtr: bool('fixed_no_obj_ptr', false),
    softNoObjPtr: bool('soft_no_obj_ptr', false),
    directlyAddNoMemEmbed: bool('directly_add_no_mem_embed', false),
    multimaskOutputInSam: bool('multimask_output_in_sam', false),
    multimaskMinPtNum: num('multimask_min_pt_num', 1),
    multimaskMaxPtNum: num('multimask_max_pt_num', 1),
    multimaskOutputForTracking: bool('multimask_output_for_tracking', false),
    useMaskInputAsOutputWithoutSam: bool('use_mask_input_as_output_without_sam', false),
    sigmoidScaleForMemEnc: num('sigmoid_scale_for_mem_enc', 1),
    sigmoidBiasForMemEnc: num('sigmoid_bias_for_mem_enc', 0),
    binarizeMaskFromPtsForMemEnc: bool('binarize_mask_from_pts_for_mem_enc', false),
  };
}

/**
 * select_closest_cond_frames: up to `max` conditioning frames closest to `frameIdx` (the closest
 * before, the closest at-or-after, then the nearest others); -1 = all.
 */
export function selectClosestCondFrames<T>(frameIdx: number, cond: Map<number, T>, max: number):
  { selected: Map<number, T>; unselected: Map<number, T> } {
  if (max === -1 || cond.size <= max) return { selected: cond, unselected: new Map() };
  if (max < 2) throw new Error('max_cond_frames_in_attn must allow at least 2 conditioning frames');
  const selected = new Map<number, T>();
  const keys = [...cond.keys()];
  const before = keys.filter((t) => t < frameIdx);
  if (before.length) { const t = Math.max(...before); selected.set(t, cond.get(t)!); }
  const after = keys.filter((t) => t >= frameIdx);
  if (after.length) { const t = Math.min(...after); selected.set(t, cond.get(t)!); }
  const remain = keys.filter((t) => !selected.has(t));
  // a stable sort by distance, as Python's sorted
  remain.sort((a, b) => Math.abs(a - frameIdx) - Math.abs(b - frameIdx));
  for (const t of remain.slice(0, Math.max(0, max - selected.size))) selected.set(t, cond.get(t)!);
  const unselected = new Map<number, T>();
  for (const [t, v] of cond) if (!selected.has(t)) unselected.set(t, v);
  return { selected, unselected };
}

/** get_1d_sine_pe: [n] positions -> [n, dim] (sin half, then cos half), in f32 steps. */
export function sine1d(pos: readonly number[], dim: number, temperature = 10000): Float32Array {
  const half = dim / 2;
  const out = new Float32Array(pos.length * dim);
  pos.forEach((p, i) => {
    for (let j = 0; j < half; j++) {
      const dimT = f(Math.pow(temperature, f(f(2 * Math.floor(j / 2)) / half)));
      const v = f(f(p) / dimT);
      out[i * dim + j] = Math.sin(v);
      out[i * dim + half + j] = Math.cos(v);
    }
  });
  return out;
}

/** PyTorch's antialiased bilinear resize of one plane (F.interpolate(..., antialias=True)), on the CPU. */
export function resizeAntialiasCpu(x: Float32Array, h: number, w: number, H: number, W: number): Float32Array {
  const wx = aaWeights(w, W), wy = aaWeights(h, H);
  const tmp = new Float32Array(h * W);
  for (let y = 0; y < h; y++) for (let i = 0; i < W; i++) {
    let s = 0;
    for (let j = 0; j < wx.xsize[i]!; j++) s += wx.w[i * wx.k + j]! * x[y * w + wx.xmin[i]! + j]!;
    tmp[y * W + i] = s;
  }
  const out = new Float32Array(H * W);
  for (let i = 0; i < H; i++) for (let xx = 0; xx < W; xx++) {
    let s = 0;
    for (let j = 0; j < wy.xsize[i]!; j++) s += wy.w[i * wy.k + j]! * tmp[(wy.xmin[i]! + j) * W + xx]!;
    out[i * W + xx] = s;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------

export class Tracker {
  readonly ctx: GpuContext;
  readonly s: TrackerSettings;
  readonly C: number;
  readonly memDim: number;
  /** S */
  readonly imageSize: number;
  /** g */
  readonly featSize: number;
  /** maskmem_pos_enc [g*g, memDim] + maskmem_tpos_enc[k], made once the encoder has given its position encoding */
  private memPosTables: Tensor[] | null = null;
  /** zeros for the object pointers' position when add_tpos_enc_to_obj_ptrs is off */
  private zeros: Tensor | null = null;

  constructor(
    readonly model: EfficientTAM,
    readonly parts: TrackingParts,
    readonly memoryEncoder: MemoryEncoderLike,
    readonly memoryAttention: MemoryAttentionLike,
  ) {
    this.ctx = model.ctx;
    this.s = trackerSettings(model.config);
    this.C = model.config.image_encoder.neck.d_model;
    this.memDim = model.config.memory_encoder.out_dim;
    this.imageSize = model.imageSize;
    this.featSize = model.promptEncoder.embedSize;
    if (this.C % this.memDim !== 0) throw new Error(`Tracker: hidden dim ${this.C} is not a multiple of the memory dim ${this.memDim}`);
  }

  /** The tracker of a loaded model (its memory encoder and attention, and the tracking parts). */
  static of(model: EfficientTAM): Tracker {
    return new Tracker(model, model.tracking, model.memoryEncoder, model.memoryAttention);
  }

  /** _use_multimask: several masks for 0..1 clicks (multimask_min/max_pt_num) on first frames, or always when tracking with it. */
  useMultimask(isInitCondFrame: boolean, points: PointInputs | null): boolean {
    const n = points ? points.labels.length : 0;
    return this.s.multimaskOutputInSam && (isInitCondFrame || this.s.multimaskOutputForTracking) &&
      this.s.multimaskMinPtNum <= n && n <= this.s.multimaskMaxPtNum;
  }

  /** track_step: one object on one frame. The features are not released. */
  trackStep(a: TrackStepArgs): FrameOutput {
    let out: SamHeadsOutput;
    if (a.mask && this.s.useMaskInputAsOutputWithoutSam) {
      if (a.runMemEncoder) throw new Error('Tracker: a mask prompt is encoded into memory when tracking starts, not in the same step');
      out = this.useMaskAsOutput(a.features.visionFeats, a.mask, a.features.highRes ?? null);
    } else {
      this.ctx.mark('start');
      const pixFeat = this.prepareMemoryConditionedFeatures(a);
      this.ctx.mark('memory_attention');
      let maskInput: Tensor | null = null;
      let ownMask = false;
      if (a.prevSamMaskLogits) {
        if (!a.points || a.mask) throw new Error('Tracker: earlier mask logits go only with new points');
        maskInput = a.prevSamMaskLogits;
      } else if (a.mask) {
        // a mask prompt through the decoder: antialiased bilinear to the decoder's mask input size
        const m = this.model.promptEncoder.maskInputSize, S = this.imageSize;
        maskInput = this.ctx.upload(resizeAntialiasCpu(a.mask, S, S, m, m), [1, 1, m, m]);
        ownMask = true;
      }
      const g = this.featSize;
      out = this.forwardSamHeads(pixFeat.reshape([1, g, g, this.C]), a.points, maskInput, this.useMultimask(a.isInitCondFrame, a.points),
        a.features.highRes ?? null);
      if (ownMask) maskInput!.release();
      pixFeat.release();
      this.ctx.mark('decoder');
    }
    let maskmemFeatures: Tensor | null = null;
    if (a.runMemEncoder && this.s.numMaskmem > 0) {
      maskmemFeatures = this.encodeNewMemory(a.features.visionFeats, out.lowRes, out.objectScoreLogits, a.points !== null);
      this.ctx.mark('memory_encoder');
    }
    return { predMasks: out.lowRes, objPtr: out.objPtr, objectScoreLogits: out.objectScoreLogits, maskmemFeatures };
  }

  /**
   * _forward_sam_heads: pixFeat [1, g, g, C]; points in the S x S frame (none: one padding point);
   * maskInput: low-res logits [1, 1, S/4, S/4] or null; highRes: the frame's [feat_s0, feat_s1] (SAM 2).
   */
  forwardSamHeads(pixFeat: Tensor, points: PointInputs | null, maskInput: Tensor | null, multimask: boolean,
    highRes: HighResFeatures | null = null): SamHeadsOutput {
    const ctx = this.ctx;
    const pe = this.model.promptEncoder;
    const coords = points ? points.coords : new Float32Array(2);
    const labels = points ? points.labels : Int32Array.of(-1);
    const sparse = pe.embedPoints({ coords, labels, batch: 1, count: labels.length }, true).data;
    const m = pe.maskInputSize;
    const dense = maskInput ? pe.embedMasks(maskInput.reshape([1, m, m])) : pe.noMaskEmbed;
    const dec = this.model.maskDecoder.forward({
      imageEmbed: pixFeat, imagePe: pe.densePe, sparse, batch: 1, dense, multimaskOutput: multimask,
      highResFeatures: highRes,
    });
    if (maskInput) dense.release();
    const { lowRes, token } = pickBestMask(ctx, dec.masks, dec.iouPred, dec.samTokensOut, dec.objectScoreLogits,
      { gateOnScore: this.s.predObjScores });
    dec.masks.release();
    dec.iouPred.release();
    dec.samTokensOut.release();
    let objPtr = this.parts.objPtrProj ? this.parts.objPtrProj.forward(token) : token;
    if (objPtr !== token) token.release();
    if (this.s.predObjScores && this.parts.noObjPtr) {
      const gated = objPtrGate(ctx, objPtr, dec.objectScoreLogits, this.parts.noObjPtr, { fixed: this.s.fixedNoObjPtr, soft: this.s.softNoObjPtr });
      objPtr.release();
      objPtr = gated;
    }
    return { lowRes, objPtr, objectScoreLogits: dec.objectScoreLogits };
  }

  /** _use_mask_as_output: a binary S x S mask (CPU) is the output, as +-10 logits. */
  useMaskAsOutput(visionFeats: Tensor, mask: Float32Array, highRes: HighResFeatures | null = null): SamHeadsOutput {
    const ctx = this.ctx;
    const S = this.imageSize, m = this.model.promptEncoder.maskInputSize;
    if (mask.length !== S * S) throw new Error(`Tracker: mask prompt of ${mask.length} values, expected ${S}x${S}`);
    const high = new Float32Array(S * S);
    let present = false;
    for (let i = 0; i < high.length; i++) {
      high[i] = f(f(mask[i]! * 20) - 10);
      if (mask[i]! > 0) present = true;
    }
    const lowRes = ctx.upload(resizeAntialiasCpu(high, S, S, m, m), [1, 1, m, m]);
    const score = ctx.upload(Float32Array.of(present ? 10 : -10), [1, 1]);
    let objPtr: Tensor;
    if (!this.s.useObjPtrsInEncoder || !this.parts.maskDownsample) {
      objPtr = ctx.upload(new Float32Array(this.C), [1, this.C]);
    } else {
      // mask_downsample: Conv2d(1, 1, kernel 4, stride 4) of the 0/1 mask -> the decoder's mask prompt
      const { weight, bias } = this.parts.maskDownsample;
      const md = new Float32Array(m * m);
      for (let y = 0; y < m; y++) for (let x = 0; x < m; x++) {
        let s = 0;
        for (let ky = 0; ky < 4; ky++) for (let kx = 0; kx < 4; kx++) s += weight[ky * 4 + kx]! * mask[(4 * y + ky) * S + 4 * x + kx]!;
        md[y * m + x] = s + bias;
      }
      const mdT = ctx.upload(md, [1, 1, m, m]);
      const sam = this.forwardSamHeads(visionFeats, null, mdT, false, highRes);
      mdT.release();
      sam.lowRes.release();
      sam.objectScoreLogits.release();
      objPtr = sam.objPtr;
    }
    if (this.s.predObjScores && this.parts.noObjPtr) {
      // the mask decides presence here, not the decoder's score
      const gated = objPtrGate(ctx, objPtr, score, this.parts.noObjPtr, { fixed: this.s.fixedNoObjPtr, soft: false });
      objPtr.release();
      objPtr = gated;
    }
    return { lowRes, objPtr, objectScoreLogits: score };
  }

  /**
   * _encode_new_memory from low-res logits [1, 1, S/4, S/4]: upsampled to S x S (bilinear), made
   * the encoder's mask input, encoded with the frame's features -> [1, g, g, memDim] (bfloat16 values).
   */
  encodeNewMemory(visionFeats: Tensor, lowRes: Tensor, objectScoreLogits: Tensor, isMaskFromPts: boolean): Tensor {
    const ctx = this.ctx;
    const S = this.imageSize;
    const high = resizeBilinear(ctx, lowRes, S, S); // [1, 1, S, S]
    const maskForMem = maskForMemory(ctx, high, {
      binarize: this.s.binarizeMaskFromPtsForMemEnc && isMaskFromPts,
      scale: this.s.sigmoidScaleForMemEnc,
      bias: this.s.sigmoidBiasForMemEnc,
    });
    high.release();
    const enc = this.memoryEncoder.forward(visionFeats, maskForMem.reshape([1, S, S, 1]), true);
    maskForMem.release();
    if (!this.memPosTables) this.makeMemPosTables(enc.visionPosEnc);
    const out = memoryFinish(ctx, enc.visionFeatures, objectScoreLogits, this.parts.noObjEmbedSpatial, { bf16: true });
    enc.visionFeatures.release();
    return out;
  }

  private makeMemPosTables(posEnc: Tensor): void {
    const D = this.memDim, n = this.featSize * this.featSize;
    const tpos = this.parts.maskmemTposEnc;
    this.memPosTables = [];
    for (let k = 0; k < this.s.numMaskmem; k++) {
      const row = this.ctx.upload(tpos.slice(k * D, (k + 1) * D), [D]);
      this.memPosTables.push(add(this.ctx, posEnc.reshape([n, D]), row));
      row.release();
    }
  }

  /**
   * _prepare_memory_conditioned_features -> pix_feat_with_mem, a new tensor of g*g*C values
   * (reshape it to [1, g, g, C]).
   */
  prepareMemoryConditionedFeatures(a: TrackStepArgs): Tensor {
    const ctx = this.ctx;
    const { C, memDim: D } = this;
    const g = this.featSize, n = g * g;
    const feats = a.features.visionFeats;
    if (this.s.numMaskmem === 0) { // no fusion with memories: a copy of the features
      const copy = ctx.empty(feats.shape);
      ctx.copy(feats, copy, feats.byteLength);
      return copy;
    }
    /** memory tokens: `tokens` rows of `src` (from row 0) and of `pos` (from row `posRow`) */
    const parts: { src: Tensor; pos: Tensor; posRow: number; tokens: number }[] = [];
    let numObjPtrTokens = 0;
    let ptrPos: Tensor | null = null;

    if (a.isInitCondFrame) {
      if (this.s.directlyAddNoMemEmbed) return add(ctx, feats, this.model.noMemEmbed);
      if (C !== D) throw new Error('Tracker: a no-memory token needs memory dim == hidden dim');
      parts.push({ src: this.model.noMemEmbed, pos: this.parts.noMemPosEnc, posRow: 0, tokens: 1 });
    } else {
      const f0 = a.frameIdx, rev = a.reverse;
      if (a.bank.cond.size === 0) throw new Error(`Tracker: no conditioning frame to track frame ${f0} from`);
      const { selected, unselected } = selectClosestCondFrames(f0, a.bank.cond, this.s.maxCondFramesInAttn);
      // spatial memories: conditioning frames at t_pos 0, then t_pos 1..M-1 (the earliest first)
      const tPosAndPrevs: [number, FrameOutput | undefined][] = [...selected.values()].map((o) => [0, o]);
      const r = this.s.memoryTemporalStrideForEval;
      const M = this.s.numMaskmem;
      for (let tPos = 1; tPos < M; tPos++) {
        const tRel = M - tPos; // frames before (after, in reverse) the current one
        let prev: number;
        if (tRel === 1) prev = rev ? f0 + 1 : f0 - 1;
        else if (!rev) prev = Math.floor((f0 - 2) / r) * r - (tRel - 2) * r;
        else prev = -Math.floor(-(f0 + 2) / r) * r + (tRel - 2) * r;
        tPosAndPrevs.push([tPos, a.bank.nonCond.get(prev) ?? unselected.get(prev)]);
      }
      for (const [tPos, prev] of tPosAndPrevs) {
        if (!prev) continue;
        if (!prev.maskmemFeatures || !this.memPosTables) throw new Error(`Tracker: a memory frame of frame ${f0} has no encoded memory`);
        parts.push({ src: prev.maskmemFeatures, pos: this.memPosTables[M - tPos - 1]!, posRow: 0, tokens: n });
      }

      // object pointers: conditioning frames (the past only, optionally), then up to max - 1 earlier frames
      if (this.s.useObjPtrsInEncoder) {
        const maxPtrs = Math.min(a.numFrames, this.s.maxObjPtrsInEncoder);
        const ptrs: [number, Tensor][] = [];
        for (const [t, o] of selected) {
          if (this.s.onlyObjPtrsInThePastForEval && !(rev ? t >= f0 : t <= f0)) continue;
          ptrs.push([this.s.useSignedTposEncToObjPtrs ? (f0 - t) * (rev ? -1 : 1) : Math.abs(f0 - t), o.objPtr]);
        }
        for (let tDiff = 1; tDiff < maxPtrs; tDiff++) {
          const t = rev ? f0 + tDiff : f0 - tDiff;
          if (t < 0 || t >= a.numFrames) break;
          const o = a.bank.nonCond.get(t) ?? unselected.get(t);
          if (o) ptrs.push([tDiff, o.objPtr]);
        }
        if (ptrs.length) {
          const per = C / D; // a pointer [C] is split into C/D tokens of D
          numObjPtrTokens = ptrs.length * per;
          if (this.s.addTposEncToObjPtrs) {
            // temporal distance, normalised by the largest, as a sine encoding (projected to D)
            const tMax = maxPtrs - 1;
            const tposDim = this.s.projTposEncInObjPtrs ? C : D;
            const peT = ctx.upload(sine1d(ptrs.map(([p]) => f(p / tMax)), tposDim), [ptrs.length, tposDim]);
            let proj = peT;
            if (this.parts.objPtrTposProj) { proj = this.parts.objPtrTposProj.forward(peT); peT.release(); }
            // repeat_interleave over each pointer's tokens: [k, D] -> [k * per, D]
            ptrPos = ctx.empty([numObjPtrTokens, D]);
            for (let i = 0; i < ptrs.length; i++) for (let j = 0; j < per; j++) ctx.copy(proj, ptrPos, D * 4, i * D * 4, (i * per + j) * D * 4);
            proj.release();
          }
          ptrs.forEach(([, p], i) => parts.push(ptrPos
            ? { src: p, pos: ptrPos, posRow: i * per, tokens: per }
            : { src: p, pos: this.zerosOf(numObjPtrTokens * D), posRow: 0, tokens: per }));
        }
      }
    }

    // memory, memory_pos [Nm, D]: the parts concatenated
    const Nm = parts.reduce((s, p) => s + p.tokens, 0);
    const memory = ctx.empty([Nm, D]);
    const memoryPos = ctx.empty([Nm, D]);
    let row = 0;
    for (const p of parts) {
      const bytes = p.tokens * D * 4;
      ctx.copy(p.src, memory, bytes, 0, row * D * 4);
      ctx.copy(p.pos, memoryPos, bytes, p.posRow * D * 4, row * D * 4);
      row += p.tokens;
    }
    ptrPos?.release();
    const out = this.memoryAttention.forward({
      curr: feats.reshape([n, C]), currPos: a.features.visionPos.reshape([n, C]), memory, memoryPos, numObjPtrTokens,
    }); // [g*g, C]
    memory.release();
    memoryPos.release();
    return out;
  }

  /** Frees the tensors this tracker keeps (made again when needed). */
  dispose(): void {
    for (const t of this.memPosTables ?? []) t.release();
    this.memPosTables = null;
    this.zeros?.release();
    this.zeros = null;
  }

  /** A zero tensor of at least `count` values (kept). */
  private zerosOf(count: number): Tensor {
    if (!this.zeros || this.zeros.size < count) {
      this.zeros?.release();
      const len = Math.max(count, 1024);
      this.zeros = this.ctx.upload(new Float32Array(len), [len]);
    }
    return this.zeros; // callers copy only what they need
  }
}
