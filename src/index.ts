/// <reference types="@webgpu/types" preserve="true" />
/**
 * efficienttam-webgpu: EfficientTAM (Efficient Track Anything) and SAM 2 / SAM 2.1 on WebGPU.
 *
 *   const ctx = await GpuContext.create();
 *   const weights = await loadWeights(urlOrFileOrPath, { onProgress });
 *   // kernels tuned for this GPU (stored, or timed within seconds), pipelines compiled ahead
 *   const model = await EfficientTAM.create(ctx, weights, detectVariant(weights).config);
 *   const predictor = new ImagePredictor(model);
 *   predictor.setImage({ data, width, height, channels: 4 });   // or await decodeImageFile(path) in Node
 *   const { masks, ious } = await predictor.predict({ points: [[x, y]], labels: [1] });
 *   const records = await new AutomaticMaskGenerator(model).generate(image);   // segment everything
 */
export { GpuContext, DeviceLostError, GpuError, type GpuErrorKind, type GpuStats } from './gpu/context.js';
export { ImageSizeError, MAX_IMAGE_PIXELS, checkImageSize, type ImageSizeLimits } from './io/image_size.js';
export { PromptError } from './model/prompts.js';
export { requestDevice, getGPU, WebGPUUnavailableError, type DeviceOptions } from './gpu/device.js';
export { Tensor, type DType } from './gpu/tensor.js';
export { parseSafetensors, SafetensorsError, type SafetensorsFile } from './io/safetensors.js';
export { WeightError, WeightValueError } from './io/weights.js';
export { decodeImageFile, type DecodedImage, type DecodeOptions } from './io/image.js';
export { MissingPackageError } from './io/packages.js';
export { loadWeights, DEFAULT_MAX_WEIGHTS_BYTES, type LoadWeightsOptions, type WeightsSource } from './weights/load.js';
export { detectVariant, VariantError, type DetectedVariant, type DetectOptions } from './weights/variant.js';
export { manifest, buildManifest } from './weights/manifest.js';
export { convertCheckpoint, convertCheckpointAsync, convertFile, CheckpointError } from './convert/convert.js';
export { PickleError } from './convert/pickle.js';
export { ZipError } from './convert/zip.js';
export {
  preset, withImageSize, VARIANTS, SAM2_VARIANTS, ALL_VARIANTS, isSam2Variant,
  type Variant, type EfficientTAMVariant, type Sam2Variant, type EfficientTAMConfig, type HieraConfig, type FpnNeckConfig,
} from './model/config.js';
export { EfficientTAM, type LoadOptions, type ImageFeatures } from './model/efficienttam.js';
export { type Precision, type F16Policy, F16_KEEP_F32 } from './model/precision.js';
export { type KernelOptions, type PrepareReport, type PrepareProgress, type Tuning } from './tune/prepare.js';
export { exportTable, importTable, type TuningTable, type TableEntry } from './tune/table.js';
export { FileTableStore, IndexedDbTableStore, MemoryTableStore, type TableStore } from './tune/store.js';
export { formatTable as formatKernelTable } from './tune/tuner.js';
export { adapterName, type AdapterIdentity } from './gpu/adapter.js';
export { ImageEncoder, type ImageEncoderOutput } from './model/image_encoder.js';
export type { HighResFeatures } from './model/mask_decoder.js';
export { ImagePredictor, type ImagePredictorOptions, type PredictOptions, type PredictResult } from './model/image_predictor.js';
export { preprocessImage, preprocessTexture, type PreprocessOptions } from './kernels/preprocess.js';
export {
  VideoPredictor, FrameMasks, preprocessVideoFrame, type VideoPredictorOptions, type FrameSource, type FrameInput,
  type PropagateOptions, type MaskReadOptions, type FrameState,
} from './model/video_predictor.js';
export { type ImageSource } from './kernels/preprocess.js';
export { validateConfig } from './model/config.js';
export { connectedComponents, type ConnectedComponents, type ConnectedComponentsOptions, type Connectivity } from './kernels/connected_components.js';
export { postprocessLowRes, fillHoles, removeSprinkles, fillHolesInMaskScores, type PostprocessOptions } from './kernels/mask_postprocess.js';
export { drawMasks, drawLabels, labelColor, MAX_DRAW_COLORS, type DrawMasksOptions, type DrawLabelsOptions } from './kernels/draw_masks.js';
export {
  AutomaticMaskGenerator, MaskGeneratorError, type AutomaticMaskGeneratorOptions, type MaskRecord, type GenerateOptions, type OutputMode,
} from './model/automatic_mask_generator.js';
export {
  buildPointGrid, buildAllLayerPointGrids, generateCropBoxes, rleToMask, areaFromRle, cocoEncodeRle, type UncompressedRLE, type CocoRLE,
} from './model/amg.js';
export { rleCounts, rleToString, rleFromString, rleDecode } from './io/rle.js';
export { videoFrames, streamFrames, type LiveOptions } from './model/live.js';
