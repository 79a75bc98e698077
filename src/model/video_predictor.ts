/**
 * The video predictor (efficient_track_anything/efficienttam_video_predictor.py): prompts on some
 * frames, then tracking through the video with the memory bank, with the official semantics:
 *
 *   addPoints / addBox / addMask (frame, object)
 *       a frame the object has not been tracked on is an initial conditioning frame (decoded
 *       without memories, like SAM); on a tracked frame the clicks correct the tracked mask (fed
 *       back as a mask prompt), and the frame stays non-conditioning unless
 *       `addAllFramesToCorrectAsCond`. The output is kept aside (temporary) without memory.
 *   propagate({ start, maxFrames, reverse })
 *       first encodes the memory of every prompted frame (binarized masks), then tracks each
 *       frame in order, each object on its own, skipping the object's conditioning frames.
 *
 * Every output stays on the GPU. A prompt or a tracked frame gives a `FrameMasks`, which holds its
 * own copy of the frame's low-res logits and object scores and reads them back only when asked.
 *
 * Frames come from an array (preprocessed [1, S, S, 3] tensors, or 8-bit pixel sources, which are
 * resized like the official loader: Pillow's bicubic resize to S x S, /255, ImageNet
 * normalisation), an async iterator of those, or a callback `(frameIndex) => source`.
 */
import type { GpuContext } from '../gpu/context.js';
import { Tensor } from '../gpu/tensor.js';
import { pilResizeRGB } from '../io/pil_resize.js';
import { drawMasks, type DrawMasksOptions } from '../kernels/draw_masks.js';
import { fillHolesInMaskScores } from '../kernels/mask_postprocess.js';
import { unary } from '../kernels/mask_ops.js';
import { upsampleByteLength, upsampleInto, type UpsampleOptions } from '../kernels/mask_upsample.js';
import { checkImageSource, preprocessImage, preprocessTexture, type ImageSource, type TextureSource } from '../kernels/preprocess.js';
import { checkImageSize, ImageSizeError } from '../io/image_size.js';
import { checkBox, checkObjectId, checkPoints, PromptError } from './prompts.js';
import { NO_OBJ_SCORE } from '../kernels/track_ops.js';
import type { EfficientTAM } from './efficienttam.js';
import {
  emptyBank, releaseOutput, resizeAntialiasCpu, Tracker, type FrameFeatures, type FrameOutput, type ObjectBank,
  type PointInputs,
} from './tracker.js';

const f = Math.fround;

/**
 * A frame: a preprocessed tensor [1, S, S, 3] (or [S, S, 3]; the caller keeps ownership), 8-bit
 * pixels, or (in a browser) a live source: a VideoFrame, a video element's current frame, an
 * ImageBitmap or a canvas, copied and resized on the GPU (antialiased bilinear, not the CPU
 * bicubic of the reference's frame loader, which would cost a readback of every frame).
 */
export type FrameInput = Tensor | ImageSource | TextureSource;

export type FrameSource =
  | readonly FrameInput[]
  | AsyncIterable<FrameInput>
  | Iterable<FrameInput>
  | ((frameIndex: number) => FrameInput | Promise<FrameInput>);

export interface VideoPredictorOptions {
  frames: FrameSource;
  /** required for a callback source; otherwise the array's length or the iterator's end */
  numFrames?: number;
  /** the video's size (masks are returned at it); taken from the first pixel frame if not given */
  videoHeight?: number;
  videoWidth?: number;
  /** keep every frame that received a correction as a conditioning frame (default false) */
  addAllFramesToCorrectAsCond?: boolean;
  /** forget the non-conditioning memories around a corrected frame (default false) */
  clearNonCondMemAroundInput?: boolean;
  /**
   * non_overlap_masks: in the masks returned at the video's resolution, each pixel belongs to at
   * most one object (the one with the highest logit; the others are clamped to -10). The tracking
   * state is not affected. Default false.
   */
  nonOverlapMasks?: boolean;
  /** how many frames' image features to keep (default 2; the official predictor keeps 1) */
  featureCacheSize?: number;
  /** largest frame taken, in pixels (default MAX_IMAGE_PIXELS, 2^27) */
  maxImagePixels?: number;
  /**
   * Streaming mode, for long videos and live sources: frames are read once, in order, and
   * dropped once encoded; tracking goes forwards only, and of each object's tracked frames only
   * those the memory can still use are kept (the last `num_maskmem` frames' memories and the last
   * `max_obj_ptrs_in_encoder` object pointers; conditioning frames are kept). GPU memory then stays
   * flat however long the video. Prompts go on frames not yet dropped (the latest tracked frames
   * and those ahead). Without a frame count the video ends when the source does.
   */
  streaming?: boolean;
}

export interface MaskReadOptions {
  /** logits (Float32Array) instead of 0/1 bytes */
  logits?: boolean;
}

/** One object's prompt points; labels 1 positive, 0 negative. Coordinates in video pixels. */
export type Point = readonly [number, number] | readonly number[];
export type Box = readonly [number, number, number, number] | readonly number[];

const registry = typeof FinalizationRegistry !== 'undefined'
  ? new FinalizationRegistry<Tensor[]>((ts) => { for (const t of ts) t.release(); })
  : null;

/**
 * The masks of every object on one frame, as the predictor produced them, on the GPU. Reading
 * them back is up to the caller (`masks()`, `objectScores()`...). `release()` frees the GPU copy
 * (otherwise it is freed when the object is garbage-collected).
 */
export class FrameMasks {
  private released = false;
  private readonly token = {};

  constructor(
    readonly frameIndex: number,
    /** the objects, in the order of the masks */
    readonly objIds: readonly number[],
    readonly height: number,
    readonly width: number,
    /** [objects, S/4, S/4] low-res logits (NO_OBJ_SCORE for an object without output on the frame) */
    private readonly lowRes: Tensor,
    /** [objects] object score logits (> 0: present) */
    private readonly scores: Tensor,
    /** the predictor's non_overlap_masks: at each pixel only the object with the highest logit is kept */
    readonly nonOverlap = false,
  ) {
    registry?.register(this, [lowRes, scores], this.token);
  }

  private check(): void {
    if (this.released) throw new Error(`FrameMasks of frame ${this.frameIndex}: already released`);
  }

  private index(objId: number): number {
    const i = this.objIds.indexOf(objId);
    if (i < 0) throw new Error(`FrameMasks of frame ${this.frameIndex}: unknown object id ${objId}; objects: [${this.objIds.join(', ')}]`);
    return i;
  }

  /**
   * Masks at the video's resolution, [objects, H, W] (or one object's [H, W]): 0/1 bytes, or
   * logits; the low-res logits upsampled as the reference's _get_orig_video_res_output does (and
   * made non-overlapping there when the predictor was asked to).
   */
  async masks(o: MaskReadOptions & { objId?: number } = {}): Promise<Uint8Array | Float32Array> {
    this.check();
    const ctx = this.lowRes.ctx;
    const O = this.objIds.length, H = this.height, W = this.width;
    const planes: [number, number] = o.objId !== undefined ? [this.index(o.objId), this.index(o.objId) + 1] : [0, O];
    // made and read back in tiles (mask_upsample.ts): 3 objects at 4000x3000 are 144 MB of logits
    const u: UpsampleOptions = { H, W, mode: o.logits ? 'logits' : 'bytes', planes, nonOverlap: this.nonOverlap && O > 1 };
    const n = planes[1] - planes[0];
    const op = `FrameMasks.masks (frame ${this.frameIndex}, ${n} object${n > 1 ? 's' : ''} at ${W}x${H})`;
    const rb = await ctx.guard(op, () => {
      const rb = ctx.readback(upsampleByteLength(this.lowRes, u));
      try {
        upsampleInto(ctx, this.lowRes, u, rb);
      } catch (e) {
        rb.destroy();
        throw e;
      }
      return rb;
    }, (rb) => rb.destroy());
    const [buf] = (await rb.read()) as [ArrayBuffer];
    return o.logits ? new Float32Array(buf, 0, n * H * W) : new Uint8Array(buf, 0, n * H * W);
  }

  /**
   * Draws the masks into a texture (a canvas's current texture, say) on the GPU, one colour per
   * object, over `image` if given; nothing is read back. A pixel is drawn where the upsampled
   * logit is > 0, as `masks()` returns it (without the non-overlap constraint).
   */
  draw(target: GPUTexture, o: Omit<DrawMasksOptions, 'logits' | 'target'> = {}): void {
    this.check();
    drawMasks(this.lowRes.ctx, { ...o, logits: this.lowRes, target });
  }

  /** The low-res logits on the GPU, [objects, S/4, S/4] (owned by this FrameMasks: valid until `release`). */
  get lowResTensor(): Tensor {
    this.check();
    return this.lowRes;
  }

  /** Low-res logits [objects, S/4, S/4] as the predictor keeps them. */
  async lowResLogits(): Promise<Float32Array> {
    this.check();
    return this.lowRes.read();
  }

  /** Object score logits [objects]: > 0 where the object is judged present. */
  async objectScores(): Promise<Float32Array> {
    this.check();
    return this.scores.read();
  }

  /** Whether each object is judged present on this frame (object score > 0). */
  async present(): Promise<boolean[]> {
    return Array.from(await this.objectScores(), (s) => s > 0);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    registry?.unregister(this.token);
    this.lowRes.release();
    this.scores.release();
  }
}

/** What `readFrameState` returns: one object's stored output on one frame. */
export interface FrameState {
  isCond: boolean;
  /** low-res logits [S/4 * S/4] */
  predMasks: Float32Array;
  /** [C] */
  objPtr: Float32Array;
  objectScoreLogit: number;
  /** [g, g, memDim] channels-last, or null before the memory is encoded */
  maskmemFeatures: Float32Array | null;
}

interface ObjectState {
  id: number;
  points: Map<number, PointInputs>;
  masks: Map<number, Float32Array>;
  output: ObjectBank;
  temp: ObjectBank;
  /** frames tracked, and in which direction */
  tracked: Map<number, { reverse: boolean }>;
}

export interface PropagateOptions {
  /** first frame (default: the earliest conditioning frame) */
  start?: number;
  /** frames to track after the first (default: all) */
  maxFrames?: number;
  reverse?: boolean;
}

export class VideoPredictor {
  readonly ctx: GpuContext;
  readonly tracker: Tracker;
  addAllFramesToCorrectAsCond: boolean;
  clearNonCondMemAroundInput: boolean;
  nonOverlapMasks: boolean;

  private objects: ObjectState[] = [];
  private readonly featureCache = new Map<number, FrameFeatures>();
  private readonly featureCacheSize: number;
  private source: FrameSource;
  private iterator: AsyncIterator<FrameInput> | Iterator<FrameInput> | null = null;
  /** frames read from an array or an iterator, by index (in streaming mode, only those not yet dropped) */
  private buffered = new Map<number, FrameInput>();
  /** how many frames have been read from the iterator */
  private pulled = 0;
  private nFrames: number | undefined;
  readonly streaming: boolean;
  /** streaming mode: the earliest frame a prompt may still go on */
  private streamFloor = 0;
  private videoHW: [number, number] | null;
  private busy = false;
  /** bumped by every change of prompts or objects (a suspended propagation then stops) */
  private epoch = 0;
  private noObjPlane: Tensor | null = null;

  constructor(readonly model: EfficientTAM, o: VideoPredictorOptions) {
    this.ctx = model.ctx;
    this.tracker = Tracker.of(model);
    this.addAllFramesToCorrectAsCond = o.addAllFramesToCorrectAsCond ?? false;
    this.clearNonCondMemAroundInput = o.clearNonCondMemAroundInput ?? false;
    this.featureCacheSize = Math.max(1, o.featureCacheSize ?? 2);
    this.streaming = o.streaming ?? false;
    this.nonOverlapMasks = o.nonOverlapMasks ?? false;
    this.source = o.frames;
    if (o.numFrames !== undefined && !(Number.isInteger(o.numFrames) && o.numFrames > 0)) {
      throw new Error(`VideoPredictor: numFrames ${o.numFrames} is not a positive integer`);
    }
    if (typeof o.frames === 'function') {
      if (o.numFrames === undefined) throw new Error('VideoPredictor: a callback frame source needs numFrames');
      this.nFrames = o.numFrames;
    } else if (Array.isArray(o.frames)) {
      if (o.frames.length === 0) throw new Error('VideoPredictor: no frames');
      if (o.numFrames !== undefined && o.numFrames !== o.frames.length) {
        throw new Error(`VideoPredictor: numFrames ${o.numFrames} but ${o.frames.length} frames given`);
      }
      this.nFrames = o.frames.length;
      (o.frames as readonly FrameInput[]).forEach((x, i) => this.buffered.set(i, x));
      this.pulled = o.frames.length;
    } else {
      const it = o.frames as Partial<AsyncIterable<FrameInput> & Iterable<FrameInput>>;
      if (it[Symbol.asyncIterator]) this.iterator = it[Symbol.asyncIterator]!();
      else if (it[Symbol.iterator]) this.iterator = it[Symbol.iterator]!();
      else throw new Error('VideoPredictor: frames must be an array, an (async) iterable or a callback');
      this.nFrames = o.numFrames;
    }
    this.maxImagePixels = o.maxImagePixels;
    const h = o.videoHeight, w = o.videoWidth;
    if ((h === undefined) !== (w === undefined)) throw new Error('VideoPredictor: give both videoHeight and videoWidth, or neither');
    if (h !== undefined) this.checkSize('VideoPredictor: the video size', w!, h);
    this.videoHW = h !== undefined ? [h, w!] : null;
    if (!this.videoHW && Array.isArray(o.frames)) {
      const px = (o.frames as FrameInput[]).find((x) => !(x instanceof Tensor)) as ImageSource | TextureSource | undefined;
      if (px) {
        const [w, h] = frameSize(px);
        if (w > 0 && h > 0) {
          this.checkSize('VideoPredictor: the first frame', w, h);
          this.videoHW = [h, w];
        }
      }
    }
  }

  private readonly maxImagePixels: number | undefined;

  /** Throws an ImageSizeError for a video size the library does not take. */
  private checkSize(what: string, width: number, height: number): void {
    checkImageSize(what, width, height, { maxPixels: this.maxImagePixels, maxSide: this.ctx.device.limits.maxTextureDimension2D });
  }

  // ------------------------------------------------------------------------------------- frames

  /**
   * The number of frames. An iterator source without `numFrames` is read to its end, except in
   * streaming mode, where the count is unknown (Infinity) until the source ends.
   */
  async numFrames(): Promise<number> {
    if (this.nFrames === undefined) {
      if (this.streaming) return Infinity;
      while (await this.pull()) { /* read on */ }
      this.nFrames = this.pulled;
      if (this.nFrames === 0) throw new Error('VideoPredictor: the frame source gave no frames');
    }
    return this.nFrames;
  }

  /** The video's [height, width] (known once given or once a pixel frame has been seen). */
  get videoSize(): [number, number] | null {
    return this.videoHW ? [...this.videoHW] : null;
  }

  /** The object ids, in the order of the masks. */
  get objIds(): number[] {
    return this.objects.map((o) => o.id);
  }

  private async pull(): Promise<boolean> {
    if (!this.iterator) return false;
    const r = await this.iterator.next();
    if (r.done) {
      this.iterator = null;
      this.nFrames ??= this.pulled;
      return false;
    }
    this.buffered.set(this.pulled++, r.value);
    return true;
  }

  /** Whether frame i exists, reading the source up to it if needed. */
  private async hasFrame(i: number): Promise<boolean> {
    if (this.nFrames !== undefined) return i < this.nFrames;
    while (i >= this.pulled && (await this.pull())) { /* read on */ }
    return i < this.pulled;
  }

  private async frameInput(i: number): Promise<FrameInput> {
    if (typeof this.source === 'function') return this.source(i);
    if (!(await this.hasFrame(i))) throw new Error(`VideoPredictor: frame ${i} does not exist (the video has ${this.pulled} frames)`);
    const x = this.buffered.get(i);
    if (x === undefined) throw new Error(`VideoPredictor: frame ${i} is no longer held (streaming mode drops frames once they are encoded)`);
    return x;
  }

  private async checkFrame(frame: number): Promise<void> {
    if (!Number.isInteger(frame) || frame < 0) throw new Error(`VideoPredictor: frame index ${frame} is not a non-negative integer`);
    if (!(await this.hasFrame(frame))) {
      throw new Error(`VideoPredictor: frame ${frame} does not exist (the video has ${this.nFrames ?? this.pulled} frames)`);
    }
    if (this.streaming && (frame < this.streamFloor ||
      (!this.featureCache.has(frame) && typeof this.source !== 'function' && !this.buffered.has(frame)))) {
      throw new Error(`VideoPredictor: frame ${frame} is no longer held (streaming mode keeps only the latest frames; prompt the current frame or a later one)`);
    }
  }

  /** The frame as the image encoder's input [1, S, S, 3] (`own`: made here, to be released). */
  private pixels(i: number, x: FrameInput): { t: Tensor; own: boolean } {
    const S = this.model.imageSize;
    if (x instanceof Tensor) {
      const ok = (x.shape.length === 4 && x.shape[0] === 1 && x.shape[1] === S && x.shape[2] === S && x.shape[3] === 3) ||
        (x.shape.length === 3 && x.shape[0] === S && x.shape[1] === S && x.shape[2] === 3);
      if (!ok) throw new Error(`VideoPredictor: frame ${i} is a tensor [${x.shape}], expected a preprocessed [1, ${S}, ${S}, 3]`);
      return { t: x.reshape([1, S, S, 3]), own: false };
    }
    if (!x || typeof x !== 'object') throw new Error(`VideoPredictor: frame ${i} is ${x === null ? 'null' : typeof x}, not a tensor or an image`);
    const [w, h] = frameSize(x);
    if (!(w > 0 && h > 0)) throw new Error(`VideoPredictor: frame ${i} is neither a tensor nor an image (or it has no size yet)`);
    if (!this.videoHW) {
      this.checkSize(`VideoPredictor: frame ${i}`, w, h);
      this.videoHW = [h, w];
    }
    const [H, W] = this.videoHW;
    if (w !== W || h !== H) {
      throw new ImageSizeError(`VideoPredictor: frame ${i} is ${w}x${h}, but the video is ${W}x${H}`);
    }
    if (isPixels(x)) {
      checkImageSource(`VideoPredictor: frame ${i}`, x);
      return { t: preprocessVideoFrame(this.ctx, x, S), own: true };
    }
    const t = preprocessTexture(this.ctx, x, S, { antialias: true });
    // a VideoFrame handed over by an iterator in streaming mode is ours to close once copied
    if (this.streaming && typeof this.source !== 'function' && !Array.isArray(this.source) && isVideoFrame(x)) x.close();
    return { t, own: true };
  }

  /** _get_image_feature: the frame's features, from the cache or the image encoder. */
  private async features(i: number): Promise<FrameFeatures> {
    const hit = this.featureCache.get(i);
    if (hit) {
      this.featureCache.delete(i);
      this.featureCache.set(i, hit); // most recent last
      return hit;
    }
    const x = await this.frameInput(i);
    const size = this.videoHW ? ` (${this.videoHW[1]}x${this.videoHW[0]})` : '';
    const feats = await this.ctx.guard(`VideoPredictor: encoding frame ${i}${size}`, (): FrameFeatures => {
      const { t, own } = this.pixels(i, x);
      this.ctx.mark('start');
      try {
        const out = this.model.forwardImage(t);
        this.ctx.mark('image_encoder');
        return { visionFeats: out.visionFeatures, visionPos: out.visionPosEnc, highRes: out.highResFeatures };
      } finally {
        if (own) t.release();
      }
    }, releaseFeatures);
    this.featureCache.set(i, feats);
    if (this.streaming) this.buffered.delete(i); // the features stand for the frame from now on
    while (this.featureCache.size > this.featureCacheSize) {
      const [k, v] = this.featureCache.entries().next().value as [number, FrameFeatures];
      this.featureCache.delete(k);
      releaseFeatures(v);
    }
    return feats;
  }

  // ------------------------------------------------------------------------------------ prompts

  private objectIndex(objId: number): number {
    return this.objects.findIndex((o) => o.id === objId);
  }

  private checkObjId(objId: number): void {
    checkObjectId('VideoPredictor', objId);
  }

  private object(objId: number): ObjectState {
    let o = this.objects.find((x) => x.id === objId);
    if (!o) {
      o = { id: objId, points: new Map(), masks: new Map(), output: emptyBank(), temp: emptyBank(), tracked: new Map() };
      this.objects.push(o);
    }
    return o;
  }

  private requireVideoSize(): [number, number] {
    if (!this.videoHW) throw new Error('VideoPredictor: the video size is unknown (give videoHeight/videoWidth)');
    return this.videoHW;
  }

  private async exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy) throw new Error(`VideoPredictor.${what}: another operation (e.g. a propagation) is in progress`);
    this.busy = true;
    try {
      return await fn();
    } finally {
      this.busy = false;
    }
  }

  /**
   * add_new_points_or_box: clicks (video pixels; labels 1 / 0) on a frame for an object, with an
   * optional box first. Returns every object's masks on that frame.
   */
  addPoints(frame: number, objId: number, points: readonly Point[], labels: readonly number[],
    o: { clearOldPoints?: boolean; box?: Box } = {}): Promise<FrameMasks> {
    return this.exclusive('addPoints', () => this.addPrompt(frame, objId, points, labels, o.box, o.clearOldPoints ?? true));
  }

  /** A box (x0, y0, x1, y1 in video pixels), optionally with clicks; replaces the object's earlier prompts on the frame. */
  addBox(frame: number, objId: number, box: Box, o: { points?: readonly Point[]; labels?: readonly number[] } = {}): Promise<FrameMasks> {
    return this.exclusive('addBox', () => this.addPrompt(frame, objId, o.points ?? [], o.labels ?? [], box, true));
  }

  private async addPrompt(frame: number, objId: number, points: readonly Point[], labels: readonly number[],
    box: Box | undefined, clearOldPoints: boolean): Promise<FrameMasks> {
    // everything checked before the state changes
    this.checkObjId(objId);
    await this.checkFrame(frame);
    if (!Array.isArray(points) || !Array.isArray(labels)) throw new PromptError('VideoPredictor: points and labels must be arrays');
    if (points.length !== labels.length) throw new PromptError(`VideoPredictor: ${points.length} points but ${labels.length} labels`);
    if (points.length === 0 && !box) throw new PromptError('VideoPredictor: give at least one point or a box');
    if (box && !clearOldPoints) throw new PromptError('VideoPredictor: a box must come first: it cannot be added while keeping earlier points');
    await this.features(frame); // loads (and checks) the frame
    const [H, W] = this.requireVideoSize();
    const S = this.model.imageSize;
    const coords: number[] = [], labs: number[] = [];
    if (box) {
      coords.push(...checkBox('VideoPredictor', box, 0, W, H));
      labs.push(2, 3);
    }
    const checked = checkPoints('VideoPredictor', points, labels, W, H);
    coords.push(...checked.xy);
    labs.push(...checked.labels);
    // video pixels -> the S x S input frame (x / W * S, in f32)
    const xy = new Float32Array(coords.length);
    for (let i = 0; i < coords.length; i += 2) {
      xy[i] = f(f(f(coords[i]!) / W) * S);
      xy[i + 1] = f(f(f(coords[i + 1]!) / H) * S);
    }

    const existing = this.objects.find((x) => x.id === objId);
    const old = clearOldPoints ? undefined : existing?.points.get(frame);
    const pts: PointInputs = old
      ? { coords: concatF32(old.coords, xy), labels: Int32Array.from([...old.labels, ...labs]) }
      : { coords: xy, labels: Int32Array.from(labs) };
    return this.runPrompt(objId, frame, pts, null);
  }

  /**
   * add_new_mask: a binary mask [H, W] (any size; resized to S x S, antialiased, >= 0.5) for an
   * object on a frame. Returns every object's masks on that frame.
   */
  addMask(frame: number, objId: number, mask: { data: ArrayLike<number>; height: number; width: number }): Promise<FrameMasks> {
    return this.exclusive('addMask', async () => {
      this.checkObjId(objId);
      await this.checkFrame(frame);
      const { data, height: h, width: w } = mask;
      if (!(Number.isInteger(h) && h > 0 && Number.isInteger(w) && w > 0) || data.length !== h * w) {
        throw new Error(`VideoPredictor: the mask has ${data.length} values for ${w}x${h}`);
      }
      await this.features(frame);
      this.requireVideoSize();
      const S = this.model.imageSize;
      let m = new Float32Array(h * w);
      for (let i = 0; i < m.length; i++) m[i] = data[i] ? 1 : 0;
      if (h !== S || w !== S) {
        const r = resizeAntialiasCpu(m, h, w, S, S);
        m = r.map((v) => (v >= 0.5 ? 1 : 0));
      }
      return this.runPrompt(objId, frame, null, m);
    });
  }

  /**
   * Decodes the object's new prompt on the frame (points or a mask) and files the output as
   * temporary. The prompt and the object (if new) are kept only once the GPU has taken the work:
   * after a failure the predictor is as it was.
   */
  private async runPrompt(objId: number, frame: number, points: PointInputs | null, mask: Float32Array | null): Promise<FrameMasks> {
    const features = await this.features(frame);
    const numFrames = await this.numFrames();
    const isNew = !this.objects.some((x) => x.id === objId);
    const obj = this.object(objId);
    const isInitCondFrame = !obj.tracked.has(frame);
    const reverse = isInitCondFrame ? false : obj.tracked.get(frame)!.reverse;
    const isCond = isInitCondFrame || this.addAllFramesToCorrectAsCond;
    const key = isCond ? 'cond' : 'nonCond';
    const [H, W] = this.requireVideoSize();
    const what = points ? `${points.labels.length} point${points.labels.length > 1 ? 's' : ''}` : 'a mask';
    let result: { out: FrameOutput; masks: FrameMasks };
    try {
      result = await this.ctx.guard(`VideoPredictor: ${what} on frame ${frame} for object ${objId} (${W}x${H})`, () => {
        let prevLogits: Tensor | null = null;
        if (points) {
          // the latest output of this object on this frame goes in with the new clicks
          const prev = obj.temp[key].get(frame) ?? obj.output.cond.get(frame) ?? obj.output.nonCond.get(frame);
          if (prev) prevLogits = clampLogits(this.ctx, prev.predMasks);
        }
        try {
          const out = this.tracker.trackStep({
            frameIdx: frame, isInitCondFrame, features, points, mask, bank: obj.output,
            numFrames, reverse, runMemEncoder: false, prevSamMaskLogits: prevLogits,
          });
          this.fillHoles(out);
          return { out, masks: this.consolidate(frame, isCond, obj, out) };
        } finally {
          prevLogits?.release();
        }
      }, (r) => { releaseOutput(r.out); r.masks.release(); });
    } catch (e) {
      if (isNew) this.objects.splice(this.objects.indexOf(obj), 1);
      throw e;
    }
    this.epoch++;
    if (points) {
      obj.points.set(frame, points);
      obj.masks.delete(frame);
    } else {
      obj.masks.set(frame, mask!);
      obj.points.delete(frame);
    }
    const old = obj.temp[key].get(frame);
    obj.temp[key].set(frame, result.out);
    if (old) releaseOutput(old);
    return result.masks;
  }

  /**
   * The model's `fill_hole_area` (_run_single_frame_inference): holes of the stored low-res mask up
   * to that area become foreground. The memory of a tracked frame was encoded before, from the
   * unfilled mask, as in the reference.
   */
  private fillHoles(out: FrameOutput): void {
    const area = this.model.config.fill_hole_area ?? 0;
    if (area <= 0) return;
    const filled = fillHolesInMaskScores(this.ctx, out.predMasks, area);
    out.predMasks.release();
    out.predMasks = filled;
  }

  /**
   * _consolidate_temp_output_across_obj: every object's latest output on the frame, as a
   * FrameMasks (with `out` as the latest of `obj`).
   */
  private consolidate(frame: number, isCond: boolean, obj: ObjectState, out: FrameOutput): FrameMasks {
    const key = isCond ? 'cond' : 'nonCond';
    const outs = this.objects.map((o) => (o === obj ? out : o.temp[key].get(frame) ?? o.output.cond.get(frame) ?? o.output.nonCond.get(frame)));
    return this.frameMasks(frame, outs);
  }

  private frameMasks(frame: number, outs: (FrameOutput | undefined)[]): FrameMasks {
    const ctx = this.ctx;
    const m = this.model.promptEncoder.maskInputSize;
    const O = outs.length;
    const low = ctx.empty([O, m, m]);
    const scores = ctx.empty([O]);
    outs.forEach((o, i) => {
      if (o) {
        ctx.copy(o.predMasks, low, m * m * 4, 0, i * m * m * 4);
        ctx.copy(o.objectScoreLogits, scores, 4, 0, i * 4);
      } else {
        this.noObjPlane ??= ctx.upload(new Float32Array(m * m).fill(NO_OBJ_SCORE), [m * m]);
        ctx.copy(this.noObjPlane, low, m * m * 4, 0, i * m * m * 4);
        ctx.copy(this.noObjPlane, scores, 4, 0, i * 4);
      }
    });
    const [H, W] = this.requireVideoSize();
    return new FrameMasks(frame, this.objIds, H, W, low, scores, this.nonOverlapMasks);
  }

  // -------------------------------------------------------------------------------- propagation

  /** propagate_in_video_preflight: encode the prompted frames' memories and file them. */
  private async preflight(): Promise<void> {
    if (this.objects.length === 0) throw new Error('VideoPredictor.propagate: no object has a prompt; add points, a box or a mask first');
    for (const o of this.objects) {
      if (o.output.cond.size === 0 && o.temp.cond.size === 0) {
        throw new Error(`VideoPredictor.propagate: object ${o.id} has no prompt on a frame it was not tracked on; add one first`);
      }
    }
    for (const o of this.objects) {
      for (const key of ['nonCond', 'cond'] as const) {
        for (const [frame, out] of o.temp[key]) {
          if (!out.maskmemFeatures) {
            const feats = await this.features(frame);
            out.maskmemFeatures = await this.ctx.guard(`VideoPredictor: the memory of object ${o.id} on frame ${frame}`,
              () => this.tracker.encodeNewMemory(feats.visionFeats, out.predMasks, out.objectScoreLogits, true), (t) => t.release());
          }
          const old = o.output[key].get(frame);
          o.output[key].set(frame, out);
          if (old && old !== out) releaseOutput(old);
          if (this.clearNonCondMemAroundInput) this.clearNonCondAround(o, frame);
        }
        o.temp[key].clear();
      }
      for (const frame of o.output.cond.keys()) {
        const old = o.output.nonCond.get(frame);
        if (old) {
          o.output.nonCond.delete(frame);
          releaseOutput(old);
        }
      }
    }
  }

  private clearNonCondAround(o: ObjectState, frame: number): void {
    const r = this.tracker.s.memoryTemporalStrideForEval * this.tracker.s.numMaskmem;
    for (let t = frame - r; t <= frame + r; t++) {
      const old = o.output.nonCond.get(t);
      if (old) {
        o.output.nonCond.delete(t);
        releaseOutput(old);
      }
    }
  }

  /**
   * propagate_in_video: tracks every object frame by frame, yielding each frame's masks (on the
   * GPU; read them from the FrameMasks). Frames that are an object's conditioning frames give its
   * prompt's output.
   */
  async *propagate(o: PropagateOptions = {}): AsyncGenerator<FrameMasks> {
    let epoch = 0, n = 0, start = 0, max = 0;
    const reverse = o.reverse ?? false;
    await this.exclusive('propagate', async () => {
      if (reverse && this.streaming) throw new Error('VideoPredictor.propagate: streaming mode tracks forwards only');
      n = await this.numFrames(); // Infinity for a stream of unknown length
      if (o.start !== undefined) await this.checkFrame(o.start);
      if (o.maxFrames !== undefined && !(Number.isInteger(o.maxFrames) && o.maxFrames >= 0)) {
        throw new Error(`VideoPredictor.propagate: maxFrames ${o.maxFrames} is not a non-negative integer`);
      }
      await this.preflight();
      start = o.start ?? Math.min(...this.objects.flatMap((x) => [...x.output.cond.keys()]));
      max = o.maxFrames ?? Infinity;
      epoch = ++this.epoch;
    });
    // frames start, start +- 1, ... (max + 1 of them at most); in reverse, none from frame 0 (as the reference)
    if (reverse && start === 0) return;
    for (let k = 0; k <= max; k++) {
      const t = reverse ? start - k : start + k;
      if (t < 0) break;
      // one frame at a time; a prompt or object change between frames ends this propagation
      const fm = await this.exclusive('propagate', async () => {
        if (this.epoch !== epoch) {
          throw new Error('VideoPredictor.propagate: the prompts or objects changed during this propagation; start a new one');
        }
        if (!(await this.hasFrame(t))) return null; // the video (or the stream) ended
        const tracking = this.objects.filter((obj) => !obj.output.cond.has(t));
        const features = tracking.length > 0 ? await this.features(t) : null;
        const [H, W] = this.requireVideoSize();
        // one error scope for the frame: every object's step, then the frame's masks; the outputs
        // are filed once the GPU has taken the work
        const { outs, masks } = await this.ctx.guard(`VideoPredictor.propagate: frame ${t}, ${tracking.length} of ${this.objects.length} objects tracked (${W}x${H})`, () => {
          const made = new Map<ObjectState, FrameOutput>();
          try {
            for (const obj of tracking) {
              const out = this.tracker.trackStep({
                frameIdx: t, isInitCondFrame: false, features: features!, points: null, mask: null,
                bank: obj.output, numFrames: this.nFrames ?? n, reverse, runMemEncoder: true,
              });
              made.set(obj, out);
              this.fillHoles(out);
            }
            const all = this.objects.map((obj) => made.get(obj) ?? obj.output.cond.get(t)!);
            return { outs: made, masks: this.frameMasks(t, all) };
          } catch (e) {
            for (const out of made.values()) releaseOutput(out);
            throw e;
          }
        }, (r) => { for (const out of r.outs.values()) releaseOutput(out); r.masks.release(); });
        for (const obj of this.objects) {
          const out = outs.get(obj);
          if (out) {
            const old = obj.output.nonCond.get(t);
            obj.output.nonCond.set(t, out);
            if (old) releaseOutput(old);
          } else if (this.clearNonCondMemAroundInput) {
            this.clearNonCondAround(obj, t);
          }
          obj.tracked.set(t, { reverse });
        }
        if (this.streaming) this.forgetBefore(t + 1);
        return masks;
      });
      if (!fm) break;
      yield fm;
    }
  }

  /**
   * Streaming mode: drops what neither frame `next` nor a correction on the frame before it can
   * use any more. Tracking frame f reads the spatial memories of at most `num_maskmem - 1` frames
   * before it (every `memory_temporal_stride_for_eval`-th, so within stride * (num_maskmem - 1) + 1
   * frames) and the object pointers of the `max_obj_ptrs_in_encoder - 1` frames before it. Older
   * non-conditioning outputs are released, and their memories (the large part) as soon as they
   * leave the memory window. Conditioning frames are all kept.
   */
  private forgetBefore(next: number): void {
    const s = this.tracker.s;
    const latest = next - 1; // still correctable
    const memWindow = s.memoryTemporalStrideForEval * (s.numMaskmem - 1) + 1;
    const ptrWindow = s.useObjPtrsInEncoder ? s.maxObjPtrsInEncoder - 1 : 0;
    const keepFrom = latest - Math.max(memWindow, ptrWindow);
    const memFrom = latest - memWindow;
    for (const obj of this.objects) {
      for (const [t, out] of obj.output.nonCond) {
        if (t < keepFrom) {
          obj.output.nonCond.delete(t);
          releaseOutput(out);
        } else if (t < memFrom && out.maskmemFeatures) {
          out.maskmemFeatures.release();
          out.maskmemFeatures = null;
        }
      }
      for (const t of obj.tracked.keys()) if (t < keepFrom && !obj.output.cond.has(t)) obj.tracked.delete(t);
    }
    this.streamFloor = Math.max(this.streamFloor, latest);
  }

  // ------------------------------------------------------------------------------ objects, state

  /** Removes an object and everything about it (an unknown id is an error). */
  removeObject(objId: number): void {
    if (this.busy) throw new Error('VideoPredictor.removeObject: another operation is in progress');
    const i = this.objectIndex(objId);
    if (i < 0) throw new Error(`VideoPredictor.removeObject: unknown object id ${objId}; objects: [${this.objIds.join(', ')}]`);
    if (this.objects.length === 1) {
      this.reset();
      return;
    }
    this.epoch++;
    const [o] = this.objects.splice(i, 1);
    releaseObject(o!);
  }

  /** Forgets every object, prompt and tracking result (reset_state); the frames stay. */
  reset(): void {
    if (this.busy) throw new Error('VideoPredictor.reset: another operation is in progress');
    this.epoch++;
    for (const o of this.objects) releaseObject(o);
    this.objects = [];
  }

  /** Frees the cached features as well (the predictor can still be used). */
  dispose(): void {
    this.reset();
    for (const v of this.featureCache.values()) releaseFeatures(v);
    this.featureCache.clear();
    this.noObjPlane?.release();
    this.noObjPlane = null;
    this.tracker.dispose();
  }

  /** The object's stored output on a frame (conditioning first), or null; reads it back (for inspection and tests). */
  async readFrameState(frame: number, objId: number): Promise<FrameState | null> {
    const i = this.objectIndex(objId);
    if (i < 0) throw new Error(`VideoPredictor: unknown object id ${objId}; objects: [${this.objIds.join(', ')}]`);
    const o = this.objects[i]!;
    const cond = o.output.cond.get(frame) ?? o.temp.cond.get(frame);
    const out = cond ?? o.output.nonCond.get(frame) ?? o.temp.nonCond.get(frame);
    if (!out) return null;
    return {
      isCond: !!cond,
      predMasks: await out.predMasks.read(),
      objPtr: await out.objPtr.read(),
      objectScoreLogit: (await out.objectScoreLogits.read())[0]!,
      maskmemFeatures: out.maskmemFeatures ? await out.maskmemFeatures.read() : null,
    };
  }
}

const isPixels = (x: FrameInput): x is ImageSource => !(x instanceof Tensor) && 'data' in x && !!(x as ImageSource).data;
const isVideoFrame = (x: FrameInput): x is VideoFrame => typeof VideoFrame !== 'undefined' && x instanceof VideoFrame;

/** [width, height] of a pixel or live frame. */
function frameSize(x: ImageSource | TextureSource): [number, number] {
  const d = x as { videoWidth?: number; videoHeight?: number; displayWidth?: number; displayHeight?: number; width?: number; height?: number };
  if (isPixels(x)) return [x.width, x.height];
  return [d.videoWidth ?? d.displayWidth ?? d.width ?? 0, d.videoHeight ?? d.displayHeight ?? d.height ?? 0];
}

/** Frees a frame's features (vision_pos_enc belongs to the image encoder). */
function releaseFeatures(f: FrameFeatures): void {
  f.visionFeats.release();
  for (const t of f.highRes ?? []) t.release();
}

function releaseObject(o: ObjectState): void {
  for (const bank of [o.output, o.temp]) {
    for (const m of [bank.cond, bank.nonCond]) {
      for (const out of m.values()) releaseOutput(out);
      m.clear();
    }
  }
  o.points.clear();
  o.masks.clear();
  o.tracked.clear();
}

function concatF32(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** torch.clamp(prev_sam_mask_logits, -32, 32) */
const clampLogits = (ctx: GpuContext, x: Tensor): Tensor => unary(ctx, x, { clamp: [-32, 32] });

/**
 * load_video_frames' transform of 8-bit pixels: Pillow's `resize((S, S))` (bicubic, in 8-bit
 * fixed point, on the CPU), /255, ImageNet normalisation -> [1, S, S, 3].
 */
export function preprocessVideoFrame(ctx: GpuContext, src: ImageSource, size: number): Tensor {
  const resized = pilResizeRGB(src, size, size); // [S, S, 3] bytes
  // an S -> S antialiased resize is the identity: this only normalises
  return preprocessImage(ctx, { data: resized, width: size, height: size, channels: 3 }, size);
}
