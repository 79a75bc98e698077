/**
 * The model (EfficientTAM, or SAM 2 / SAM 2.1: the same class, built from the config): its parts
 * built from one config and one set of weights, under the official names. Read this file top-down
 * for the path of one frame:
 *
 *   pixels -> image encoder (image_encoder.ts: ViT + ViTDet neck, or Hiera + FPN neck)
 *          -> memory attention (memory_attention.ts)
 *          -> prompt encoder + mask decoder (prompt_encoder.ts, mask_decoder.ts; SAM 2 adds the
 *             image's stride-4 / stride-8 maps to the decoder's upscaling)
 *          -> memory encoder (memory_encoder.ts) -> [memory bank]
 *
 * The image predictor (image_predictor.ts) decodes vision features + no_mem_embed directly.
 */
import type { Allocations, GpuContext } from '../gpu/context.js';
import type { SafetensorsFile } from '../io/safetensors.js';
import { WeightLoader, type WeightLoaderOptions } from '../io/weights.js';
import { featureSize, validateConfig, type EfficientTAMConfig } from './config.js';
import { ImageEncoder } from './image_encoder.js';
import { checkWeightsForConfig } from '../weights/variant.js';
import { MaskDecoder, type HighResFeatures } from './mask_decoder.js';
import { PromptEncoder } from './prompt_encoder.js';
import { MemoryAttention } from './memory_attention.js';
import { MemoryEncoder } from './memory_encoder.js';
import type { Tensor } from '../gpu/tensor.js';
import { TrackingParts } from './tracker.js';
import { modelWorkload } from './workload.js';
import { f16Settings, f16Weights, type F16Policy, type Precision } from './precision.js';
import { prepareKernels, type KernelOptions, type PrepareReport } from '../tune/prepare.js';

export interface LoadOptions {
  /**
   * Tensors in the file that no built part takes. Defaults to the parts this version does not
   * build yet; pass `false` to make any unused tensor an error.
   */
  allowUnused?: WeightLoaderOptions['allowUnused'];
  /**
   * Check the file against the full manifest of the config's official model before uploading
   * anything (default true): a file of another variant fails at once with a message naming it.
   */
  checkManifest?: boolean;
  /**
   * 'f32' (default) or 'f16': half-precision inputs (weights and activations) into the matmuls,
   * convolutions and attention, with f32 sums, norms and softmaxes (see precision.ts). Needs a
   * device with shader-f16. The context's kernels follow the last model loaded on it.
   */
  precision?: Precision;
  /** which parts stay f32 under precision 'f16' (default: precision.ts's) */
  f16Policy?: F16Policy;
}

/** Parts of the official state dict that this version does not build yet. */
const NOT_YET_BUILT: string[] = [];

/** An image's features as the tracker and the image predictor read them (SAM2Base.forward_image). */
export interface ImageFeatures {
  /** vision_features [1, g, g, C] */
  visionFeatures: Tensor;
  /** vision_pos_enc [1, g, g, C]; owned by the image encoder, do not release */
  visionPosEnc: Tensor;
  /** SAM 2: [feat_s0 [1, 4g, 4g, C/8], feat_s1 [1, 2g, 2g, C/4]] for the decoder; null for EfficientTAM */
  highResFeatures: HighResFeatures | null;
}

export class EfficientTAM {
  private constructor(
    readonly ctx: GpuContext,
    readonly config: EfficientTAMConfig,
    readonly imageEncoder: ImageEncoder,
    /** sam_prompt_encoder */
    readonly promptEncoder: PromptEncoder,
    /** sam_mask_decoder */
    readonly maskDecoder: MaskDecoder,
    /** no_mem_embed [C]: added to the vision features of a frame without memories */
    readonly noMemEmbed: Tensor,
    readonly memoryEncoder: MemoryEncoder,
    readonly memoryAttention: MemoryAttention,
    /** tracking-only parameters: maskmem_tpos_enc, no_mem_pos_enc, no_obj_ptr, obj_ptr_proj, ... (tracker.ts) */
    readonly tracking: TrackingParts,
    /** the loader that uploaded the weights (it holds their value check until `checkWeights`) */
    private readonly loader: WeightLoader,
    /** every buffer the load kept (weights, tables made from them), for `release` */
    private readonly allocations: Allocations,
  ) {}

  private valuesChecked: Promise<void> | null = null;

  /** How `create` / `prepare` chose and compiled the kernels (null until then). */
  kernelReport: PrepareReport | null = null;

  /** Chooses (or tunes) and compiles this model's kernels on its context; see `create`. */
  async prepare(opts: KernelOptions = {}): Promise<PrepareReport> {
    this.kernelReport = await prepareKernels(this.ctx, () => modelWorkload(this), opts);
    return this.kernelReport;
  }

  /** Input side length S of the image encoder (1024, or 512 for the `_512x512` variants). */
  get imageSize(): number {
    return this.config.image_size;
  }

  /** Whether this is a SAM 2 model (Hiera trunk, high-resolution decoder features). */
  get isSam2(): boolean {
    return this.maskDecoder.usesHighRes;
  }

  /**
   * forward_image: pixels [1, S, S, 3] -> the image's features, with (SAM 2) the stride-4 and -8
   * levels already through the decoder's conv_s0 / conv_s1, as every decoder call on this image
   * takes them. Records GPU work only.
   */
  forwardImage(pixels: Tensor): ImageFeatures {
    const out = this.imageEncoder.forward(pixels);
    let highResFeatures: HighResFeatures | null = null;
    if (this.maskDecoder.usesHighRes) highResFeatures = this.maskDecoder.projectHighRes(out.backboneFpn);
    for (const x of out.backboneFpn) x.release();
    return { visionFeatures: out.visionFeatures, visionPosEnc: out.visionPosEnc, highResFeatures };
  }

  /**
   * Builds the model on the GPU from a weights file, checking every weight's values: `load`, then
   * `checkWeights` (one readback for all the weights). Rejects with a WeightError (names,
   * shapes, dtypes) or a WeightValueError (NaN or infinities, naming the first tensor holding
   * them); either way nothing it uploaded stays on the GPU.
   * Then gets the context ready to run it fast (`prepare`): the kernel table for this adapter
   * (stored, tuned now, given, or the defaults: `tuning`) and the model's pipelines compiled
   * ahead, asynchronously (see tune/prepare.ts); `kernelReport` says what was done.
   */
  static async create(ctx: GpuContext, weights: SafetensorsFile, config: unknown, opts: LoadOptions & KernelOptions = {}): Promise<EfficientTAM> {
    const model = EfficientTAM.load(ctx, weights, config, opts);
    try {
      await model.checkWeights();
    } catch (e) {
      model.release();
      throw e;
    }
    await model.prepare(opts);
    return model;
  }

  /**
   * Builds the model on the GPU from a weights file: every weight is checked by name, shape and
   * dtype and uploaded once; all problems are reported in one WeightError, after which nothing
   * it uploaded stays on the GPU. The weights' values are checked on the GPU as they are
   * uploaded; `await model.checkWeights()` for the result (`create` does both).
   */
  static load(ctx: GpuContext, weights: SafetensorsFile, config: unknown, opts: LoadOptions = {}): EfficientTAM {
    const cfg = validateConfig(config);
    // Before anything is uploaded: every tensor of the config's model present, with its shape
    // (names the official variant the file is when it is another one).
    if (opts.checkManifest ?? true) checkWeightsForConfig(weights, cfg);
    const precision = opts.precision ?? 'f32';
    if (precision !== 'f32' && precision !== 'f16') throw new Error(`EfficientTAM.load: precision is 'f32' or 'f16', not '${String(precision)}'`);
    if (precision === 'f16' && !ctx.hasF16) {
      throw new Error("EfficientTAM.load: precision 'f16' needs a device with the 'shader-f16' feature, and this one has none (use 'f32')");
    }
    const w = new WeightLoader(weights, ctx, {
      allowUnused: opts.allowUnused ?? NOT_YET_BUILT,
      f16: precision === 'f16' ? f16Weights(opts.f16Policy) : undefined,
    });
    const allocations = ctx.beginAllocations();
    try {
      const model = EfficientTAM.build(ctx, w, cfg, allocations);
      ctx.endAllocations(allocations);
      ctx.kernels.f16 = f16Settings(precision, opts.f16Policy);
      return model;
    } catch (e) {
      // a failed load leaves nothing on the GPU: what it uploaded or made is given back
      w.discardChecks();
      ctx.freeAllocations(allocations);
      throw e;
    }
  }

  private static build(ctx: GpuContext, w: WeightLoader, cfg: EfficientTAMConfig, allocations: Allocations): EfficientTAM {
    const imageEncoder = ImageEncoder.load(ctx, w, cfg);
    const C = cfg.image_encoder.neck.d_model; // hidden_dim
    const g = featureSize(cfg); // the stride-16 features (the ViT's patches; Hiera's third stage)
    const promptEncoder = PromptEncoder.load(ctx, w, 'sam_prompt_encoder', C, g, cfg.image_size);
    const maskDecoder = MaskDecoder.load(ctx, w, 'sam_mask_decoder', C, cfg);
    const noMemEmbed = w.tensor('no_mem_embed', [1, 1, C]).reshape([C]);
    const memoryEncoder = MemoryEncoder.load(ctx, w, 'memory_encoder', cfg.memory_encoder);
    const memoryAttention = MemoryAttention.load(ctx, w, 'memory_attention', cfg.memory_attention);
    const tracking = TrackingParts.load(ctx, w, cfg);
    w.finish();
    return new EfficientTAM(ctx, cfg, imageEncoder, promptEncoder, maskDecoder, noMemEmbed, memoryEncoder, memoryAttention, tracking, w, allocations);
  }

  /**
   * Resolves once the weights' values are known to be finite; rejects with a WeightValueError
   * naming the tensors that hold NaN or infinities. Reads the flags the load set on the GPU
   * (one readback, the first time; later calls give the same answer).
   */
  checkWeights(): Promise<void> {
    return (this.valuesChecked ??= this.loader.checkValues());
  }

  /**
   * Frees the GPU memory the model's load kept (its weights and the tables made from them); the
   * model cannot be used afterwards. Predictors made from it must be done with it first.
   */
  release(): void {
    this.loader.discardChecks();
    this.ctx.freeAllocations(this.allocations);
  }
}
