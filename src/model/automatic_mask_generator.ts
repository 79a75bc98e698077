/**
 * "Segment everything": the official automatic mask generator
 * (efficient_track_anything/automatic_mask_generator.py, SAM 2's SAM2AutomaticMaskGenerator), with
 * its parameters, defaults, records and their order, on the GPU.
 *
 *   generate(image)
 *     crop boxes: the image, then crop_n_layers layers of 2^i x 2^i overlapping crops
 *     for each crop (processCrop):
 *       the image predictor embeds the crop                        (one image embedding per crop)
 *       the layer's point grid, in the crop's pixels, in batches of points_per_batch (processBatch):
 *         prompt encoder + mask decoder, one positive point each   -> low-res logits [B, M, m, m], IoU [B, M]
 *         (use_m2m: decoded again, one mask each, with its own low-res logits as the mask prompt)
 *         per candidate, from the low-res logits upsampled to the crop (never stored):
 *           stability score, area, box; keep = IoU / stability thresholds, not at a crop edge
 *       box NMS (box_nms_thresh) over the crop's kept candidates     -> the crop's survivors
 *     box NMS between crops (crop_nms_thresh, smaller crops first) when there are several
 *     the survivors' masks at the image's size (uncropped), in the output mode
 *
 * Everything per candidate stays on the GPU; the first readback of a crop is its survivors (after
 * NMS: indices, boxes, scores), and the masks are made and read back only for the final records.
 * The NMS between crops runs on the CPU, over those survivors' boxes (a few numbers each, already
 * read back). Equal scores come out in the order PyTorch's CPU code gives them (amg.ts batchedNms).
 * min_mask_region_area goes to the image predictor as its max hole / sprinkle area, as the
 * reference does (holes and islands of the low-res logits, GPU connected components).
 *
 * Works through ImagePredictor (setImage, decode): a model the image predictor takes works here.
 */
import type { GpuContext, GpuError } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { unary } from '../kernels/mask_ops.js';
import { labelMap, maskBits, maskWords, type BitLayout } from '../kernels/mask_bits.js';
import { cellTables, maskStats, STATS_WORDS } from '../kernels/mask_stats.js';
import { boxNms, NMS_MAX_CANDIDATES } from '../kernels/nms.js';
import { drawLabels } from '../kernels/draw_masks.js';
import type { ImageSource } from '../kernels/preprocess.js';
import {
  batchedNms, batchedNmsOrder, boxXyxyToXywh, buildAllLayerPointGrids, cocoEncodeRle, cropPoints, generateCropBoxes,
  runLengths, uncropPoint, unpackBitStream, type BoxXYXY, type CocoRLE, type UncompressedRLE,
} from './amg.js';
import { ImagePredictor } from './image_predictor.js';

const f = Math.fround;

/** Bad options or input for the generator (the message names the problem). */
export class MaskGeneratorError extends Error {
  override name = 'MaskGeneratorError';
}

export type OutputMode = 'binary_mask' | 'uncompressed_rle' | 'coco_rle';

/** The official parameters (EfficientTAMAutomaticMaskGenerator.__init__), camelCase; defaults as there. */
export interface AutomaticMaskGeneratorOptions {
  /** points along one side of the grid (32); null when `pointGrids` gives the points */
  pointsPerSide?: number | null;
  /** points decoded at once (64) */
  pointsPerBatch?: number;
  /** keep masks whose predicted IoU is above this (0.8; 0 = off) */
  predIouThresh?: number;
  /** keep masks whose stability score is at least this (0.95; 0 = off) */
  stabilityScoreThresh?: number;
  /** the logit offset of the stability score (1.0) */
  stabilityScoreOffset?: number;
  /** logit threshold of the masks (0.0) */
  maskThreshold?: number;
  /** box IoU above which NMS drops a mask within a crop (0.7) */
  boxNmsThresh?: number;
  /** layers of crops after the whole image (0) */
  cropNLayers?: number;
  /** box IoU above which NMS drops a mask between crops (0.7) */
  cropNmsThresh?: number;
  /** how much crops overlap, as a fraction of the image's short side (512 / 1500) */
  cropOverlapRatio?: number;
  /** points per side in layer n are pointsPerSide / factor^n (1) */
  cropNPointsDownscaleFactor?: number;
  /** explicit point grids in [0, 1]^2, one per crop layer: [n, 2] (x, y) pairs (null) */
  pointGrids?: readonly (Float64Array | Float32Array | readonly (readonly number[])[])[] | null;
  /** fill holes and remove islands of at most this area, on the low-res masks (0 = off) */
  minMaskRegionArea?: number;
  /** 'binary_mask' (default), 'uncompressed_rle' or 'coco_rle' */
  outputMode?: OutputMode;
  /** one step of mask-to-mask refinement (false) */
  useM2m?: boolean;
  /** three masks per point (true) */
  multimaskOutput?: boolean;
  /** this library: resize the image with antialiasing (default true, as torchvision >= 0.17) */
  antialias?: boolean;
}

/** One mask, as the reference's records (camelCase): in the order the reference returns them. */
export interface MaskRecord {
  /** binary_mask: 0/1 bytes [H, W] row-major; uncompressed_rle / coco_rle: the RLE (column-major) */
  segmentation: Uint8Array | UncompressedRLE | CocoRLE;
  /** pixels in the mask */
  area: number;
  /** [x, y, w, h] of the mask's box; w and h are last - first pixel, as the reference has them */
  bbox: [number, number, number, number];
  predictedIou: number;
  /** [[x, y]]: the point that gave the mask, in image pixels */
  pointCoords: [[number, number]];
  stabilityScore: number;
  /** [x, y, w, h] of the crop the mask came from */
  cropBox: [number, number, number, number];
  /** with `returnLowRes`: the mask's low-res logits [m, m] (not in the reference's records) */
  lowResLogits?: Float32Array;
}

export interface GenerateOptions {
  /** called as work completes on the GPU: steps done of the total (embeddings, point batches, masks) */
  onProgress?(done: number, total: number): void;
  /** cancels between steps: generate rejects with a DOMException named AbortError */
  signal?: AbortSignal;
  /**
   * draw every mask, each in its own colour (smaller masks over larger ones), into this texture on
   * the GPU, over `image` if given; `target` may be a function giving it when the masks are ready
   * (a canvas's current texture, which would expire while the generator works)
   */
  draw?: { target: GPUTexture | (() => GPUTexture); image?: GPUTexture; alpha?: number };
  /**
   * also give each record the low-res logits its mask was upsampled from (`lowResLogits`, [m, m]
   * for the crop `cropBox`, after hole / sprinkle removal): for inspecting and testing
   */
  returnLowRes?: boolean;
}

/** A crop's survivors before their masks are made. */
interface CropSurvivor {
  /** XYXY in the image (uncropped), the last pixel's index */
  box: BoxXYXY;
  area: number;
  iou: number;
  stability: number;
  point: [number, number];
}

interface CropResult {
  crop: BoxXYXY;
  survivors: CropSurvivor[];
  /** the survivors' low-res logits [K, m, m] (null when none) */
  planes: Tensor | null;
}

const DEFAULTS = {
  pointsPerBatch: 64, predIouThresh: 0.8, stabilityScoreThresh: 0.95, stabilityScoreOffset: 1.0, maskThreshold: 0.0,
  boxNmsThresh: 0.7, cropNLayers: 0, cropNmsThresh: 0.7, cropOverlapRatio: 512 / 1500, cropNPointsDownscaleFactor: 1,
  minMaskRegionArea: 0, outputMode: 'binary_mask' as OutputMode, useM2m: false, multimaskOutput: true,
};

/** Read-back chunks of output masks stay under this many bytes. */
const MASK_CHUNK_BYTES = 64 << 20;

function abortError(signal: AbortSignal): Error {
  const r = signal.reason;
  if (r instanceof Error && r.name === 'AbortError') return r;
  return new DOMException(`Segment everything was aborted${r !== undefined && !(r instanceof Error) ? ` (${String(r)})` : ''}`, 'AbortError');
}

/** The pixels of a crop of an image (a copy; the whole image is returned as it is). */
export function cropImage(image: ImageSource, crop: BoxXYXY): ImageSource {
  const [x0, y0, x1, y1] = crop;
  if (x0 === 0 && y0 === 0 && x1 === image.width && y1 === image.height) return image;
  const c = image.channels, w = x1 - x0, h = y1 - y0;
  const data = new Uint8Array(w * h * c);
  for (let y = 0; y < h; y++) data.set(image.data.subarray(((y0 + y) * image.width + x0) * c, ((y0 + y) * image.width + x1) * c), y * w * c);
  return { data, width: w, height: h, channels: c };
}

export class AutomaticMaskGenerator {
  readonly predictor: ImagePredictor;
  /** one grid per crop layer, [n, 2] (x, y) in [0, 1] */
  readonly pointGrids: Float64Array[];
  readonly pointsPerBatch: number;
  readonly predIouThresh: number;
  readonly stabilityScoreThresh: number;
  readonly stabilityScoreOffset: number;
  readonly maskThreshold: number;
  readonly boxNmsThresh: number;
  readonly cropNLayers: number;
  readonly cropNmsThresh: number;
  readonly cropOverlapRatio: number;
  readonly cropNPointsDownscaleFactor: number;
  readonly minMaskRegionArea: number;
  readonly outputMode: OutputMode;
  readonly useM2m: boolean;
  readonly multimaskOutput: boolean;
  private busy = false;

  constructor(model: ConstructorParameters<typeof ImagePredictor>[0], opts: AutomaticMaskGeneratorOptions = {}) {
    const o = { ...DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as typeof DEFAULTS & AutomaticMaskGeneratorOptions;
    const bad = (msg: string) => new MaskGeneratorError(`AutomaticMaskGenerator: ${msg}`);
    const isInt = (v: unknown, min: number) => typeof v === 'number' && Number.isInteger(v) && v >= min;
    const isNum = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
    for (const k of ['predIouThresh', 'stabilityScoreThresh', 'stabilityScoreOffset', 'maskThreshold', 'boxNmsThresh', 'cropNmsThresh', 'cropOverlapRatio', 'minMaskRegionArea'] as const) {
      if (!isNum(o[k])) throw bad(`${k} ${String(o[k])} is not a finite number`);
    }
    if (!isInt(o.pointsPerBatch, 1)) throw bad(`pointsPerBatch ${String(o.pointsPerBatch)} is not a positive integer`);
    if (!isInt(o.cropNLayers, 0)) throw bad(`cropNLayers ${String(o.cropNLayers)} is not a non-negative integer`);
    if (!isInt(o.cropNPointsDownscaleFactor, 1)) throw bad(`cropNPointsDownscaleFactor ${String(o.cropNPointsDownscaleFactor)} is not a positive integer`);
    if (o.minMaskRegionArea < 0) throw bad(`minMaskRegionArea ${o.minMaskRegionArea} is negative`);
    if (!['binary_mask', 'uncompressed_rle', 'coco_rle'].includes(o.outputMode)) {
      throw bad(`unknown outputMode '${String(o.outputMode)}' (binary_mask, uncompressed_rle or coco_rle)`);
    }
    // exactly one of points_per_side and point_grids (points_per_side may be left out with grids)
    const grids = o.pointGrids ?? null;
    const perSide = opts.pointsPerSide === undefined ? (grids ? null : 32) : opts.pointsPerSide;
    if ((perSide === null) === (grids === null)) throw bad('give exactly one of pointsPerSide and pointGrids');
    if (perSide !== null) {
      if (!isInt(perSide, 1)) throw bad(`pointsPerSide ${String(perSide)} is not a positive integer`);
      const last = Math.trunc(perSide / o.cropNPointsDownscaleFactor ** o.cropNLayers);
      if (last < 1) throw bad(`crop layer ${o.cropNLayers} would have ${last} points per side (${perSide} / ${o.cropNPointsDownscaleFactor}^${o.cropNLayers})`);
      this.pointGrids = buildAllLayerPointGrids(perSide, o.cropNLayers, o.cropNPointsDownscaleFactor);
    } else {
      this.pointGrids = grids!.map((g, i) => {
        const flat = g instanceof Float64Array || g instanceof Float32Array ? Float64Array.from(g) : Float64Array.from((g as readonly (readonly number[])[]).flatMap((p) => {
          if (p.length !== 2) throw bad(`pointGrids[${i}] has a point that is not [x, y]`);
          return [p[0]!, p[1]!];
        }));
        if (flat.length === 0 || flat.length % 2 !== 0) throw bad(`pointGrids[${i}] is not a non-empty list of [x, y] points`);
        if (!flat.every((v) => v >= 0 && v <= 1)) throw bad(`pointGrids[${i}] has points outside [0, 1]`);
        return flat;
      });
      if (this.pointGrids.length < o.cropNLayers + 1) throw bad(`${this.pointGrids.length} point grids for ${o.cropNLayers + 1} crop layers`);
    }
    const perPoint = (o.multimaskOutput ?? true) ? 3 : 1;
    const most = Math.max(...this.pointGrids.map((g) => g.length / 2)) * perPoint;
    if (most > NMS_MAX_CANDIDATES) {
      throw bad(`${most} candidate masks in a crop (points x ${perPoint}); at most ${NMS_MAX_CANDIDATES} (fewer points per side)`);
    }
    this.predictor = new ImagePredictor(model, {
      maxHoleArea: o.minMaskRegionArea, maxSprinkleArea: o.minMaskRegionArea, antialias: opts.antialias ?? true,
    });
    this.pointsPerBatch = o.pointsPerBatch;
    this.predIouThresh = o.predIouThresh;
    this.stabilityScoreThresh = o.stabilityScoreThresh;
    this.stabilityScoreOffset = o.stabilityScoreOffset;
    this.maskThreshold = o.maskThreshold;
    this.boxNmsThresh = o.boxNmsThresh;
    this.cropNLayers = o.cropNLayers;
    this.cropNmsThresh = o.cropNmsThresh;
    this.cropOverlapRatio = o.cropOverlapRatio;
    this.cropNPointsDownscaleFactor = o.cropNPointsDownscaleFactor;
    this.minMaskRegionArea = o.minMaskRegionArea;
    this.outputMode = o.outputMode;
    this.useM2m = o.useM2m;
    this.multimaskOutput = o.multimaskOutput;
  }

  get ctx(): GpuContext {
    return this.predictor.ctx;
  }

  /**
   * Masks for the whole image, as the official `generate`: records in the reference's order. The
   * image is 8-bit RGB(A), row-major. One call at a time per generator.
   */
  async generate(image: ImageSource, opts: GenerateOptions = {}): Promise<MaskRecord[]> {
    const { width: W, height: H } = image;
    if (!(Number.isInteger(W) && Number.isInteger(H) && W > 0 && H > 0)) throw new MaskGeneratorError(`AutomaticMaskGenerator.generate: bad image size ${W}x${H}`);
    if (!image.data || image.data.length < W * H * image.channels) {
      throw new MaskGeneratorError(`AutomaticMaskGenerator.generate: ${image.data?.length ?? 0} bytes for a ${W}x${H} image of ${image.channels} channels`);
    }
    if (this.busy) throw new MaskGeneratorError('AutomaticMaskGenerator.generate: already running (one call at a time)');
    if (opts.signal?.aborted) throw abortError(opts.signal);
    this.busy = true;
    const crops: CropResult[] = [];
    try {
      const { cropBoxes, layerIdxs } = generateCropBoxes(H, W, this.cropNLayers, this.cropOverlapRatio);
      const progress = this.progress(cropBoxes, layerIdxs, opts);
      for (let i = 0; i < cropBoxes.length; i++) {
        crops.push(await this.processCrop(image, cropBoxes[i]!, layerIdxs[i]!, [H, W], progress, opts.signal));
      }

      // the survivors of every crop, in crop order; then NMS between crops, smaller crops first
      let all = crops.flatMap((c) => c.survivors.map((s, local) => ({ crop: c, local, s })));
      if (cropBoxes.length > 1) {
        const scores = Float32Array.from(all, ({ crop: { crop: b } }) => 1 / ((b[2] - b[0]) * (b[3] - b[1])));
        const keep = batchedNms(all.map((a) => a.s.box), scores, this.cropNmsThresh);
        all = keep.map((i) => all[i]!);
      }
      const segs = await this.outputMasks(all, W, H, opts);
      this.ctx.mark('masks');
      const lowRes = new Map<CropResult, Float32Array>();
      if (opts.returnLowRes) for (const c of crops) if (c.planes) lowRes.set(c, await c.planes.read());
      progress.step();
      const m2 = this.predictor.model.promptEncoder.maskInputSize ** 2;
      return all.map(({ crop: cr, local, s }, i): MaskRecord => ({
        segmentation: segs[i]!,
        area: s.area,
        bbox: boxXyxyToXywh(s.box),
        predictedIou: s.iou,
        pointCoords: [s.point],
        stabilityScore: s.stability,
        cropBox: boxXyxyToXywh(cr.crop),
        ...(opts.returnLowRes ? { lowResLogits: lowRes.get(cr)!.slice(local * m2, (local + 1) * m2) } : {}),
      }));
    } finally {
      for (const c of crops) c.planes?.release();
      this.predictor.reset();
      this.busy = false;
    }
  }

  /** Steps: an embedding and the point batches of each crop, then the output masks. */
  private progress(cropBoxes: BoxXYXY[], layerIdxs: number[], opts: GenerateOptions) {
    let total = 1;
    cropBoxes.forEach((_, i) => { total += 1 + Math.ceil(this.pointGrids[layerIdxs[i]!]!.length / 2 / this.pointsPerBatch); });
    let done = 0;
    opts.onProgress?.(0, total);
    return { step: () => { done++; opts.onProgress?.(done, total); } };
  }

  private async processCrop(image: ImageSource, crop: BoxXYXY, layer: number, [H, W]: [number, number],
    progress: { step(): void }, signal?: AbortSignal): Promise<CropResult> {
    const ctx = this.ctx;
    const [x0, y0, x1, y1] = crop;
    const cw = x1 - x0, ch = y1 - y0;
    this.predictor.setImage(cropImage(image, crop));
    ctx.mark('encoder'); // profile segments (GpuContext.startProfile; free otherwise)
    const m = this.predictor.model.promptEncoder.maskInputSize;
    // the layer's grid in the crop's pixels (float32, as the reference's tensor)
    const points = cropPoints(this.pointGrids[layer]!, cw, ch);
    const nPoints = points.length / 2;

    const held: Tensor[] = [];
    const batches: { planes: Tensor; first: number }[] = [];
    let stats: Tensor | null = null, scores: Tensor | null = null, M = 0;
    // GPU work is recorded under error scopes (GpuContext.guardLater); `pace` throws a refusal
    const errors: Promise<GpuError | null>[] = [];
    const guarded = <T>(op: string, record: () => T): T => {
      const { value, error } = ctx.guardLater(`AutomaticMaskGenerator: ${op} (crop ${crop.join(', ')} of a ${W}x${H} image)`, record);
      errors.push(error);
      return value;
    };
    let inflight: Promise<unknown> | null = null;
    const pace = async () => {
      // one batch runs on the GPU while the next is recorded; progress counts finished work
      ctx.flush();
      const mine = ctx.device.queue.onSubmittedWorkDone();
      if (inflight) { await inflight; progress.step(); }
      inflight = mine;
      for (const e of await Promise.all(errors.splice(0))) if (e) throw e;
      if (signal?.aborted) throw abortError(signal);
    };
    let tables: Tensor | null = null;
    try {
      await pace(); // the embedding
      await this.predictor.ready(); // the GPU's verdict on it
      tables = guarded('cell tables', () => cellTables(ctx, m, ch, cw));
      for (let b = 0; b < nPoints; b += this.pointsPerBatch) {
        const pts = points.subarray(2 * b, 2 * Math.min(nPoints, b + this.pointsPerBatch));
        const planes = guarded(`points ${b}..${b + pts.length / 2 - 1}`, () => {
          const { planes, iou, numMasks } = this.processBatch(pts);
          ctx.mark('decoder');
          if (!stats) {
            M = numMasks;
            stats = ctx.empty([nPoints * M * STATS_WORDS]);
            scores = ctx.empty([nPoints * M]);
            held.push(stats, scores);
          }
          maskStats(ctx, planes, iou, tables!, {
            maskThreshold: this.maskThreshold, stabilityScoreOffset: this.stabilityScoreOffset,
            predIouThresh: this.predIouThresh, stabilityScoreThresh: this.stabilityScoreThresh,
            crop, imageWidth: W, imageHeight: H,
          }, { stats, scores: scores!, offset: b * M });
          iou.release();
          ctx.mark('filter');
          return planes;
        });
        batches.push({ planes, first: b * M });
        await pace();
      }
      const N = nPoints * M;

      // Remove duplicates within this crop (NMS on the GPU); then the first readback: the survivors
      const packed = guarded('box NMS', () => {
        const kept = boxNms(ctx, stats!, scores!, N, this.boxNmsThresh);
        held.push(kept);
        ctx.mark('nms');
        const packed = ctx.empty([N + 1 + N * STATS_WORDS + N]);
        held.push(packed);
        ctx.copy(kept, packed, (N + 1) * 4);
        ctx.copy(stats!, packed, N * STATS_WORDS * 4, 0, (N + 1) * 4);
        ctx.copy(scores!, packed, N * 4, 0, (N + 1 + N * STATS_WORDS) * 4);
        return packed;
      });
      for (const e of await Promise.all(errors.splice(0))) if (e) throw e;
      const data = await packed.read();
      progress.step();
      const u = new Uint32Array(data.buffer, data.byteOffset, data.length);
      const st = u.subarray(N + 1, N + 1 + N * STATS_WORDS);
      const sc = data.subarray(N + 1 + N * STATS_WORDS);
      let candidates = 0;
      for (let c = 0; c < N; c++) candidates += st[c * STATS_WORDS + 7]!;
      const order = batchedNmsOrder(Array.from(u.subarray(1, 1 + u[0]!)), sc, candidates);

      // Return to the original image frame; keep the survivors' low-res logits for their masks
      const survivors = order.map((c): CropSurvivor => {
        const s = st.subarray(c * STATS_WORDS, (c + 1) * STATS_WORDS);
        const p = Math.floor(c / M);
        return {
          box: [s[3]! + x0, s[4]! + y0, s[5]! + x0, s[6]! + y0],
          area: s[2]!,
          iou: sc[c]!,
          stability: f(f(s[0]!) / f(s[1]!)),
          point: uncropPoint(points[2 * p]!, points[2 * p + 1]!, crop),
        };
      });
      let planes: Tensor | null = null;
      if (order.length) {
        planes = await ctx.guard(`AutomaticMaskGenerator: survivors (crop ${crop.join(', ')})`, () => {
          const t = ctx.empty([order.length, m, m]);
          const bytes = m * m * 4;
          order.forEach((c, i) => {
            const src = batches.find((q) => c >= q.first && c < q.first + q.planes.size / (m * m))!;
            ctx.copy(src.planes, t, bytes, (c - src.first) * bytes, i * bytes);
          });
          return t;
        }, (t) => t.release());
      }
      return { crop, survivors, planes };
    } finally {
      for (const t of held) t.release();
      for (const q of batches) q.planes.release();
      tables?.release();
      this.predictor.reset();
    }
  }

  /**
   * One batch of points (crop pixels, float32 [B, 2]) through the predictor: candidate planes
   * [B * M, m, m] (point-major, as the reference flattens them) and IoUs [B * M].
   */
  private processBatch(pts: Float32Array): { planes: Tensor; iou: Tensor; numMasks: number } {
    const ctx = this.ctx;
    const B = pts.length / 2;
    const asPrompts = (idx: (k: number) => number, n: number) => ({
      points: Array.from({ length: n }, (_, k) => [[pts[2 * idx(k)]!, pts[2 * idx(k) + 1]!]]),
      labels: Array.from({ length: n }, () => [1]),
    });
    const d = this.predictor.decode({ ...asPrompts((k) => k, B), multimask: this.multimaskOutput });
    const M = d.numMasks;
    const m = this.predictor.model.promptEncoder.maskInputSize;
    if (!this.useM2m) {
      d.samTokensOut.release();
      d.objectScoreLogits.release();
      if (d.masks !== d.lowRes) d.lowRes.release();
      return { planes: d.masks, iou: d.iou, numMasks: M }; // [B, M, m, m], [B, M]
    }
    // One step of refinement: each mask decoded again from its point, with its own low-res logits
    // (clamped to [-32, 32], as _predict returns them) as the mask prompt, one mask out
    const low = unary(ctx, d.lowRes, { clamp: [-32, 32] }); // [B * M, m, m]
    d.release();
    const planes = ctx.empty([B * M, m, m]);
    const iou = ctx.empty([B * M]);
    const bytes = m * m * 4;
    try {
      for (let s = 0; s < B * M; s += this.pointsPerBatch) {
        const n = Math.min(this.pointsPerBatch, B * M - s);
        const maskInput = ctx.empty([n, m, m]);
        ctx.copy(low, maskInput, n * bytes, s * bytes, 0);
        const r = this.predictor.decode({ ...asPrompts((k) => Math.floor((s + k) / M), n), maskInput, multimask: false });
        ctx.copy(r.masks, planes, n * bytes, 0, s * bytes);
        ctx.copy(r.iou, iou, n * 4, 0, s * 4);
        r.release();
        maskInput.release();
      }
    } finally {
      low.release();
    }
    return { planes, iou, numMasks: M };
  }

  /** The survivors' masks at the image's size, in the output mode (made and read back in chunks). */
  private async outputMasks(all: { crop: CropResult; local: number; s: CropSurvivor }[], W: number, H: number,
    opts: GenerateOptions): Promise<MaskRecord['segmentation'][]> {
    const ctx = this.ctx;
    const layout: BitLayout = this.outputMode === 'binary_mask' ? 'rows' : 'columns';
    const words = maskWords(H, W);
    const perChunk = Math.max(1, Math.floor(MASK_CHUNK_BYTES / (words * 4)));
    const u32Tensor = (v: Uint32Array) => ctx.upload(new Float32Array(v.buffer, v.byteOffset, v.length), [v.length]);
    const out: MaskRecord['segmentation'][] = [];
    // for drawing: smaller masks over larger ones (each record's rank by decreasing area)
    const rank = new Uint32Array(all.length);
    all.map((_, i) => i).sort((a, b) => all[b]!.s.area - all[a]!.s.area || a - b).forEach((r, k) => { rank[r] = k; });
    const labels = opts.draw ? ctx.empty([H * W]) : null;
    try {
      let c0 = 0;
      do {
        const chunk = all.slice(c0, c0 + perChunk);
        const temps: Tensor[] = [];
        try {
          const bits = await ctx.guard(`AutomaticMaskGenerator: ${chunk.length} output masks of ${W}x${H}`, () => {
            const bits = ctx.empty([Math.max(1, chunk.length * words)]);
            temps.push(bits);
            // one dispatch per crop: (plane, slot) of its survivors in this chunk
            const byCrop = new Map<CropResult, number[]>();
            chunk.forEach((a, k) => {
              const e = byCrop.get(a.crop);
              if (e) e.push(a.local, k);
              else byCrop.set(a.crop, [a.local, k]);
            });
            for (const [crop, pairs] of byCrop) {
              const index = u32Tensor(Uint32Array.from(pairs));
              temps.push(index);
              maskBits(ctx, crop.planes!, index, pairs.length / 2, bits, 0, {
                crop: crop.crop, width: W, height: H, threshold: this.maskThreshold, layout,
              });
            }
            if (labels) {
              const r = chunk.length ? u32Tensor(rank.subarray(c0, c0 + chunk.length)) : ctx.empty([1]);
              temps.push(r);
              labelMap(ctx, bits, r, chunk.length, H, W, labels, c0 === 0, layout);
            }
            return bits;
          });
          if (chunk.length === 0) break;
          const data = await bits.read();
          const u = new Uint32Array(data.buffer, data.byteOffset, data.length);
          chunk.forEach((_, k) => {
            const off = k * words;
            if (this.outputMode === 'binary_mask') {
              out.push(unpackBitStream(u, off, H * W));
            } else {
              const rle: UncompressedRLE = { size: [H, W], counts: runLengths(u, off, H * W) };
              out.push(this.outputMode === 'coco_rle' ? cocoEncodeRle(rle) : rle);
            }
          });
        } finally {
          for (const t of temps) t.release();
        }
        c0 += perChunk;
      } while (c0 < all.length);
      if (labels && opts.draw) {
        const { target, ...rest } = opts.draw;
        drawLabels(ctx, { labels, height: H, width: W, ...rest, target: typeof target === 'function' ? target() : target });
      }
    } finally {
      labels?.release();
    }
    return out;
  }
}
