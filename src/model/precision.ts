/**
 * precision 'f16': which parts compute with half-precision inputs. Every matmul-shaped layer
 * (Linear, the convolutions that run as a GEMM) whose weight is kept as f16 takes its activation
 * rounded to f16 too, and attention rounds q, k and v; all sums, norms and softmaxes stay f32.
 * Weights listed in F16_KEEP_F32 (by official name prefix) stay f32, and so do their layers'
 * activations: the parts where f16 inputs cost accuracy (see the measurements in the notes / README).
 */
import type { F16Settings } from '../gpu/kernel_choices.js';

export type Precision = 'f32' | 'f16';

/**
 * Name prefixes of the weights (and so the layers) kept in f32 under precision 'f16'. Measured on
 * the goldens (notes: gpu-kernels.md): with f16 everywhere, the tiny case's image encoder stays
 * within 7e-4 of the reference (relative to its largest value) but the tracked frames' low-res
 * masks drift to 2.6e-2 and the memories to 5.6e-2; the mask decoder in f32 brings those to 4e-3,
 * and it is a small part of a frame's work (a few tokens against the image's).
 */
export const F16_KEEP_F32: readonly string[] = ['sam_mask_decoder.'];

/** Whether f16 attention (q, k, v rounded) is used under precision 'f16'. */
export const F16_ATTENTION = true;

export interface F16Policy {
  /** weight name prefixes kept f32 (default F16_KEEP_F32) */
  keepF32?: readonly string[];
  /** round attention's q, k, v to f16 (default F16_ATTENTION) */
  attention?: boolean;
}

/**
 * The weight rule of a policy: f16 unless the name starts with a kept prefix ('*' in a prefix
 * stands for one name part, e.g. 'image_encoder.trunk.blocks.*.mlp').
 */
export const f16Weights = (p: F16Policy = {}) => {
  const keep = (p.keepF32 ?? F16_KEEP_F32).map((k) =>
    new RegExp(`^${k.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^.]+')}`));
  return (name: string): boolean => !keep.some((k) => k.test(name));
};

/** The kernels' f16 settings of a precision. */
export function f16Settings(precision: Precision, p: F16Policy = {}): F16Settings {
  return precision === 'f16' ? { matmul: true, attention: p.attention ?? F16_ATTENTION } : { matmul: false, attention: false };
}
