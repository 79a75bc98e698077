/**
 * The EfficientTAM model: its parts built from one config and one set of weights, under the
 * official names. Read this file top-down for the path of one frame:
 *
 *   pixels -> image encoder (image_encoder.ts) -> [memory attention] -> [mask decoder]
 *          -> [memory encoder] -> memory bank
 *
 * (bracketed parts are being built; see the issues).
 */
import type { GpuContext } from '../gpu/context.js';
import type { SafetensorsFile } from '../io/safetensors.js';
import { WeightLoader, type WeightLoaderOptions } from '../io/weights.js';
import { validateConfig, type EfficientTAMConfig } from './config.js';
import { ImageEncoder } from './image_encoder.js';

export interface LoadOptions {
  /**
   * Tensors in the file that no built part takes. Defaults to the parts this version does not
   * build yet; pass `false` to make any unused tensor an error.
   */
  allowUnused?: WeightLoaderOptions['allowUnused'];
}

/** Parts of the official state dict that this version does not build yet. */
const NOT_YET_BUILT = [
  'sam_prompt_encoder.', 'sam_mask_decoder.', 'memory_attention.', 'memory_encoder.', 'obj_ptr_proj.',
  'obj_ptr_tpos_proj.', 'mask_downsample.', 'maskmem_tpos_enc', 'no_mem_embed', 'no_mem_pos_enc', 'no_obj_ptr',
  'no_obj_embed_spatial',
];

export class EfficientTAM {
  private constructor(
    readonly ctx: GpuContext,
    readonly config: EfficientTAMConfig,
    readonly imageEncoder: ImageEncoder,
  ) {}

  /** Input side length S of the image encoder (1024, or 512 for the `_512x512` variants). */
  get imageSize(): number {
    return this.config.image_size;
  }

  /**
   * Builds the model on the GPU from a weights file: every weight is checked by name and shape
   * and uploaded once; all problems are reported in one WeightError.
   */
  static load(ctx: GpuContext, weights: SafetensorsFile, config: unknown, opts: LoadOptions = {}): EfficientTAM {
    const cfg = validateConfig(config);
    const w = new WeightLoader(weights, ctx, { allowUnused: opts.allowUnused ?? NOT_YET_BUILT });
    const imageEncoder = ImageEncoder.load(ctx, w, cfg);
    w.finish();
    return new EfficientTAM(ctx, cfg, imageEncoder);
  }
}
