import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { layerNorm, layerNorm2d } from '../kernels/layernorm.js';
import { join, type WeightSource } from './module.js';

/** torch.nn.LayerNorm over the last axis: x [..., C]. */
export class LayerNorm {
  constructor(readonly ctx: GpuContext, readonly weight: Tensor, readonly bias: Tensor, readonly eps: number) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, dim: number, eps = 1e-5): LayerNorm {
    return new LayerNorm(ctx, w.tensor(join(name, 'weight'), [dim]), w.tensor(join(name, 'bias'), [dim]), eps);
  }

  forward(x: Tensor): Tensor {
    return layerNorm(this.ctx, x, this.weight, this.bias, this.eps);
  }
}

/**
 * SAM's LayerNorm2d: normalises each pixel over its channels (eps 1e-6). Our feature maps are
 * channels-last [B, H, W, C], so this is a layer norm over the last axis.
 */
export class LayerNorm2d extends LayerNorm {
  static override load(ctx: GpuContext, w: WeightSource, name: string, dim: number, eps = 1e-6): LayerNorm2d {
    return new LayerNorm2d(ctx, w.tensor(join(name, 'weight'), [dim]), w.tensor(join(name, 'bias'), [dim]), eps);
  }

  override forward(x: Tensor): Tensor {
    return layerNorm2d(this.ctx, x, this.weight, this.bias, this.eps);
  }
}
