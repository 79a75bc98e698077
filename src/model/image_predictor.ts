/**
 * The image predictor (efficient_track_anything/efficienttam_image_predictor.py): embed an image
 * once, then decode masks for any number of prompts.
 *
 *   setImage(pixels)  -> preprocess -> image encoder -> vision_features (+ no_mem_embed)   [1, g, g, C]
 *                        (SAM 2: and the high-resolution maps feat_s0 [1, 4g, 4g, C/8], feat_s1 [1, 2g, 2g, C/4])
 *   predict(prompts)  -> prompt encoder -> mask decoder -> low-res logits [B, M, S/4, S/4]
 *                     -> (optional hole filling / sprinkle removal on the low-res logits)
 *                     -> bilinear (align_corners=False) to the original size [B, M, H, W]
 *
 * Prompts are in original-image pixels, as the official predictor takes them: points (x, y) with
 * labels (1 positive, 0 negative), a box (x0, y0, x1, y1) or several (one object each), and a
 * mask prompt (low-res logits of an earlier prediction). Boxes become two points labelled 2, 3 put
 * before the clicks. Everything stays on the GPU; a predict call reads back once, and only what
 * was asked for. Masks at the image's size are made and read back in tiles (mask_upsample.ts), so
 * any image the library takes (io/image_size.ts) works within WebGPU's default binding limit.
 *
 * Errors: a bad prompt is a PromptError, a bad image an ImageSizeError (both before any GPU
 * work); GPU work the GPU refuses is a GpuError naming the call and its sizes. After any of them
 * nothing is leaked and the predictor is usable (after a failed setImage, set an image again).
 */
import type { GpuContext, GpuError, Readback } from '../gpu/context.js';
import { Tensor } from '../gpu/tensor.js';
import { checkImageSize } from '../io/image_size.js';
import { add } from '../kernels/elementwise.js';
import { unary } from '../kernels/mask_ops.js';
import { upsampleByteLength, upsampleInto, type UpsampleOptions } from '../kernels/mask_upsample.js';
import { postprocessLowRes } from '../kernels/mask_postprocess.js';
import { checkImageSource, preprocessImage, type ImageSource } from '../kernels/preprocess.js';
import { drawMasks, type DrawMasksOptions } from '../kernels/draw_masks.js';
import { pickBestMask } from '../kernels/track_ops.js';
import type { EfficientTAM } from './efficienttam.js';
import type { HighResFeatures } from './mask_decoder.js';
import { checkBox, checkLabel, checkMaskInput, checkPoint, PromptError } from './prompts.js';

const f = Math.fround;

export type Point = readonly [number, number] | readonly number[];
export type Box = readonly [number, number, number, number] | readonly number[];

export interface PredictOptions {
  /** N points [x, y] (shared by every box), or B lists of N points (one object each) */
  points?: readonly Point[] | readonly (readonly Point[])[];
  /** N labels (or B lists): 1 foreground, 0 background */
  labels?: readonly number[] | readonly (readonly number[])[];
  /** one box [x0, y0, x1, y1], or B boxes (one object each) */
  box?: Box | readonly Box[];
  /** low-res logits of an earlier prediction: 1 or B planes of (S/4) x (S/4), any array of numbers */
  maskInput?: ArrayLike<number>;
  /** three masks per object (default true), or one (with the stability fallback) */
  multimask?: boolean;
  /** masks as logits (Float32Array) instead of 0/1 bytes */
  returnLogits?: boolean;
  /** also return the low-res logits, clamped to [-32, 32] like the official predictor (default true) */
  returnLowRes?: boolean;
  /** return the full-resolution masks (default true) */
  returnMasks?: boolean;
  /**
   * draw each object's best mask (highest predicted IoU) into this texture (a canvas's current
   * texture, say), over `image` if given, on the GPU: nothing of it is read back
   */
  draw?: { target: GPUTexture } & Omit<DrawMasksOptions, 'logits' | 'target'>;
  /** also return an RGBA overlay of the masks, H*W*4 bytes (colours cycled over the masks) */
  overlay?: boolean | { colors?: readonly (readonly [number, number, number])[]; alpha?: number };
}

export interface PredictResult {
  /** B objects */
  batch: number;
  /** M masks per object */
  numMasks: number;
  width: number;
  height: number;
  /** [B, M] */
  ious: Float32Array;
  /** [B, M, H, W]: 0/1 bytes, or logits with `returnLogits` */
  masks?: Uint8Array | Float32Array;
  /** [B, M, S/4, S/4], clamped to [-32, 32]; before hole/sprinkle postprocessing, as the official predictor returns them */
  lowResLogits?: Float32Array;
  lowResSize: number;
  /** [H, W, 4] RGBA */
  overlay?: Uint8ClampedArray;
}

const DEFAULT_COLORS: (readonly [number, number, number])[] = [[30, 144, 255], [255, 64, 64], [64, 200, 64], [255, 200, 0]];

/** What `decode` leaves on the GPU for B objects and M masks each (m = S/4). */
export interface DecodedPrompts {
  batch: number;
  numMasks: number;
  /** the decoder's low-res logits [B, M, m, m], unclamped and before any postprocessing */
  lowRes: Tensor;
  /** the same after hole filling / sprinkle removal (the same tensor when both are off) */
  masks: Tensor;
  /** predicted IoU [B, M] */
  iou: Tensor;
  /** the decoder's mask tokens and object score logits (see MaskDecoderOutput) */
  samTokensOut: Tensor;
  objectScoreLogits: Tensor;
  /** releases every tensor above */
  release(): void;
}

/** Prompts in the SxS input frame, batched. */
interface PreparedPrompts {
  batch: number;
  count: number;
  coords: Float32Array;
  labels: Int32Array;
  mask: Float32Array | null;
  maskBatch: number;
}

export interface ImagePredictorOptions {
  /** logit threshold of the binary masks and overlays (the official `mask_threshold`, 0); finite */
  maskThreshold?: number;
  /** antialiased resizing of the input (torchvision >= 0.17's default; false for older torchvision) */
  antialias?: boolean;
  /** the official max_hole_area (0 = off, the default) */
  maxHoleArea?: number;
  /** the official max_sprinkle_area (0 = off, the default) */
  maxSprinkleArea?: number;
  /** largest image taken, in pixels (default MAX_IMAGE_PIXELS, 2^27) */
  maxImagePixels?: number;
}

/** What `encode` makes of an image. */
interface Encoded {
  embed: Tensor;
  highRes: HighResFeatures | null;
}

/** What one predict call recorded: the readback and what its parts are. */
interface Recorded {
  rb: Readback;
  numMasks: number;
  parts: ('ious' | 'lowres' | 'logits' | 'bytes' | 'overlay')[];
}

export class ImagePredictor {
  private embed: Tensor | null = null;
  /** SAM 2: the image's [feat_s0, feat_s1] (the official predictor's `_features["high_res_feats"]`) */
  private highRes: HighResFeatures | null = null;
  private origHW: [number, number] | null = null;
  /** the GPU's verdict on the last setImage / setInput (awaited by the next predict) */
  private pending: Promise<GpuError | null> | null = null;

  /** Logit threshold of the binary masks (the official `mask_threshold`, 0). */
  readonly maskThreshold: number;
  /** Antialiased resizing of the input (torchvision >= 0.17's default; false for older torchvision). */
  readonly antialias: boolean;
  /**
   * Fill background components of the low-res masks of at most this area before upsampling
   * (the official max_hole_area; 0 = off, the default). 8-connected, per mask.
   */
  readonly maxHoleArea: number;
  /** Remove foreground components of at most this area likewise (max_sprinkle_area; 0 = off). */
  readonly maxSprinkleArea: number;
  /** Largest image taken, in pixels. */
  readonly maxImagePixels: number | undefined;

  constructor(readonly model: EfficientTAM, opts: ImagePredictorOptions = {}) {
    this.maskThreshold = opts.maskThreshold ?? 0;
    this.antialias = opts.antialias ?? true;
    this.maxHoleArea = opts.maxHoleArea ?? 0;
    this.maxSprinkleArea = opts.maxSprinkleArea ?? 0;
    this.maxImagePixels = opts.maxImagePixels;
    if (typeof this.maskThreshold !== 'number' || !Number.isFinite(this.maskThreshold)) {
      throw new RangeError(`ImagePredictor: maskThreshold ${this.maskThreshold} is not a finite number`);
    }
    for (const [k, v] of [['maxHoleArea', this.maxHoleArea], ['maxSprinkleArea', this.maxSprinkleArea]] as const) {
      if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`ImagePredictor: ${k} ${v} is not a non-negative area`);
    }
    const mp = this.maxImagePixels;
    if (mp !== undefined && !(Number.isInteger(mp) && mp > 0)) throw new RangeError(`ImagePredictor: maxImagePixels ${mp} is not a positive integer`);
  }

  get ctx(): GpuContext {
    return this.model.ctx;
  }

  /** Whether an image is set. */
  get isImageSet(): boolean {
    return this.embed !== null;
  }

  /** The original size of the image set, [H, W]. */
  get imageSize(): [number, number] | null {
    return this.origHW;
  }

  /** The embedding the decoder reads, [1, g, g, C] (vision features + no_mem_embed). */
  get imageEmbedding(): Tensor {
    if (!this.embed) throw new Error('ImagePredictor: no image set; call setImage(...) first');
    return this.embed;
  }

  /**
   * SAM 2: the image's high-resolution maps the decoder adds, [feat_s0 [1, 4g, 4g, C/8],
   * feat_s1 [1, 2g, 2g, C/4]] (conv_s0 / conv_s1 of the FPN's stride-4 and -8 levels); null for
   * EfficientTAM. Owned by the predictor.
   */
  get highResFeatures(): HighResFeatures | null {
    if (!this.embed) throw new Error('ImagePredictor: no image set; call setImage(...) first');
    return this.highRes;
  }

  private checkSize(what: string, width: number, height: number): void {
    checkImageSize(what, width, height, { maxPixels: this.maxImagePixels, maxSide: this.ctx.device.limits.maxTextureDimension2D });
  }

  /**
   * Embeds an RGB(A) image (8-bit, row-major). Records GPU work only; a refusal of the GPU is
   * reported by the next `predict`. Throws an ImageSizeError for an image the library does not
   * take (before any allocation).
   */
  setImage(source: ImageSource): void {
    const { width, height } = source;
    this.checkSize('ImagePredictor.setImage', width, height);
    checkImageSource('ImagePredictor.setImage', source);
    this.reset();
    const S = this.model.imageSize;
    this.embedLater(`ImagePredictor.setImage (${width}x${height} image)`, width, height, () => {
      const pixels = preprocessImage(this.ctx, source, S, { antialias: this.antialias }); // [1, S, S, 3]
      try {
        return this.encode(pixels);
      } finally {
        pixels.release();
      }
    });
  }

  /** Embeds an already preprocessed input [1, S, S, 3] of an image of the given original size. */
  setInput(pixels: Tensor, width: number, height: number): void {
    this.checkSize('ImagePredictor.setInput', width, height);
    const S = this.model.imageSize;
    if (pixels.shape.length !== 4 || pixels.shape[0] !== 1 || pixels.shape[1] !== S || pixels.shape[2] !== S || pixels.shape[3] !== 3) {
      throw new Error(`ImagePredictor.setInput: pixels [${pixels.shape}] are not [1, ${S}, ${S}, 3]`);
    }
    this.reset();
    this.embedLater(`ImagePredictor.setInput (${width}x${height} image)`, width, height, () => this.encode(pixels));
  }

  private embedLater(op: string, width: number, height: number, record: () => Encoded): void {
    const { value, error } = this.ctx.guardLater(op, record, (e) => {
      e.embed.release();
      for (const t of e.highRes ?? []) t.release();
    });
    this.embed = value.embed;
    this.highRes = value.highRes;
    this.origHW = [height, width];
    this.pending = error;
  }

  /** forward_image -> vision features (+ no_mem_embed) [1, g, g, C], and (SAM 2) the high-resolution maps */
  private encode(pixels: Tensor): Encoded {
    const m = this.model;
    const out = m.forwardImage(pixels);
    let embed = out.visionFeatures;
    if (m.config.directly_add_no_mem_embed) {
      embed = add(this.ctx, out.visionFeatures, m.noMemEmbed);
      out.visionFeatures.release();
    }
    return { embed, highRes: out.highResFeatures };
  }

  /** Waits for the GPU's verdict on the image set; a refused setImage leaves no image set. */
  private async settle(): Promise<void> {
    const pending = this.pending, embed = this.embed;
    if (!pending) return;
    const err = await pending;
    if (this.embed !== embed) return; // another image was set meanwhile
    this.pending = null;
    if (err) {
      this.embed = null; // released by the guard's cleanup (with the high-resolution maps)
      this.highRes = null;
      this.origHW = null;
      throw err;
    }
  }

  /**
   * Uses a precomputed image embedding [1, g, g, C] (what `imageEmbedding` holds: vision features
   * plus no_mem_embed) for an image of the given original size; for SAM 2 also its high-resolution
   * maps (what `highResFeatures` holds). The predictor takes ownership of all of them.
   */
  setEmbedding(embed: Tensor, width: number, height: number, highResFeatures?: HighResFeatures | null): void {
    const g = this.model.promptEncoder.embedSize, C = this.model.promptEncoder.embedDim;
    const is = (t: Tensor, shape: number[]) => t.shape.length === shape.length && shape.every((d, i) => t.shape[i] === d);
    if (!is(embed, [1, g, g, C])) throw new Error(`ImagePredictor.setEmbedding: [${embed.shape}] is not [1, ${g}, ${g}, ${C}]`);
    this.checkSize('ImagePredictor.setEmbedding', width, height);
    if (this.model.maskDecoder.usesHighRes) {
      if (!highResFeatures) throw new Error('ImagePredictor.setEmbedding: a SAM 2 model also needs the image\'s high-resolution features [feat_s0, feat_s1]');
      const [s0, s1] = highResFeatures;
      if (!is(s0, [1, 4 * g, 4 * g, C / 8]) || !is(s1, [1, 2 * g, 2 * g, C / 4])) {
        throw new Error(`ImagePredictor.setEmbedding: high-resolution features [${s0.shape}], [${s1.shape}] are not ` +
          `[1, ${4 * g}, ${4 * g}, ${C / 8}], [1, ${2 * g}, ${2 * g}, ${C / 4}]`);
      }
    } else if (highResFeatures) {
      throw new Error('ImagePredictor.setEmbedding: this model takes no high-resolution features (not a SAM 2 model)');
    }
    this.reset();
    this.embed = embed;
    this.highRes = highResFeatures ?? null;
    this.origHW = [height, width];
  }

  /** Forgets the image (releases its embedding and high-resolution maps). */
  reset(): void {
    this.embed?.release();
    this.embed = null;
    for (const t of this.highRes ?? []) t.release();
    this.highRes = null;
    this.origHW = null;
    this.pending = null;
  }

  /** Checks the prompts and maps them to the SxS input frame (boxes first, as two corner points). */
  private prepare(o: PredictOptions): PreparedPrompts {
    if (!this.embed || !this.origHW) throw new Error('ImagePredictor: no image set; call setImage(...) before predict(...)');
    const [H, W] = this.origHW;
    const S = this.model.imageSize;
    const m = this.model.promptEncoder.maskInputSize;
    const who = 'ImagePredictor';

    // points: [B][N][2]
    let pts: number[][][] = [];
    let lbs: number[][] = [];
    if (o.points !== undefined || o.labels !== undefined) {
      if (o.points === undefined || o.labels === undefined) throw new PromptError('ImagePredictor: points and labels must be given together');
      if (!Array.isArray(o.points) || !Array.isArray(o.labels)) throw new PromptError('ImagePredictor: points and labels must be arrays');
      const batched = o.points.length > 0 && Array.isArray(o.points[0]) && Array.isArray((o.points[0] as readonly unknown[])[0]);
      pts = (batched ? o.points : [o.points]) as number[][][];
      const lb = o.labels as readonly unknown[];
      const labelsBatched = lb.length > 0 && Array.isArray(lb[0]);
      lbs = (labelsBatched ? lb : [lb]) as number[][];
      if (batched !== labelsBatched && !(pts.length === 1 && lbs.length === 1)) {
        throw new PromptError('ImagePredictor: points and labels must both be batched (B lists) or both not');
      }
      if (lbs.length !== pts.length) throw new PromptError(`ImagePredictor: ${pts.length} point lists but ${lbs.length} label lists`);
      pts.forEach((list, b) => {
        const labels = lbs[b]!;
        if (!Array.isArray(list) || !Array.isArray(labels)) throw new PromptError(`ImagePredictor: the points and labels of object ${b} are not arrays`);
        if (labels.length !== list.length) {
          throw new PromptError(`ImagePredictor: ${list.length} points but ${labels.length} labels${pts.length > 1 ? ` (object ${b})` : ''}`);
        }
        if (list.length !== pts[0]!.length) throw new PromptError('ImagePredictor: every object needs the same number of points');
        list.forEach((p, i) => {
          checkPoint(who, p, i, W, H);
          checkLabel(who, labels[i], i);
        });
      });
    }

    // boxes: [B][4]
    let boxes: number[][] = [];
    if (o.box !== undefined) {
      const bx = o.box as readonly unknown[];
      if (!Array.isArray(bx)) throw new PromptError('ImagePredictor: box is not [x0, y0, x1, y1] or a list of them');
      boxes = (bx.length > 0 && Array.isArray(bx[0]) ? bx : [bx]) as number[][];
      boxes.forEach((b, i) => checkBox(who, b, i, W, H));
    }

    const nP = pts.length, nB = boxes.length;
    if (nP > 1 && nB > 1 && nP !== nB) throw new PromptError(`ImagePredictor: ${nB} boxes but ${nP} point lists`);
    let batch = Math.max(nP, nB, 1);

    // mask prompt
    let mask: Float32Array | null = null;
    let maskBatch = 0;
    if (o.maskInput !== undefined) {
      const mi = checkMaskInput(who, o.maskInput, m * m, `${m}x${m}`);
      mask = mi.data;
      maskBatch = mi.planes;
      if (nP === 0 && nB === 0) batch = maskBatch;
      else if (maskBatch !== 1 && maskBatch !== batch) throw new PromptError(`ImagePredictor: maskInput has ${maskBatch} planes for ${batch} objects`);
    }

    // original pixels -> SxS input frame (transform_coords: x / W * S), boxes first
    const count = (nB ? 2 : 0) + (nP ? pts[0]!.length : 0);
    const coords = new Float32Array(batch * count * 2);
    const labels = new Int32Array(batch * count);
    const tx = (x: number) => f(f(f(x) / W) * S), ty = (y: number) => f(f(f(y) / H) * S);
    for (let b = 0; b < batch; b++) {
      let k = b * count;
      if (nB) {
        const [x0, y0, x1, y1] = boxes[nB === 1 ? 0 : b]! as [number, number, number, number];
        coords.set([tx(x0), ty(y0), tx(x1), ty(y1)], k * 2);
        labels.set([2, 3], k);
        k += 2;
      }
      if (nP) {
        const list = pts[nP === 1 ? 0 : b]!, ls = lbs[nP === 1 ? 0 : b]!;
        list.forEach((p, i) => {
          coords[(k + i) * 2] = tx(p[0]!);
          coords[(k + i) * 2 + 1] = ty(p[1]!);
          labels[k + i] = ls[i]!;
        });
      }
    }
    return { batch, count, coords, labels, mask, maskBatch };
  }

  /**
   * Waits for the GPU's verdict on the image set (setImage only records its work): a refusal is
   * thrown here as a GpuError, and then no image is set. `predict` does this itself.
   */
  async ready(): Promise<void> {
    await this.settle();
  }

  /**
   * The GPU half of `predict` (the official `_predict` up to its outputs, nothing read back): the
   * prompt encoder and mask decoder on the prompts, then the hole / sprinkle postprocessing of the
   * low-res logits when the predictor has it. `maskInput` may also be a tensor already on the GPU
   * ([Bm, S/4, S/4], Bm = 1 or B), as the automatic mask generator's mask-to-mask refinement feeds
   * back earlier logits. Records GPU work only: call it after `ready()`, under the caller's
   * `GpuContext.guard` to have the GPU's refusals reported. Throws a PromptError (before any GPU
   * work) on bad prompts. The caller releases the result (`release()`).
   */
  decode(o: Omit<PredictOptions, 'maskInput'> & { maskInput?: ArrayLike<number> | Tensor } = {}): DecodedPrompts {
    const maskTensor = o.maskInput instanceof Tensor ? o.maskInput : null;
    const p = this.prepare({ ...o, maskInput: maskTensor ? undefined : (o.maskInput as ArrayLike<number> | undefined) });
    return this.decodePrepared(p, o.multimask ?? true, maskTensor, true);
  }

  /** Prompt encoder, mask decoder and (with `postprocess`) postprocess_masks' low-res part. */
  private decodePrepared(p: PreparedPrompts, multimask: boolean, maskTensor: Tensor | null, postprocess: boolean): DecodedPrompts {
    const ctx = this.ctx;
    const model = this.model;
    const pe = model.promptEncoder;
    const m = pe.maskInputSize;
    let B = p.batch;
    if (maskTensor) {
      const Bm = maskTensor.size / (m * m);
      if (!Number.isInteger(Bm) || Bm < 1) throw new PromptError(`ImagePredictor: maskInput [${maskTensor.shape}] is not 1 or B planes of ${m}x${m}`);
      if (p.count === 0) B = Bm;
      else if (Bm !== 1 && Bm !== B) throw new PromptError(`ImagePredictor: maskInput has ${Bm} planes for ${B} objects`);
    }
    const own: Tensor[] = [];
    try {
      const sparse = p.count > 0
        ? pe.embedPoints({ coords: p.coords, labels: p.labels, batch: B, count: p.count }, true).data
        : new Float32Array(0);
      let dense: Tensor = pe.noMaskEmbed; // [C]
      if (maskTensor) {
        dense = pe.embedMasks(maskTensor.reshape([maskTensor.size / (m * m), m, m, 1])); // [Bm, g, g, C]
        own.push(dense);
      } else if (p.mask) {
        const maskT = ctx.upload(p.mask, [p.maskBatch, m, m, 1]);
        own.push(maskT);
        dense = pe.embedMasks(maskT); // [Bm, g, g, C]
        own.push(dense);
      }
      const out = model.maskDecoder.forward({
        imageEmbed: this.embed!, imagePe: pe.densePe, sparse, batch: B, dense, multimaskOutput: multimask,
        highResFeatures: this.highRes,
      });
      for (const t of own) t.release();
      own.length = 0;
      own.push(out.masks, out.iouPred, out.samTokensOut, out.objectScoreLogits);
      // postprocess_masks: holes / sprinkles on the low-res logits (before the resize, which callers do)
      const masks = postprocess && (this.maxHoleArea > 0 || this.maxSprinkleArea > 0)
        ? postprocessLowRes(ctx, out.masks, { maxHoleArea: this.maxHoleArea, maxSprinkleArea: this.maxSprinkleArea, threshold: this.maskThreshold })
        : out.masks; // [B, M, S/4, S/4]
      own.length = 0;
      return {
        batch: B, numMasks: out.masks.shape[1]!, lowRes: out.masks, masks, iou: out.iouPred,
        samTokensOut: out.samTokensOut, objectScoreLogits: out.objectScoreLogits,
        release() {
          if (masks !== out.masks) masks.release();
          out.masks.release();
          out.iouPred.release();
          out.samTokensOut.release();
          out.objectScoreLogits.release();
        },
      };
    } finally {
      for (const t of own) t.release();
    }
  }

  /**
   * Decodes masks for the prompts. Throws (before any GPU work) on bad prompts; the predictor
   * stays usable.
   */
  async predict(o: PredictOptions = {}): Promise<PredictResult> {
    await this.settle();
    const p = this.prepare(o);
    const [H, W] = this.origHW!;
    const B = p.batch;
    const multimask = o.multimask ?? true;
    const op = `ImagePredictor.predict (${W}x${H} image, ${B} object${B > 1 ? 's' : ''}${multimask ? ' x 3 masks' : ''})`;
    const rec = await this.ctx.guard(op, () => this.record(p, o), (r) => r.rb.destroy());
    const data = await rec.rb.read(); // destroys the staging buffers, also on failure

    const M = rec.numMasks, m = this.model.promptEncoder.maskInputSize;
    const res: PredictResult = { batch: B, numMasks: M, width: W, height: H, ious: new Float32Array(0), lowResSize: m };
    rec.parts.forEach((name, i) => {
      const buf = data[i]!;
      if (name === 'ious') res.ious = new Float32Array(buf, 0, B * M);
      else if (name === 'lowres') res.lowResLogits = new Float32Array(buf, 0, B * M * m * m);
      else if (name === 'logits') res.masks = new Float32Array(buf, 0, B * M * H * W);
      else if (name === 'bytes') res.masks = new Uint8Array(buf, 0, B * M * H * W);
      else res.overlay = new Uint8ClampedArray(buf, 0, H * W * 4);
    });
    return res;
  }

  /** Records the decoder and everything read back (synchronous: one error scope). */
  private record(p: PreparedPrompts, o: PredictOptions): Recorded {
    const ctx = this.ctx;
    const [H, W] = this.origHW!;
    const m = this.model.promptEncoder.maskInputSize;
    const B = p.batch;
    let rb: Readback | null = null;
    // postprocess_masks: holes / sprinkles on the low-res logits (decodePrepared), then the resize
    // (done by the tiles of upsampleInto). The low-res logits returned stay the unprocessed ones,
    // as the official _predict returns them.
    const wantMasks = o.returnMasks ?? true;
    const d = this.decodePrepared(p, o.multimask ?? true, null, wantMasks || !!o.overlay || !!o.draw);
    const own: Tensor[] = [];
    const out = { masks: d.lowRes, iouPred: d.iou, samTokensOut: d.samTokensOut, objectScoreLogits: d.objectScoreLogits };
    try {
      const M = d.numMasks;
      const post = d.masks; // [B, M, S/4, S/4]
      const parts: Recorded['parts'] = ['ious'];
      const reads: [number, (rb: Readback) => void][] = [[B * M * 4, (r) => r.add(out.iouPred, B * M * 4)]];
      if (o.returnLowRes ?? true) {
        parts.push('lowres');
        const clamped = unary(ctx, out.masks, { clamp: [-32, 32] });
        own.push(clamped);
        reads.push([B * M * m * m * 4, (r) => r.add(clamped, B * M * m * m * 4)]);
      }
      if (wantMasks) {
        parts.push(o.returnLogits ? 'logits' : 'bytes');
        const u: UpsampleOptions = { H, W, mode: o.returnLogits ? 'logits' : 'bytes', threshold: this.maskThreshold };
        reads.push([upsampleByteLength(post, u), (r) => upsampleInto(ctx, post, u, r)]);
      }
      if (o.overlay) {
        parts.push('overlay');
        const opt = typeof o.overlay === 'object' ? o.overlay : {};
        const u: UpsampleOptions = { H, W, mode: 'overlay', colors: opt.colors ?? DEFAULT_COLORS, alpha: opt.alpha ?? 128, threshold: this.maskThreshold };
        reads.push([upsampleByteLength(post, u), (r) => upsampleInto(ctx, post, u, r)]);
      }
      rb = ctx.readback(reads.reduce((s, [bytes]) => s + bytes, 0));
      reads.forEach(([, read], i) => {
        if (i > 0) rb!.next();
        read(rb!);
      });
      if (o.draw) {
        // each object's mask with the highest predicted IoU, [B, S/4, S/4], drawn on the GPU
        const best = pickBestMask(ctx, post, out.iouPred, out.samTokensOut, out.objectScoreLogits, { gateOnScore: false });
        own.push(best.lowRes, best.token);
        drawMasks(ctx, { threshold: this.maskThreshold, ...o.draw, logits: best.lowRes });
      }
      return { rb, numMasks: M, parts };
    } catch (e) {
      rb?.destroy();
      throw e;
    } finally {
      for (const t of own) t.release();
      d.release();
    }
  }
}
