/**
 * EfficientTAM's memory encoder: turns a frame's vision features and its predicted mask into the
 * spatial memory the following frames attend to.
 *
 *   masks [1, S, S, 1] -> sigmoid (unless skipped)
 *     -> mask_downsampler: (conv 3x3 stride 2, LayerNorm2d, GELU) x log2(16), conv 1x1
 *                                                                   [1, g, g, C]
 *   pix_feat [1, g, g, C] -> pix_feat_proj (1x1) + downsampled mask  [1, g, g, C]
 *     -> fuser: CXBlocks (dwconv 7x7, LayerNorm2d, pwconv1, GELU, pwconv2, gamma, + input)
 *     -> out_proj (1x1)                                             [1, g, g, memDim] = "vision_features"
 *   sine position encoding of the g x g grid                        [1, g, g, memDim] = "vision_pos_enc"
 *
 * Reference: efficient_track_anything/modeling/memory_encoder.py. In the official video model the
 * caller (`_encode_new_memory` in efficienttam_base.py) first turns the mask logits into
 * sigmoid(logits) (or logits > 0 for frames with clicks) * 20 - 10 and passes skip_mask_sigmoid;
 * `maskForMemory` (kernels/memory_ops.ts, re-exported here) does that step.
 * All maps are channels-last here, where the reference is channels-first; names follow it.
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { linear } from '../kernels/matmul.js';
import { unary } from '../kernels/mask_ops.js';
import { layerScaleResidual } from '../kernels/memory_ops.js';
import { positionEmbeddingSine } from '../kernels/posenc.js';
import { Conv2d } from '../layers/conv.js';
import { Linear } from '../layers/linear.js';
import { join, type WeightSource } from '../layers/module.js';
import { LayerNorm2d } from '../layers/norm.js';
import type { MemoryEncoderConfig } from './config.js';

export { maskForMemory, type MaskForMemoryOptions } from '../kernels/memory_ops.js';

/** A 1x1 Conv2d run as a Linear on the channel axis: weight [out, in, 1, 1] viewed as [out, in]. */
class PointwiseConv {
  constructor(readonly ctx: GpuContext, readonly weight: Tensor, readonly bias: Tensor) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, inCh: number, outCh: number): PointwiseConv {
    const weight = w.tensor(join(name, 'weight'), [outCh, inCh, 1, 1], { allowF16: true }).reshape([outCh, inCh]);
    return new PointwiseConv(ctx, weight, w.tensor(join(name, 'bias'), [outCh]));
  }

  /** x [..., in] -> [..., out], plus `residual` [..., out] if given. */
  forward(x: Tensor, residual?: Tensor): Tensor {
    return linear(this.ctx, x, this.weight, { bias: this.bias, residual });
  }
}

/** memory_encoder.MaskDownSampler: strided convs with LayerNorm2d + GELU, then a 1x1 conv. */
class MaskDownSampler {
  constructor(readonly ctx: GpuContext, readonly convs: Conv2d[], readonly norms: LayerNorm2d[], readonly proj: PointwiseConv) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, cfg: MemoryEncoderConfig['mask_downsampler'], embedDim: number): MaskDownSampler {
    const stride = cfg.stride, totalStride = cfg.total_stride ?? 16;
    const numLayers = Math.floor(Math.log2(totalStride) / Math.log2(stride));
    if (stride ** numLayers !== totalStride) throw new Error(`MaskDownSampler: total_stride ${totalStride} is not a power of stride ${stride}`);
    const convs: Conv2d[] = [], norms: LayerNorm2d[] = [];
    let cin = 1;
    // encoder.{3i} conv, encoder.{3i+1} LayerNorm2d, encoder.{3i+2} GELU (no weights); last: the 1x1 conv
    for (let i = 0; i < numLayers; i++) {
      const cout = cin * stride * stride;
      convs.push(Conv2d.load(ctx, w, join(name, 'encoder', 3 * i), cin, cout, cfg.kernel_size, { stride, padding: cfg.padding }));
      norms.push(LayerNorm2d.load(ctx, w, join(name, 'encoder', 3 * i + 1), cout));
      cin = cout;
    }
    return new MaskDownSampler(ctx, convs, norms, PointwiseConv.load(ctx, w, join(name, 'encoder', 3 * numLayers), cin, embedDim));
  }

  /** masks [1, S, S, 1] -> [1, S/16, S/16, embedDim] + `residual` (if given). */
  forward(masks: Tensor, residual?: Tensor): Tensor {
    let h = masks;
    for (let i = 0; i < this.convs.length; i++) {
      const c = this.convs[i]!.forward(h); // [1, S/2^(i+1), S/2^(i+1), 4^(i+1)]
      if (h !== masks) h.release();
      const n = this.norms[i]!.forward(c);
      c.release();
      h = unary(this.ctx, n, 'gelu');
      n.release();
    }
    const out = this.proj.forward(h, residual);
    if (h !== masks) h.release();
    return out;
  }
}

/** memory_encoder.CXBlock (ConvNeXt block, the Linear form). */
class CXBlock {
  constructor(
    readonly ctx: GpuContext,
    readonly dwconv: Conv2d,
    readonly norm: LayerNorm2d,
    readonly pwconv1: Linear,
    readonly pwconv2: Linear,
    readonly gamma: Tensor | null,
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, cfg: MemoryEncoderConfig['fuser']['layer']): CXBlock {
    const dim = cfg.dim;
    return new CXBlock(
      ctx,
      Conv2d.load(ctx, w, join(name, 'dwconv'), dim, dim, cfg.kernel_size, { padding: cfg.padding, groups: cfg.use_dwconv ? dim : 1 }),
      LayerNorm2d.load(ctx, w, join(name, 'norm'), dim, 1e-6),
      Linear.load(ctx, w, join(name, 'pwconv1'), dim, 4 * dim),
      Linear.load(ctx, w, join(name, 'pwconv2'), 4 * dim, dim),
      cfg.layer_scale_init_value > 0 ? w.tensor(join(name, 'gamma'), [dim]) : null,
    );
  }

  /** x [1, g, g, dim] -> x + gamma * pwconv2(gelu(pwconv1(norm(dwconv(x))))) */
  forward(x: Tensor): Tensor {
    const d = this.dwconv.forward(x);
    const n = this.norm.forward(d);
    d.release();
    const h = this.pwconv1.forward(n, { activation: 'gelu' }); // [1, g, g, 4*dim]
    n.release();
    let out: Tensor;
    if (this.gamma) {
      const y = this.pwconv2.forward(h);
      out = layerScaleResidual(this.ctx, y, this.gamma, x);
      y.release();
    } else {
      out = this.pwconv2.forward(h, { residual: x });
    }
    h.release();
    return out;
  }
}

export interface MemoryEncoderOutput {
  /** [1, g, g, memDim] (`maskmem_features` before the caller's no-object embedding) */
  visionFeatures: Tensor;
  /** [1, g, g, memDim] sine position encoding; owned by the encoder and constant, do not release */
  visionPosEnc: Tensor;
}

/** memory_encoder.MemoryEncoder */
export class MemoryEncoder {
  private posEncCache = new Map<number, Tensor>();

  constructor(
    readonly ctx: GpuContext,
    readonly cfg: MemoryEncoderConfig,
    readonly maskDownsampler: MaskDownSampler,
    readonly pixFeatProj: PointwiseConv,
    readonly fuser: CXBlock[],
    readonly outProj: PointwiseConv | null,
    /** in_dim (the decoder width C) */
    readonly inDim: number,
    /** out_dim (memDim) */
    readonly outDim: number,
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name = 'memory_encoder', cfg: MemoryEncoderConfig): MemoryEncoder {
    const inDim = cfg.in_dim ?? 256;
    const outDim = cfg.out_dim;
    const embedDim = cfg.mask_downsampler.embed_dim ?? 256;
    if (embedDim !== inDim) throw new Error(`MemoryEncoder: mask_downsampler.embed_dim ${embedDim} must equal in_dim ${inDim}`);
    if (cfg.fuser.layer.dim !== inDim) throw new Error(`MemoryEncoder: fuser.layer.dim ${cfg.fuser.layer.dim} must equal in_dim ${inDim}`);
    if ((cfg.fuser as { input_projection?: boolean }).input_projection) throw new Error('MemoryEncoder: fuser.input_projection is not supported');
    const fuser: CXBlock[] = [];
    for (let i = 0; i < cfg.fuser.num_layers; i++) fuser.push(CXBlock.load(ctx, w, join(name, 'fuser.layers', i), cfg.fuser.layer));
    return new MemoryEncoder(
      ctx, cfg,
      MaskDownSampler.load(ctx, w, join(name, 'mask_downsampler'), cfg.mask_downsampler, embedDim),
      PointwiseConv.load(ctx, w, join(name, 'pix_feat_proj'), inDim, inDim),
      fuser,
      outDim !== inDim ? PointwiseConv.load(ctx, w, join(name, 'out_proj'), inDim, outDim) : null,
      inDim, outDim,
    );
  }

  /** The position encoding of a g x g memory [1, g, g, memDim], computed once per g. */
  posEnc(g: number): Tensor {
    let t = this.posEncCache.get(g);
    if (!t) {
      const pe = this.cfg.position_encoding;
      t = positionEmbeddingSine(this.ctx, g, g, pe.num_pos_feats, {
        temperature: pe.temperature ?? 10000,
        normalize: pe.normalize ?? true,
        scale: pe.scale ?? 2 * Math.PI,
      }).reshape([1, g, g, pe.num_pos_feats]);
      if (!this.ctx.isTracing) this.posEncCache.set(g, t); // a dry run (GpuContext.trace) computes nothing

    }
    return t;
  }

  /**
   * pixFeat [1, g, g, C], masks [1, S, S, 1] (S = 16 g; logits, or what sigmoid was already applied
   * to when skipMaskSigmoid) -> features and position encoding [1, g, g, memDim].
   * Records GPU work only; pixFeat and masks are not released.
   */
  forward(pixFeat: Tensor, masks: Tensor, skipMaskSigmoid: boolean): MemoryEncoderOutput {
    const [B, g, g2, C] = pixFeat.shape as [number, number, number, number];
    if (pixFeat.shape.length !== 4 || B !== 1 || g !== g2 || C !== this.inDim) {
      throw new Error(`MemoryEncoder: pixFeat must be [1, g, g, ${this.inDim}], got [${pixFeat.shape}]`);
    }
    const S = masks.shape[1]!;
    if (masks.shape.length !== 4 || masks.shape[0] !== 1 || masks.shape[2] !== S || masks.shape[3] !== 1) {
      throw new Error(`MemoryEncoder: masks must be [1, S, S, 1], got [${masks.shape}]`);
    }
    const m = skipMaskSigmoid ? masks : unary(this.ctx, masks, 'sigmoid');
    // pix_feat_proj(pix_feat) + mask_downsampler(masks): the add is fused into the downsampler's last 1x1 conv
    const pix = this.pixFeatProj.forward(pixFeat); // [1, g, g, C]
    let x = this.maskDownsampler.forward(m, pix);
    if (m !== masks) m.release();
    pix.release();
    if (x.shape[1] !== g || x.shape[2] !== g) {
      throw new Error(`MemoryEncoder: the downsampled mask is ${x.shape[1]}x${x.shape[2]}, the features ${g}x${g}`);
    }
    for (const blk of this.fuser) {
      const next = blk.forward(x);
      x.release();
      x = next;
    }
    if (this.outProj) {
      const y = this.outProj.forward(x); // [1, g, g, memDim]
      x.release();
      x = y;
    }
    return { visionFeatures: x, visionPosEnc: this.posEnc(g) };
  }
}
