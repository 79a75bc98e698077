/**
 * SAM's prompt encoder (efficient_track_anything/modeling/sam/prompt_encoder.py):
 *
 *   points [B, N, 2] (x, y in the SxS input frame) and labels [B, N]
 *     -> sparse embeddings [B, N (+1 padding point), C]          (CPU: a few hundred floats)
 *   mask logits [Bm, 4g, 4g] -> mask_downscaling -> dense [Bm, g, g, C]   (GPU)
 *   no mask -> no_mask_embed [C], broadcast over the g x g grid
 *   get_dense_pe(): the random-Fourier encoding of the g x g grid, [g, g, C]  (GPU, made once)
 *
 * Labels: -1 padding (not_a_point_embed), 0 negative, 1 positive, 2 / 3 box top-left / bottom-right
 * corners (point_embeddings.0..3 added to the position encoding).
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import type { WeightLoader } from '../io/weights.js';
import { unary } from '../kernels/mask_ops.js';
import { Conv2d } from '../layers/conv.js';
import { join, sequential } from '../layers/module.js';
import { LayerNorm2d } from '../layers/norm.js';

const f = Math.fround;
const TWO_PI = f(2 * Math.PI);

/** position_encoding.PositionEmbeddingRandom, on the CPU in f32 steps. */
export class PositionEmbeddingRandom {
  /** positional_encoding_gaussian_matrix [2, F] (F = C / 2). */
  constructor(readonly gaussian: Float32Array, readonly numFeats: number) {}

  /** Coordinates normalised to [0, 1] -> [sin(2π (2c - 1) G), cos(...)] written at out[offset .. offset + 2F]. */
  encode(x: number, y: number, out: Float32Array, offset: number): void {
    const F = this.numFeats;
    const cx = f(f(2 * x) - 1), cy = f(f(2 * y) - 1);
    for (let j = 0; j < F; j++) {
      const c = f(TWO_PI * f(f(cx * this.gaussian[j]!) + f(cy * this.gaussian[F + j]!)));
      out[offset + j] = Math.sin(c);
      out[offset + F + j] = Math.cos(c);
    }
  }

  /** forward(size): the encoding of pixel centres of an h x w grid, channels-last [h, w, 2F]. */
  grid(h: number, w: number): Float32Array {
    const C = 2 * this.numFeats;
    const out = new Float32Array(h * w * C);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      this.encode(f(f(x + 0.5) / w), f(f(y + 0.5) / h), out, (y * w + x) * C);
    }
    return out;
  }
}

export interface PromptPoints {
  /** [B, N, 2] (x, y) in the SxS input frame (already transformed from original pixels) */
  coords: Float32Array;
  /** [B, N] */
  labels: Int32Array;
  batch: number;
  count: number;
}

export class PromptEncoder {
  constructor(
    readonly ctx: GpuContext,
    /** C */
    readonly embedDim: number,
    /** g: the image embedding is g x g */
    readonly embedSize: number,
    /** S: the input image is S x S */
    readonly inputSize: number,
    readonly peLayer: PositionEmbeddingRandom,
    /** point_embeddings.0..3 [C] each */
    readonly pointEmbeddings: Float32Array[],
    readonly notAPointEmbed: Float32Array,
    /** no_mask_embed [C] on the GPU */
    readonly noMaskEmbed: Tensor,
    readonly maskDownscaling: { conv0: Conv2d; norm1: LayerNorm2d; conv3: Conv2d; norm4: LayerNorm2d; conv6: Conv2d },
    /** get_dense_pe(): [g, g, C] on the GPU */
    readonly densePe: Tensor,
  ) {}

  static load(ctx: GpuContext, w: WeightLoader, name: string, embedDim: number, embedSize: number, inputSize: number,
    maskInChans = 16): PromptEncoder {
    const C = embedDim, F = C / 2;
    const pe = new PositionEmbeddingRandom(w.cpu(join(name, 'pe_layer.positional_encoding_gaussian_matrix'), [2, F]), F);
    const pointEmbeddings = [0, 1, 2, 3].map((i) => w.cpu(join(name, 'point_embeddings', i, 'weight'), [1, C]));
    const md = join(name, 'mask_downscaling');
    const c4 = maskInChans / 4;
    return new PromptEncoder(
      ctx, C, embedSize, inputSize, pe, pointEmbeddings,
      w.cpu(join(name, 'not_a_point_embed.weight'), [1, C]),
      w.tensor(join(name, 'no_mask_embed.weight'), [1, C]).reshape([C]),
      {
        conv0: Conv2d.load(ctx, w, join(md, 0), 1, c4, 2, { stride: 2 }),
        norm1: LayerNorm2d.load(ctx, w, join(md, 1), c4),
        conv3: Conv2d.load(ctx, w, join(md, 3), c4, maskInChans, 2, { stride: 2 }),
        norm4: LayerNorm2d.load(ctx, w, join(md, 4), maskInChans),
        conv6: Conv2d.load(ctx, w, join(md, 6), maskInChans, C, 1),
      },
      ctx.upload(pe.grid(embedSize, embedSize), [embedSize, embedSize, C]),
    );
  }

  /** Size of the mask prompt: 4g x 4g (= S/4, the decoder's low-res output). */
  get maskInputSize(): number {
    return 4 * this.embedSize;
  }

  /**
   * _embed_points: sparse embeddings [B, N + (pad ? 1 : 0), C] on the CPU. With `pad`, a point
   * labelled -1 is appended (what the official encoder does when no box is given separately,
   * which is always the case for the predictors: boxes come in as points labelled 2, 3).
   */
  embedPoints(p: PromptPoints, pad = true): { data: Float32Array; tokens: number } {
    const C = this.embedDim, S = this.inputSize;
    const n = p.count + (pad ? 1 : 0);
    const out = new Float32Array(p.batch * n * C);
    for (let b = 0; b < p.batch; b++) for (let i = 0; i < n; i++) {
      const off = (b * n + i) * C;
      const label = i < p.count ? p.labels[b * p.count + i]! : -1;
      if (label === -1) {
        out.set(this.notAPointEmbed, off);
        continue;
      }
      const x = f(p.coords[(b * p.count + i) * 2]! + 0.5), y = f(p.coords[(b * p.count + i) * 2 + 1]! + 0.5);
      this.peLayer.encode(f(x / S), f(y / S), out, off);
      if (label >= 0 && label <= 3) {
        const e = this.pointEmbeddings[label]!;
        for (let c = 0; c < C; c++) out[off + c] = f(out[off + c]! + e[c]!);
      } else {
        throw new Error(`PromptEncoder: point label ${label} is not one of -1, 0, 1, 2, 3`);
      }
    }
    return { data: out, tokens: n };
  }

  /** _embed_masks: mask logits [Bm, 4g, 4g] (or [Bm, 4g, 4g, 1]) -> dense embeddings [Bm, g, g, C]. */
  embedMasks(masks: Tensor): Tensor {
    const m = this.maskInputSize;
    const Bm = masks.size / (m * m);
    const sh = masks.shape.length === 4 ? masks.shape.slice(1, 3) : masks.shape.slice(-2);
    if (!Number.isInteger(Bm) || sh[0] !== m || sh[1] !== m || (masks.shape.length === 4 && masks.shape[3] !== 1)) {
      throw new Error(`PromptEncoder: mask input [${masks.shape}] is not [B, ${m}, ${m}]`);
    }
    const md = this.maskDownscaling;
    const x = masks.reshape([Bm, m, m, 1]);
    const steps: ((t: Tensor) => Tensor)[] = [
      (t) => md.conv0.forward(t), // [Bm, 2g, 2g, c/4]
      (t) => md.norm1.forward(t),
      (t) => unary(this.ctx, t, 'gelu'),
      (t) => md.conv3.forward(t), // [Bm, g, g, c]
      (t) => md.norm4.forward(t),
      (t) => unary(this.ctx, t, 'gelu'),
      (t) => md.conv6.forward(t), // [Bm, g, g, C]
    ];
    return sequential(x, steps);
  }
}
