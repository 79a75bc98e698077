/** Every kernel family the tuner knows (an operation with candidate kernels; see kernels/choice.ts). */
import type { KernelFamily } from '../kernels/choice.js';
import { CONV2D } from '../kernels/conv2d.js';
import { MATMUL } from '../kernels/matmul.js';

export const FAMILIES: readonly KernelFamily<never>[] = [MATMUL, CONV2D] as unknown as KernelFamily<never>[];
