/**
 * efficienttam-webgpu: EfficientTAM (Efficient Track Anything) on WebGPU.
 *
 *   const ctx = await GpuContext.create();
 *   const weights = await loadWeights(urlOrFileOrPath, { onProgress });
 *   const model = EfficientTAM.load(ctx, weights, detectVariant(weights).config);
 *   const predictor = new ImagePredictor(model);
 *   predictor.setImage({ data, width, height, channels: 4 });
 *   const { masks, ious } = await predictor.predict({ points: [[x, y]], labels: [1] });
 */
export { GpuContext, DeviceLostError, type GpuStats } from './gpu/context.js';
export { requestDevice, getGPU, WebGPUUnavailableError, type DeviceOptions } from './gpu/device.js';
export { Tensor, type DType } from './gpu/tensor.js';
export { parseSafetensors, SafetensorsError, type SafetensorsFile } from './io/safetensors.js';
export { WeightError } from './io/weights.js';
export { loadWeights, type LoadWeightsOptions, type WeightsSource } from './weights/load.js';
export { detectVariant, VariantError } from './weights/variant.js';
export { manifest, buildManifest } from './weights/manifest.js';
export { convertCheckpoint, convertFile, CheckpointError } from './convert/convert.js';
export { preset, VARIANTS, type Variant, type EfficientTAMConfig } from './model/config.js';
export { EfficientTAM, type LoadOptions } from './model/efficienttam.js';
export { ImageEncoder, type ImageEncoderOutput } from './model/image_encoder.js';
export { ImagePredictor, type PredictOptions, type PredictResult } from './model/image_predictor.js';
export { preprocessImage, preprocessTexture, type PreprocessOptions } from './kernels/preprocess.js';
