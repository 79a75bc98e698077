/**
 * The image encoders: EfficientTAM's plain (non-hierarchical) ViT trunk with the ViTDet neck, and
 * SAM 2's Hiera trunk (hieradet.ts) with the FPN neck.
 *
 * EfficientTAM:
 *   pixels [1, S, S, 3] (normalised, channels-last)
 *     -> ViT.patch_embed (16x16 conv, stride 16)           [1, g, g, E]   g = S / 16
 *     + pos_embed (14x14 pretraining table, bicubic to g)  [1, g, g, E]
 *     -> blocks 0..depth-1 (windowed or global attention)  [1, g, g, E]   = "trunk"
 *     -> neck: conv_1x1, LayerNorm2d, conv_3x3, LayerNorm2d [1, g, g, C]   = "vision_features"
 *   and the neck's sine position encoding                  [1, g, g, C]   = "vision_pos_enc"
 *
 * SAM 2:
 *   pixels [1, S, S, 3] -> Hiera -> stages [1, 4g, 4g, E], [1, 2g, 2g, 2E], [1, g, g, 4E], [1, g/2, g/2, 8E]
 *     -> FpnNeck: a 1x1 lateral conv per stage to C; top-down (stride 32 -> 16) where
 *        fpn_top_down_levels say: level 2 = lateral + nearest 2x upsample of level 3
 *        -> levels [1, 4g, 4g, C], [1, 2g, 2g, C], [1, g, g, C] (scalp 1 drops stride 32)
 *   "vision_features" is the stride-16 level; the stride-4 and -8 levels are "backbone_fpn" 0 and 1,
 *   which the mask decoder takes through its conv_s0 / conv_s1 (the model's forwardImage).
 *
 * Reference: efficient_track_anything/modeling/backbones/{vitdet,image_encoder,utils}.py and
 * sam2/modeling/backbones/{hieradet,image_encoder}.py.
 * All maps are channels-last here, where the reference is channels-first; names follow it.
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { attentionPacked } from '../kernels/attention.js';
import { add } from '../kernels/elementwise.js';
import { positionEmbeddingSine } from '../kernels/posenc.js';
import { resizeBicubic, upsampleNearest2xAdd } from '../kernels/resize.js';
import { windowPartition, windowUnpartition } from '../kernels/window.js';
import { Conv2d } from '../layers/conv.js';
import { Linear, MLP } from '../layers/linear.js';
import { join, sequential, type WeightSource } from '../layers/module.js';
import { LayerNorm, LayerNorm2d } from '../layers/norm.js';
import type { WeightLoader } from '../io/weights.js';
import { featureSize, hieraSettings, isHiera, type EfficientTAMConfig, type FpnNeckConfig, type ViTConfig, type ViTDetNeckConfig } from './config.js';
import { Hiera } from './hieradet.js';

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

/** image_encoder.FpnNeck (SAM 2) with 1x1 laterals and nearest top-down fusion; position encoding of the stride-16 level. */
export class FpnNeck {
  constructor(
    readonly ctx: GpuContext,
    /** convs.i.conv: the lateral of trunk stage (3 - i): convs.0 takes the stride-32 stage */
    readonly convs: Conv2d[],
    /** levels (0 = stride 4) whose output adds the top-down path */
    readonly topDownLevels: Set<number>,
    readonly avg: boolean,
    /** the stride-16 level's sine encoding [1, g, g, C] (the only level whose encoding the model reads) */
    readonly posEnc: Tensor,
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, n: FpnNeckConfig, g: number): FpnNeck {
    const C = n.d_model;
    const pe = n.position_encoding;
    const levels = n.backbone_channel_list.length;
    return new FpnNeck(
      ctx,
      n.backbone_channel_list.map((dim, i) => Conv2d.load(ctx, w, join(name, 'convs', i, 'conv'), dim, C, 1)),
      new Set(n.fpn_top_down_levels ?? Array.from({ length: levels }, (_, i) => i)),
      n.fuse_type === 'avg',
      positionEmbeddingSine(ctx, g, g, pe.num_pos_feats, {
        temperature: pe.temperature ?? 10000,
        normalize: pe.normalize ?? true,
        scale: pe.scale ?? 2 * Math.PI,
      }).reshape([1, g, g, pe.num_pos_feats]),
    );
  }

  /**
   * The trunk's stages (stride 4 first) -> the neck's levels (stride 4 first), all [1, h, w, C].
   * Top-down from the lowest resolution: level i is its lateral conv, plus the 2x nearest upsample
   * of level i + 1 when i is a top-down level.
   */
  forward(xs: Tensor[]): Tensor[] {
    const n = this.convs.length - 1;
    if (xs.length !== n + 1) throw new Error(`FpnNeck: ${xs.length} trunk outputs for ${n + 1} levels`);
    const out: Tensor[] = new Array(n + 1);
    let prev: Tensor | null = null;
    for (let i = n; i >= 0; i--) {
      const lateral = this.convs[n - i]!.forward(xs[i]!); // [1, h_i, w_i, C]
      if (prev && this.topDownLevels.has(i)) {
        out[i] = upsampleNearest2xAdd(this.ctx, lateral, prev, { avg: this.avg });
        lateral.release();
      } else {
        out[i] = lateral;
      }
      prev = out[i]!;
    }
    return out;
  }
}

export interface ImageEncoderOutput {
  /**
   * The trunk's outputs, channels-last, only with `forward(pixels, { keepTrunk: true })` (else
   * empty): the ViT's [1, g, g, E], or Hiera's four stages [1, 4g, 4g, E] .. [1, g/2, g/2, 8E].
   */
  trunk: Tensor[];
  /** [1, g, g, C] (`vision_features`). */
  visionFeatures: Tensor;
  /** [1, g, g, C] (`vision_pos_enc`); owned by the encoder, do not release. */
  visionPosEnc: Tensor;
  /**
   * SAM 2: the neck's stride-4 and stride-8 levels, [1, 4g, 4g, C] and [1, 2g, 2g, C]
   * (`backbone_fpn[0..1]`, before the decoder's conv_s0 / conv_s1); empty for EfficientTAM.
   */
  backboneFpn: Tensor[];
}

/** image_encoder.ImageEncoder: trunk then neck (then scalp). */
export class ImageEncoder {
  constructor(
    readonly ctx: GpuContext,
    readonly trunk: ViT | Hiera,
    readonly neck: ViTDetNeck | FpnNeck,
    readonly imageSize: number,
    /** levels dropped at the low-resolution end (SAM 2: 1, the stride-32 level) */
    readonly scalp: number,
  ) {}

  static load(ctx: GpuContext, w: WeightLoader, cfg: EfficientTAMConfig, name = 'image_encoder'): ImageEncoder {
    const t = cfg.image_encoder.trunk;
    const S = cfg.image_size;
    const g = featureSize(cfg);
    if (isHiera(t)) {
      const levels = hieraSettings(t).stageDims.length - (cfg.image_encoder.scalp ?? 0);
      if (4 * 2 ** (levels - 1) !== 16) throw new Error(`ImageEncoder: after scalp the lowest level has stride ${4 * 2 ** (levels - 1)}, not 16`);
      return new ImageEncoder(
        ctx,
        Hiera.load(ctx, w, join(name, 'trunk'), t, S),
        FpnNeck.load(ctx, w, join(name, 'neck'), cfg.image_encoder.neck as FpnNeckConfig, g),
        S, cfg.image_encoder.scalp ?? 0,
      );
    }
    return new ImageEncoder(
      ctx,
      ViT.load(ctx, w, join(name, 'trunk'), t, S),
      ViTDetNeck.load(ctx, w, join(name, 'neck'), cfg.image_encoder.neck as ViTDetNeckConfig, g),
      S, cfg.image_encoder.scalp ?? 0,
    );
  }

  /** pixels [1, S, S, 3] -> features. Records GPU work only; nothing is read back. */
  forward(pixels: Tensor, opts: { keepTrunk?: boolean } = {}): ImageEncoderOutput {
    const S = this.imageSize;
    const [B, H, W, C] = pixels.shape;
    if (B !== 1 || H !== S || W !== S || C !== 3) {
      throw new Error(`ImageEncoder: expected pixels [1, ${S}, ${S}, 3], got [${pixels.shape}]`);
    }
    const keep = opts.keepTrunk ?? false;
    if (this.trunk instanceof ViT) {
      const trunk = this.trunk.forward(pixels);
      const visionFeatures = (this.neck as ViTDetNeck).forward(trunk);
      if (!keep) trunk.release();
      return { trunk: keep ? [trunk] : [], visionFeatures, visionPosEnc: this.neck.posEnc, backboneFpn: [] };
    }
    const stages = this.trunk.forward(pixels); // stride 4 .. 32
    const levels = (this.neck as FpnNeck).forward(stages); // stride 4 .. 32, [1, h, w, C]
    if (!keep) for (const x of stages) x.release();
    // scalp: the lowest-resolution levels are dropped; the last one kept is vision_features
    for (const x of levels.splice(levels.length - this.scalp)) x.release();
    const visionFeatures = levels.pop()!;
    return { trunk: keep ? stages : [], visionFeatures, visionPosEnc: this.neck.posEnc, backboneFpn: levels };
  }
}
