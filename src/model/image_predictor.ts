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
 * was asked for.
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { add } from '../kernels/elementwise.js';
import { maskBytes, maskOverlay, resizeBilinear, unary } from '../kernels/mask_ops.js';
import { postprocessLowRes } from '../kernels/mask_postprocess.js';
import { preprocessImage, type ImageSource } from '../kernels/preprocess.js';
import { drawMasks, type DrawMasksOptions } from '../kernels/draw_masks.js';
import { pickBestMask } from '../kernels/track_ops.js';
import type { EfficientTAM } from './efficienttam.js';
import type { HighResFeatures } from './mask_decoder.js';

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
  /** low-res logits of an earlier prediction: 1 or B planes of (S/4) x (S/4) */
  maskInput?: Float32Array;
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

/** Prompts in the SxS input frame, batched. */
interface PreparedPrompts {
  batch: number;
  count: number;
  coords: Float32Array;
  labels: Int32Array;
  mask: Float32Array | null;
  maskBatch: number;
}

export class ImagePredictor {
  private embed: Tensor | null = null;
  /** SAM 2: the image's [feat_s0, feat_s1] (the official predictor's `_features["high_res_feats"]`) */
  private highRes: HighResFeatures | null = null;
  private origHW: [number, number] | null = null;

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

  constructor(readonly model: EfficientTAM,
    opts: { maskThreshold?: number; antialias?: boolean; maxHoleArea?: number; maxSprinkleArea?: number } = {}) {
    this.maskThreshold = opts.maskThreshold ?? 0;
    this.antialias = opts.antialias ?? true;
    this.maxHoleArea = opts.maxHoleArea ?? 0;
    this.maxSprinkleArea = opts.maxSprinkleArea ?? 0;
    for (const [k, v] of [['maxHoleArea', this.maxHoleArea], ['maxSprinkleArea', this.maxSprinkleArea]] as const) {
      if (!(v >= 0) || !Number.isFinite(v)) throw new Error(`ImagePredictor: ${k} ${v} is not a non-negative area`);
    }
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

  /** Embeds an RGB(A) image (8-bit, row-major). Records GPU work only. */
  setImage(source: ImageSource): void {
    const { width, height } = source;
    if (!(width > 0 && height > 0)) throw new Error(`ImagePredictor.setImage: empty image (${width}x${height})`);
    const S = this.model.imageSize;
    const pixels = preprocessImage(this.ctx, source, S, { antialias: this.antialias }); // [1, S, S, 3]
    try {
      this.setInput(pixels, width, height);
    } finally {
      pixels.release();
    }
  }

  /** Embeds an already preprocessed input [1, S, S, 3] of an image of the given original size. */
  setInput(pixels: Tensor, width: number, height: number): void {
    this.reset();
    const m = this.model;
    const out = m.forwardImage(pixels);
    let embed = out.visionFeatures; // [1, g, g, C]
    if (m.config.directly_add_no_mem_embed) {
      embed = add(this.ctx, out.visionFeatures, m.noMemEmbed);
      out.visionFeatures.release();
    }
    this.embed = embed;
    this.highRes = out.highResFeatures;
    this.origHW = [height, width];
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
    if (!(width > 0 && height > 0)) throw new Error(`ImagePredictor.setEmbedding: bad image size ${width}x${height}`);
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
  }

  /** Checks the prompts and maps them to the SxS input frame (boxes first, as two corner points). */
  private prepare(o: PredictOptions): PreparedPrompts {
    if (!this.embed || !this.origHW) throw new Error('ImagePredictor: no image set; call setImage(...) before predict(...)');
    const [H, W] = this.origHW;
    const S = this.model.imageSize;
    const m = this.model.promptEncoder.maskInputSize;
    const isNum = (v: unknown): v is number => typeof v === 'number';
    const inImage = (x: number, y: number, what: string) => {
      if (!Number.isFinite(x) || !Number.isFinite(y)) throw new Error(`ImagePredictor: ${what} (${x}, ${y}) is not finite`);
      if (x < 0 || y < 0 || x > W || y > H) {
        throw new Error(`ImagePredictor: ${what} (${x}, ${y}) is outside the ${W}x${H} image`);
      }
    };

    // points: [B][N][2]
    let pts: number[][][] = [];
    let lbs: number[][] = [];
    if (o.points !== undefined || o.labels !== undefined) {
      if (o.points === undefined || o.labels === undefined) throw new Error('ImagePredictor: points and labels must be given together');
      const batched = o.points.length > 0 && Array.isArray(o.points[0]) && Array.isArray((o.points[0] as readonly unknown[])[0]);
      pts = (batched ? o.points : [o.points]) as number[][][];
      const lb = o.labels as readonly unknown[];
      const labelsBatched = lb.length > 0 && Array.isArray(lb[0]);
      lbs = (labelsBatched ? lb : [lb]) as number[][];
      if (batched !== labelsBatched && !(pts.length === 1 && lbs.length === 1)) {
        throw new Error('ImagePredictor: points and labels must both be batched (B lists) or both not');
      }
      if (lbs.length !== pts.length) throw new Error(`ImagePredictor: ${pts.length} point lists but ${lbs.length} label lists`);
      pts.forEach((list, b) => {
        const labels = lbs[b]!;
        if (labels.length !== list.length) {
          throw new Error(`ImagePredictor: ${list.length} points but ${labels.length} labels${pts.length > 1 ? ` (object ${b})` : ''}`);
        }
        if (list.length !== pts[0]!.length) throw new Error('ImagePredictor: every object needs the same number of points');
        list.forEach((p, i) => {
          if (p.length !== 2 || !p.every(isNum)) throw new Error(`ImagePredictor: point ${i} is not [x, y]`);
          inImage(p[0]!, p[1]!, `point ${i}`);
          const l = labels[i]!;
          if (!(l === 0 || l === 1 || l === -1 || l === 2 || l === 3)) throw new Error(`ImagePredictor: label ${l} of point ${i} is not 0 or 1`);
        });
      });
    }

    // boxes: [B][4]
    let boxes: number[][] = [];
    if (o.box !== undefined) {
      const bx = o.box as readonly unknown[];
      boxes = (bx.length > 0 && Array.isArray(bx[0]) ? bx : [bx]) as number[][];
      boxes.forEach((b, i) => {
        if (b.length !== 4 || !b.every(isNum)) throw new Error(`ImagePredictor: box ${i} is not [x0, y0, x1, y1]`);
        const [x0, y0, x1, y1] = b as [number, number, number, number];
        inImage(x0, y0, `box ${i} corner`);
        inImage(x1, y1, `box ${i} corner`);
        if (x1 < x0 || y1 < y0) throw new Error(`ImagePredictor: box ${i} [${b.join(', ')}] has x1 < x0 or y1 < y0`);
      });
    }

    const nP = pts.length, nB = boxes.length;
    if (nP > 1 && nB > 1 && nP !== nB) throw new Error(`ImagePredictor: ${nB} boxes but ${nP} point lists`);
    let batch = Math.max(nP, nB, 1);

    // mask prompt
    let mask: Float32Array | null = null;
    let maskBatch = 0;
    if (o.maskInput !== undefined) {
      mask = o.maskInput;
      maskBatch = mask.length / (m * m);
      if (!Number.isInteger(maskBatch) || maskBatch < 1) {
        throw new Error(`ImagePredictor: maskInput has ${mask.length} values; expected 1 or B planes of ${m}x${m}`);
      }
      if (nP === 0 && nB === 0) batch = maskBatch;
      else if (maskBatch !== 1 && maskBatch !== batch) throw new Error(`ImagePredictor: maskInput has ${maskBatch} planes for ${batch} objects`);
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
   * Decodes masks for the prompts. Throws (before any GPU work) on bad prompts; the predictor
   * stays usable.
   */
  async predict(o: PredictOptions = {}): Promise<PredictResult> {
    const p = this.prepare(o);
    const ctx = this.ctx;
    const model = this.model;
    const pe = model.promptEncoder;
    const [H, W] = this.origHW!;
    const m = pe.maskInputSize;
    const B = p.batch;

    const sparse = p.count > 0
      ? pe.embedPoints({ coords: p.coords, labels: p.labels, batch: B, count: p.count }, true).data
      : new Float32Array(0);
    let dense: Tensor;
    let maskT: Tensor | null = null;
    if (p.mask) {
      maskT = ctx.upload(p.mask, [p.maskBatch, m, m, 1]);
      dense = pe.embedMasks(maskT); // [Bm, g, g, C]
    } else {
      dense = pe.noMaskEmbed; // [C]
    }
    const out = model.maskDecoder.forward({
      imageEmbed: this.embed!, imagePe: pe.densePe, sparse, batch: B, dense, multimaskOutput: o.multimask ?? true,
      highResFeatures: this.highRes,
    });
    if (maskT) { maskT.release(); dense.release(); }
    const M = out.masks.shape[1]!;

    // what to read back, packed into one buffer
    const parts: { name: string; t: Tensor; words: number }[] = [{ name: 'ious', t: out.iouPred, words: B * M }];
    const wantMasks = o.returnMasks ?? true;
    let full: Tensor | null = null;
    if (wantMasks || o.overlay || o.draw) {
      // postprocess_masks: holes / sprinkles on the low-res logits, then the resize. The low-res
      // logits returned stay the unprocessed ones, as the official _predict returns them.
      const post = this.maxHoleArea > 0 || this.maxSprinkleArea > 0
        ? postprocessLowRes(ctx, out.masks, { maxHoleArea: this.maxHoleArea, maxSprinkleArea: this.maxSprinkleArea, threshold: this.maskThreshold })
        : out.masks; // [B, M, S/4, S/4]
      if (wantMasks || o.overlay) full = resizeBilinear(ctx, post, H, W); // [B, M, H, W] (from unclamped logits)
      if (o.draw) {
        // each object's mask with the highest predicted IoU, [B, S/4, S/4], drawn on the GPU
        const best = pickBestMask(ctx, post, out.iouPred, out.samTokensOut, out.objectScoreLogits, { gateOnScore: false });
        drawMasks(ctx, { threshold: this.maskThreshold, ...o.draw, logits: best.lowRes });
        best.lowRes.release();
        best.token.release();
      }
      if (post !== out.masks) post.release();
    }
    out.samTokensOut.release();
    out.objectScoreLogits.release();
    if (o.returnLowRes ?? true) {
      parts.push({ name: 'lowres', t: unary(ctx, out.masks, { clamp: [-32, 32] }), words: B * M * m * m });
    }
    if (wantMasks) {
      const n = B * M * H * W;
      parts.push(o.returnLogits
        ? { name: 'logits', t: full!, words: n }
        : { name: 'bytes', t: maskBytes(ctx, full!, this.maskThreshold), words: Math.ceil(n / 4) });
    }
    if (o.overlay) {
      const opt = typeof o.overlay === 'object' ? o.overlay : {};
      parts.push({ name: 'overlay', t: maskOverlay(ctx, full!, opt.colors ?? DEFAULT_COLORS, opt.alpha ?? 128, this.maskThreshold), words: H * W });
    }
    const total = parts.reduce((s, q) => s + q.words, 0);
    const packed = ctx.empty([total]);
    let off = 0;
    for (const q of parts) {
      ctx.copy(q.t, packed, q.words * 4, 0, off * 4);
      off += q.words;
    }
    const data = await packed.read();
    packed.release();
    for (const q of parts) if (q.t !== out.iouPred && q.t !== full) q.t.release();
    full?.release();
    out.masks.release();
    out.iouPred.release();

    const res: PredictResult = { batch: B, numMasks: M, width: W, height: H, ious: new Float32Array(0), lowResSize: m };
    off = 0;
    for (const q of parts) {
      const slice = data.subarray(off, off + q.words);
      if (q.name === 'ious') res.ious = slice.slice();
      else if (q.name === 'lowres') res.lowResLogits = slice.slice();
      else if (q.name === 'logits') res.masks = slice.slice();
      else if (q.name === 'bytes') res.masks = new Uint8Array(slice.slice().buffer, 0, B * M * H * W);
      else if (q.name === 'overlay') res.overlay = new Uint8ClampedArray(slice.slice().buffer);
      off += q.words;
    }
    return res;
  }
}
