import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { conv2d } from '../kernels/conv2d.js';
import { join, type WeightSource } from './module.js';

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  groups?: number;
  bias?: boolean;
}

/** torch.nn.Conv2d on channels-last maps: x [B, H, W, Cin] -> [B, Ho, Wo, Cout]; weight [Cout, Cin/groups, k, k]. */
export class Conv2d {
  constructor(
    readonly ctx: GpuContext,
    readonly weight: Tensor,
    readonly bias: Tensor | undefined,
    readonly stride: number,
    readonly padding: number,
    readonly groups: number,
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, inCh: number, outCh: number, kernel: number,
    opts: Conv2dOptions = {}): Conv2d {
    const groups = opts.groups ?? 1;
    // The weight may stay f16 on the GPU (the conv2d kernels read both); the bias is f32.
    const weight = w.tensor(join(name, 'weight'), [outCh, inCh / groups, kernel, kernel], { allowF16: true });
    const bias = (opts.bias ?? true) ? w.tensor(join(name, 'bias'), [outCh]) : undefined;
    return new Conv2d(ctx, weight, bias, opts.stride ?? 1, opts.padding ?? 0, groups);
  }

  forward(x: Tensor): Tensor {
    return conv2d(this.ctx, x, this.weight, this.bias, { stride: this.stride, padding: this.padding, groups: this.groups });
  }
}
