/** Every kernel family the tuner knows (an operation with candidate kernels; see kernels/choice.ts). */
import type { KernelFamily } from '../kernels/choice.js';
import { ATTENTION } from '../kernels/attention.js';
import { CONV2D } from '../kernels/conv2d.js';
import { LAYERNORM } from '../kernels/layernorm.js';
import { MATMUL } from '../kernels/matmul.js';
import { SOFTMAX } from '../kernels/softmax.js';

export const FAMILIES: readonly KernelFamily<never>[] = [MATMUL, CONV2D, ATTENTION, SOFTMAX, LAYERNORM] as unknown as KernelFamily<never>[];
