import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { linear } from '../kernels/matmul.js';
import { join, type WeightSource } from './module.js';

export type Activation = 'none' | 'gelu' | 'relu';

/** torch.nn.Linear: weight [out, in], optional bias [out]; y = x·Wᵀ + b, on the last axis. */
export class Linear {
  constructor(
    readonly ctx: GpuContext,
    readonly weight: Tensor,
    readonly bias: Tensor | undefined,
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, inDim: number, outDim: number, bias = true): Linear {
    // The weight may stay f16 on the GPU (the linear kernel reads both); the bias is f32.
    return new Linear(ctx, w.tensor(join(name, 'weight'), [outDim, inDim], { allowF16: true }), bias ? w.tensor(join(name, 'bias'), [outDim]) : undefined);
  }

  get inDim(): number {
    return this.weight.shape[1]!;
  }

  get outDim(): number {
    return this.weight.shape[0]!;
  }

  /** x [..., in] -> [..., out]; `activation` and `residual` (same shape as the output) are fused. */
  forward(x: Tensor, opts: { activation?: Activation; residual?: Tensor } = {}): Tensor {
    return linear(this.ctx, x, this.weight, { bias: this.bias, activation: opts.activation, residual: opts.residual });
  }
}

/**
 * The reference's MLP (efficienttam_utils.MLP): `num_layers` Linear layers, the activation after
 * every one but the last. The last layer can take a fused residual.
 */
export class MLP {
  constructor(readonly layers: Linear[], readonly activation: Activation) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, inDim: number, hidden: number, outDim: number,
    numLayers: number, activation: Activation): MLP {
    const dims = [inDim, ...Array<number>(numLayers - 1).fill(hidden), outDim];
    const layers = [];
    for (let i = 0; i < numLayers; i++) layers.push(Linear.load(ctx, w, join(name, 'layers', i), dims[i]!, dims[i + 1]!));
    return new MLP(layers, activation);
  }

  forward(x: Tensor, opts: { residual?: Tensor } = {}): Tensor {
    let h = x;
    this.layers.forEach((layer, i) => {
      const last = i === this.layers.length - 1;
      const next = layer.forward(h, last ? { residual: opts.residual } : { activation: this.activation });
      if (h !== x) h.release();
      h = next;
    });
    return h;
  }
}
