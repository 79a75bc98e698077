/**
 * EfficientTAM's image encoder: a plain (non-hierarchical) ViT trunk and the ViTDet neck.
 *
 *   pixels [1, S, S, 3] (normalised, channels-last)
 *     -> ViT.patch_embed (16x16 conv, stride 16)           [1, g, g, E]   g = S / 16
 *     + pos_embed (14x14 pretraining table, bicubic to g)  [1, g, g, E]
 *     -> blocks 0..depth-1 (windowed or global attention)  [1, g, g, E]   = "trunk"
 *     -> neck: conv_1x1, LayerNorm2d, conv_3x3, LayerNorm2d [1, g, g, C]   = "vision_features"
 *   and the neck's sine position encoding                  [1, g, g, C]   = "vision_pos_enc"
 *
 * Reference: efficient_track_anything/modeling/backbones/{vitdet,image_encoder,utils}.py.
 * All maps are channels-last here, where the reference is channels-first; names follow it.
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { attentionPacked } from '../kernels/attention.js';
import { add } from '../kernels/elementwise.js';
import { positionEmbeddingSine } from '../kernels/posenc.js';
import { resizeBicubic } from '../kernels/resize.js';
import { windowPartition, windowUnpartition } from '../kernels/window.js';
import { Conv2d } from '../layers/conv.js';
import { Linear, MLP } from '../layers/linear.js';
import { join, sequential, type WeightSource } from '../layers/module.js';
import { LayerNorm, LayerNorm2d } from '../layers/norm.js';
import type { EfficientTAMConfig, ViTConfig, ViTDetNeckConfig } from './config.js';

/** vitdet.Attention: multi-head self-attention over a sequence, qkv in one Linear. */
class Attention {
  constructor(readonly qkv: Linear, readonly proj: Linear, readonly numHeads: number) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, dim: number, numHeads: number, qkvBias: boolean): Attention {
    return new Attention(
      Linear.load(ctx, w, join(name, 'qkv'), dim, 3 * dim, qkvBias),
      Linear.load(ctx, w, join(name, 'proj'), dim, dim),
      numHeads,
    );
  }

  /** x [B, N, E] -> [B, N, E] (before the output projection, which the block fuses with its residual). */
  attend(x: Tensor): Tensor {
    const qkv = this.qkv.forward(x); // [B, N, 3E], per token (3, heads, head_dim)
    const out = attentionPacked(this.qkv.ctx, qkv, this.numHeads); // [B, N, E]
    qkv.release();
    return out;
  }
}

/** vitdet.Block: pre-norm transformer block, with windowed attention when window_size > 0. */
class Block {
  constructor(
    readonly ctx: GpuContext,
    readonly norm1: LayerNorm,
    readonly attn: Attention,
    readonly norm2: LayerNorm,
    readonly mlp: MLP,
    readonly windowSize: number,
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, t: ViTConfig, windowSize: number): Block {
    const E = t.embed_dim;
    return new Block(
      ctx,
      LayerNorm.load(ctx, w, join(name, 'norm1'), E, 1e-6),
      Attention.load(ctx, w, join(name, 'attn'), E, t.num_heads, t.qkv_bias),
      LayerNorm.load(ctx, w, join(name, 'norm2'), E, 1e-6),
      MLP.load(ctx, w, join(name, 'mlp'), E, Math.floor(E * t.mlp_ratio), E, 2, 'gelu'),
      windowSize,
    );
  }

  /** x [1, H, W, E] -> [1, H, W, E]. */
  forward(x: Tensor): Tensor {
    const [B, H, W, E] = x.shape as [number, number, number, number];
    const h = this.norm1.forward(x);
    let y: Tensor;
    let yOwner: Tensor | null = null;
    if (this.windowSize > 0) {
      const ws = this.windowSize;
      const windows = windowPartition(this.ctx, h, ws); // [B * nWin, ws*ws, E], zero-padded
      h.release();
      const a = this.attn.attend(windows);
      windows.release();
      const p = this.attn.proj.forward(a); // [B * nWin, ws*ws, E]
      a.release();
      y = windowUnpartition(this.ctx, p, ws, H, W, { residual: x }); // [B, H, W, E] = x + attn(norm1(x))
      p.release();
    } else {
      const a = this.attn.attend(h.reshape([B, H * W, E]));
      h.release();
      // x + attn(norm1(x)) [B, H*W, E] -> [B, H, W, E]; the reshape is a view, so the owner is released below
      yOwner = this.attn.proj.forward(a, { residual: x.reshape([B, H * W, E]) });
      a.release();
      y = yOwner.reshape([B, H, W, E]);
    }
    const n2 = this.norm2.forward(y);
    const out = this.mlp.forward(n2, { residual: y }); // y + mlp(norm2(y))
    n2.release();
    (yOwner ?? y).release();
    return out;
  }
}

/** vitdet.ViT: patch embedding, absolute position table, blocks. */
export class ViT {
  constructor(
    readonly ctx: GpuContext,
    readonly cfg: ViTConfig,
    readonly patchEmbed: Conv2d,
    /** The position table resized to the token grid, [1, g, g, E] (computed once at load). */
    readonly posEmbed: Tensor | null,
    readonly blocks: Block[],
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, t: ViTConfig, imageSize: number): ViT {
    const E = t.embed_dim;
    const g = imageSize / t.patch_size;
    const patchEmbed = Conv2d.load(ctx, w, join(name, 'patch_embed.proj'), 3, E, t.patch_size, { stride: t.patch_size });
    let posEmbed: Tensor | null = null;
    if (t.use_abs_pos ?? true) {
      const p = (t.pretrain_img_size ?? 224) / t.patch_size; // 14
      const cls = t.pretrain_use_cls_token ?? true;
      const table = w.tensor(join(name, 'pos_embed'), [1, p * p + (cls ? 1 : 0), E]);
      // get_abs_pos: drop the class token, view as a p x p grid (already channels-last), resize.
      const grid = ctx.empty([1, p, p, E]);
      ctx.copy(table, grid, p * p * E * 4, cls ? E * 4 : 0, 0);
      posEmbed = p === g ? grid : resizeBicubic(ctx, grid, g, g);
      if (posEmbed !== grid) grid.release();
    }
    const windowed = new Set(t.window_block_indexes);
    const blocks = [];
    for (let i = 0; i < t.depth; i++) {
      blocks.push(Block.load(ctx, w, join(name, 'blocks', i), t, windowed.has(i) ? t.window_size : 0));
    }
    return new ViT(ctx, t, patchEmbed, posEmbed, blocks);
  }

  /** pixels [1, S, S, 3] -> trunk features [1, g, g, E] (the last block's output). */
  forward(pixels: Tensor): Tensor {
    let x = this.patchEmbed.forward(pixels); // [1, g, g, E]
    if (this.posEmbed) {
      const withPos = add(this.ctx, x, this.posEmbed);
      x.release();
      x = withPos;
    }
    for (const blk of this.blocks) {
      const next = blk.forward(x);
      x.release();
      x = next;
    }
    return x;
  }
}

/** image_encoder.ViTDetNeck with LN: conv_1x1 -> LayerNorm2d -> conv_3x3 -> LayerNorm2d, and the sine position encoding. */
export class ViTDetNeck {
  constructor(
    readonly ctx: GpuContext,
    readonly conv1x1: Conv2d,
    readonly norm0: LayerNorm2d | null,
    readonly conv3x3: Conv2d,
    readonly norm1: LayerNorm2d | null,
    /** [1, g, g, C], constant for a given input size. */
    readonly posEnc: Tensor,
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, n: ViTDetNeckConfig, g: number): ViTDetNeck {
    const C = n.d_model;
    const inDim = n.backbone_channel_list[0]!;
    const useNorm = n.neck_norm != null;
    const base = join(name, 'convs', 0);
    const pe = n.position_encoding;
    return new ViTDetNeck(
      ctx,
      Conv2d.load(ctx, w, join(base, 'conv_1x1'), inDim, C, 1, { bias: !useNorm }),
      useNorm ? LayerNorm2d.load(ctx, w, join(base, 'norm_0'), C) : null,
      Conv2d.load(ctx, w, join(base, 'conv_3x3'), C, C, 3, { padding: 1, bias: !useNorm }),
      useNorm ? LayerNorm2d.load(ctx, w, join(base, 'norm_1'), C) : null,
      positionEmbeddingSine(ctx, g, g, pe.num_pos_feats, {
        temperature: pe.temperature ?? 10000,
        normalize: pe.normalize ?? true,
        scale: pe.scale ?? 2 * Math.PI,
      }).reshape([1, g, g, pe.num_pos_feats]),
    );
  }

  /** trunk [1, g, g, E] -> vision_features [1, g, g, C]. */
  forward(x: Tensor): Tensor {
    const steps: ((t: Tensor) => Tensor)[] = [(t) => this.conv1x1.forward(t)];
    if (this.norm0) steps.push((t) => this.norm0!.forward(t));
    steps.push((t) => this.conv3x3.forward(t));
    if (this.norm1) steps.push((t) => this.norm1!.forward(t));
    return sequential(x, steps);
  }
}

export interface ImageEncoderOutput {
  /** The ViT's output [1, g, g, E] (`image.trunk`, channels-last). */
  trunk: Tensor;
  /** [1, g, g, C] (`vision_features`). */
  visionFeatures: Tensor;
  /** [1, g, g, C] (`vision_pos_enc`); owned by the encoder, do not release. */
  visionPosEnc: Tensor;
}

/** image_encoder.ImageEncoder: trunk then neck. */
export class ImageEncoder {
  constructor(readonly ctx: GpuContext, readonly trunk: ViT, readonly neck: ViTDetNeck, readonly imageSize: number) {}

  static load(ctx: GpuContext, w: WeightSource, cfg: EfficientTAMConfig, name = 'image_encoder'): ImageEncoder {
    const t = cfg.image_encoder.trunk;
    const g = cfg.image_size / t.patch_size;
    return new ImageEncoder(
      ctx,
      ViT.load(ctx, w, join(name, 'trunk'), t, cfg.image_size),
      ViTDetNeck.load(ctx, w, join(name, 'neck'), cfg.image_encoder.neck, g),
      cfg.image_size,
    );
  }

  /** pixels [1, S, S, 3] -> features. Records GPU work only; nothing is read back. */
  forward(pixels: Tensor): ImageEncoderOutput {
    const S = this.imageSize;
    const [B, H, W, C] = pixels.shape;
    if (B !== 1 || H !== S || W !== S || C !== 3) {
      throw new Error(`ImageEncoder: expected pixels [1, ${S}, ${S}, 3], got [${pixels.shape}]`);
    }
    const trunk = this.trunk.forward(pixels);
    const visionFeatures = this.neck.forward(trunk);
    return { trunk, visionFeatures, visionPosEnc: this.neck.posEnc };
  }
}
