/**
 * The WGSL conv2d() would compile for a geometry, without a GPU: conv2d called on a stand-in
 * context that records the pipeline's code instead of compiling it (for compile-time probes).
 */
import type { GpuContext } from '../../src/gpu/context.js';
import type { Tensor } from '../../src/gpu/tensor.js';
import { conv2d } from '../../src/kernels/conv2d.js';

export interface ConvProbe {
  label?: string;
  B: number; H: number; W: number; Cin: number; Cout: number; k: number;
  stride?: number; pad?: number; groups?: number; bias?: boolean;
}

const fake = (shape: number[]): Tensor => ({ shape, dtype: 'f32', size: shape.reduce((a, b) => a * b, 1) }) as unknown as Tensor;

export function convWGSL(c: ConvProbe): string {
  let wgsl = '';
  const ctx = {
    hasF16: false,
    empty: (shape: number[]) => fake(shape),
    pipeline: (_label: string, code: string) => { wgsl = code; return {}; },
    run: () => undefined,
  } as unknown as GpuContext;
  const groups = c.groups ?? 1;
  conv2d(ctx, fake([c.B, c.H, c.W, c.Cin]), fake([c.Cout, c.Cin / groups, c.k, c.k]), c.bias === false ? undefined : fake([c.Cout]),
    { stride: c.stride ?? 1, padding: c.pad ?? 0, groups });
  return wgsl;
}
