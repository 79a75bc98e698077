/**
 * SAM 2's image trunk: Hiera (sam2/modeling/backbones/hieradet.py), a hierarchical ViT whose
 * four stages run at strides 4, 8, 16 and 32 and double the width and heads at each change.
 *
 *   pixels [1, S, S, 3] (normalised, channels-last)
 *     -> patch_embed (7x7 conv, stride 4, padding 3)                  [1, S/4, S/4, E]
 *     + position embedding: pos_embed (bkg table, e.g. 7x7, bicubic to S/4)
 *       + pos_embed_window (window table w0 x w0, tiled)              [1, S/4, S/4, E]
 *     -> blocks (MultiScaleBlock), stage by stage:
 *          stage 1: [1, S/4,  S/4,  E]     windows of window_spec[0]
 *          stage 2: [1, S/8,  S/8,  2E]    its first block pools (Q-pooling, below)
 *          stage 3: [1, S/16, S/16, 4E]    windowed, except the global_att_blocks
 *          stage 4: [1, S/32, S/32, 8E]
 *     -> the output of each stage's last block = the trunk's four outputs (no final norm).
 *
 * A block: x -> norm1 -> (window partition, zero-padded) -> qkv -> attention -> proj
 * -> (window unpartition, crop) + shortcut -> + mlp(norm2(.)). At a stage change the block's
 * queries are max-pooled 2x2 inside each window (so a window of w tokens a side attends with
 * (w/2)^2 queries to its w^2 keys and values), the shortcut is proj(norm1(x)) max-pooled 2x2, and
 * the output windows are w/2 a side, unpartitioned onto the pooled map. A block's window is the
 * previous stage's (the window size lags the stage by a block), so the pooling block partitions
 * the larger map with the previous window and unpartitions the pooled one with half of it.
 *
 * Channels-last throughout, where the reference permutes to channels-first only for the pooling
 * and for its outputs; names follow the reference.
 *
 * Stage 1 is large (at 1024: 65,536 tokens; the qkv of the first pooling block alone is 151 MB,
 * Hiera-L's MLP 151 MB): a buffer bound to a kernel may not exceed the device's
 * maxStorageBufferBindingSize (128 MiB on lavapipe and SwiftShader). The windowed attention and the
 * MLP are token-wise, so they run on groups of windows / rows small enough (`byRows`); everything
 * else of a block is at most the width of its input.
 */
import type { GpuContext } from '../gpu/context.js';
import { Tensor } from '../gpu/tensor.js';
import type { WeightLoader } from '../io/weights.js';
import { attentionPacked, attentionPackedKV } from '../kernels/attention.js';
import { add } from '../kernels/elementwise.js';
import { maxPool2x2 } from '../kernels/pool2d.js';
import { resizeBicubic } from '../kernels/resize.js';
import { windowPartition, windowUnpartition } from '../kernels/window.js';
import { Conv2d } from '../layers/conv.js';
import { Linear, MLP } from '../layers/linear.js';
import { join } from '../layers/module.js';
import { LayerNorm } from '../layers/norm.js';
import { hieraSettings, type HieraConfig, type HieraSettings } from './config.js';

/**
 * fn on consecutive row groups of x [N, ...] (a row: a window, or a token), each group small
 * enough that fn's widest buffer, `rowFloats` floats a row, fits the device's binding limit; the
 * groups' results [n, ...] are concatenated in order into a new tensor of shape `outShape`. One
 * group (no copy) when all of x fits.
 */
function byRows(ctx: GpuContext, maxBytes: number, x: Tensor, rowFloats: number, outShape: readonly number[], fn: (rows: Tensor) => Tensor): Tensor {
  const N = x.shape[0]!;
  const per = Math.max(1, Math.floor(maxBytes / (4 * rowFloats)));
  if (per >= N) return withShape(fn(x), outShape);
  const inRow = x.size / N;
  const out = ctx.empty(outShape);
  for (let r0 = 0; r0 < N; r0 += per) {
    const n = Math.min(per, N - r0);
    const rows = ctx.empty([n, ...x.shape.slice(1)]);
    ctx.copy(x, rows, n * inRow * 4, r0 * inRow * 4, 0);
    const y = fn(rows);
    rows.release();
    ctx.copy(y, out, y.byteLength, 0, r0 * (y.size / n) * 4);
    y.release();
  }
  return out;
}

/** An owned tensor under another shape, taking over its buffer (`t` is not to be used afterwards). */
function withShape(t: Tensor, shape: readonly number[]): Tensor {
  if (t.size !== shape.reduce((a, b) => a * b, 1) || !t.owner) throw new Error(`withShape: [${t.shape}] -> [${shape}]`);
  return new Tensor(t.ctx, t.buffer, shape, t.dtype);
}

/** hieradet.MultiScaleAttention: qkv (dim -> 3 dimOut), optional 2x2 max pool of the queries, attention, proj. */
class MultiScaleAttention {
  constructor(readonly ctx: GpuContext, readonly qkv: Linear, readonly proj: Linear, readonly numHeads: number, readonly qPool: boolean) {}

  static load(ctx: GpuContext, w: WeightLoader, name: string, dim: number, dimOut: number, numHeads: number, qPool: boolean): MultiScaleAttention {
    return new MultiScaleAttention(
      ctx,
      Linear.load(ctx, w, join(name, 'qkv'), dim, 3 * dimOut),
      Linear.load(ctx, w, join(name, 'proj'), dimOut, dimOut),
      numHeads, qPool,
    );
  }

  /**
   * x [B, h, w, dim] (B windows of h x w tokens, or the whole map) -> attention before proj,
   * [B, h*w, dimOut], or [B, (h/2)*(w/2), dimOut] when the queries are pooled.
   */
  attend(x: Tensor): Tensor {
    const [B, h, w, dim] = x.shape as [number, number, number, number];
    const qkv = this.qkv.forward(x.reshape([B, h * w, dim])); // [B, h*w, 3*dimOut], per token (3, heads, d)
    let out: Tensor;
    if (this.qPool) {
      const dimOut = qkv.shape[2]! / 3;
      // the queries, pooled where they lie in the qkv output: [B, h/2, w/2, dimOut]
      const q = maxPool2x2(this.ctx, qkv.reshape([B, h, w, 3 * dimOut]), { channels: dimOut, offset: 0 });
      out = attentionPackedKV(this.ctx, q.reshape([B, q.shape[1]! * q.shape[2]!, dimOut]), qkv, this.numHeads);
      q.release();
    } else {
      out = attentionPacked(this.ctx, qkv, this.numHeads);
    }
    qkv.release();
    return out;
  }
}

/** hieradet.MultiScaleBlock. */
class MultiScaleBlock {
  constructor(
    readonly ctx: GpuContext,
    readonly dim: number,
    readonly dimOut: number,
    readonly norm1: LayerNorm,
    readonly attn: MultiScaleAttention,
    readonly norm2: LayerNorm,
    readonly mlp: MLP,
    /** proj: dim -> dimOut on the shortcut at a width change */
    readonly proj: Linear | null,
    /** window size (0: global attention) */
    readonly windowSize: number,
    /** Q-pooling (the first block of stages 2-4) */
    readonly pool: boolean,
    /** shared with the trunk (see Hiera.limits) */
    readonly limits: { maxBindingBytes: number },
  ) {}

  static load(ctx: GpuContext, w: WeightLoader, name: string, b: HieraSettings['blocks'][number], limits: { maxBindingBytes: number }): MultiScaleBlock {
    const { dim, dimOut } = b;
    return new MultiScaleBlock(
      ctx, dim, dimOut,
      LayerNorm.load(ctx, w, join(name, 'norm1'), dim, 1e-6),
      MultiScaleAttention.load(ctx, w, join(name, 'attn'), dim, dimOut, b.heads, b.pool),
      LayerNorm.load(ctx, w, join(name, 'norm2'), dimOut, 1e-6),
      MLP.load(ctx, w, join(name, 'mlp'), dimOut, Math.floor(dimOut * 4.0), dimOut, 2, 'gelu'),
      dim !== dimOut ? Linear.load(ctx, w, join(name, 'proj'), dim, dimOut) : null,
      b.window, b.pool, limits,
    );
  }

  /** x [1, H, W, dim] -> [1, H', W', dimOut] (H' = H/2 when pooling, else H). */
  forward(x: Tensor): Tensor {
    const ctx = this.ctx;
    const B = x.shape[0]!;
    const h = this.norm1.forward(x); // [B, H, W, dim]

    // the shortcut: x, or proj(norm1(x)) (pooled 2x2) when the width changes   [B, H', W', dimOut]
    let shortcut = x;
    if (this.proj) {
      const p = this.proj.forward(h);
      shortcut = this.pool ? maxPool2x2(ctx, p) : p;
      if (shortcut !== p) p.release();
    }
    const [, Ho, Wo] = shortcut.shape as [number, number, number, number];

    let y: Tensor; // [B, Ho, Wo, dimOut]
    let yOwner: Tensor | null = null; // when y is a view
    if (this.windowSize > 0) {
      const ws = this.windowSize;
      const windows = windowPartition(ctx, h, ws); // [B*nWin, ws*ws, dim], zero-padded to multiples of ws
      // attention and proj, window by window (in groups whose qkv fits a binding)   [B*nWin, wo*wo, dimOut]
      const nWin = windows.shape[0]!, wo = this.pool ? ws / 2 : ws;
      const p = byRows(ctx, this.limits.maxBindingBytes, windows.reshape([nWin, ws, ws, this.dim]), ws * ws * 3 * this.dimOut, [nWin, wo * wo, this.dimOut], (w) => {
        const a = this.attn.attend(w);
        const o = this.attn.proj.forward(a);
        a.release();
        return o;
      });
      windows.release();
      // pooled windows are ws/2 a side; unpartitioned onto the (pooled) map and cropped, + shortcut
      y = windowUnpartition(ctx, p, wo, Ho, Wo, { residual: shortcut }); // [B, Ho, Wo, dimOut]
      p.release();
    } else {
      const a = this.attn.attend(h); // [B, Ho*Wo, dimOut]
      yOwner = this.attn.proj.forward(a, { residual: shortcut.reshape([B, Ho * Wo, this.dimOut]) }); // + shortcut
      a.release();
      y = yOwner.reshape([B, Ho, Wo, this.dimOut]);
    }
    h.release();
    if (shortcut !== x) shortcut.release();

    // y + mlp(norm2(y)), token by token (in groups whose hidden layer fits a binding)
    const out = byRows(ctx, this.limits.maxBindingBytes, y.reshape([B * Ho * Wo, this.dimOut]), 4 * this.dimOut, [B, Ho, Wo, this.dimOut], (rows) => {
      const n2 = this.norm2.forward(rows);
      const o = this.mlp.forward(n2, { residual: rows });
      n2.release();
      return o;
    });
    (yOwner ?? y).release();
    return out;
  }
}

/** hieradet.Hiera. */
export class Hiera {
  constructor(
    readonly ctx: GpuContext,
    readonly settings: HieraSettings,
    readonly patchEmbed: Conv2d,
    /** pos_embed resized to S/4 plus the tiled pos_embed_window, [1, S/4, S/4, E] (computed once at load) */
    readonly posEmbed: Tensor,
    readonly blocks: MultiScaleBlock[],
    /**
     * The largest buffer the blocks let a kernel bind: the device's maxStorageBufferBindingSize
     * (lower it to see the window and token groups at work on a small input).
     */
    readonly limits: { maxBindingBytes: number },
  ) {}

  static load(ctx: GpuContext, w: WeightLoader, name: string, t: HieraConfig, imageSize: number): Hiera {
    const s = hieraSettings(t);
    const E = s.embedDim;
    const patchEmbed = Conv2d.load(ctx, w, join(name, 'patch_embed.proj'), 3, E, 7, { stride: 4, padding: 3 });
    const posEmbed = Hiera.positionEmbedding(ctx, w, name, s, imageSize / 4);
    const limits = { maxBindingBytes: ctx.device.limits.maxStorageBufferBindingSize };
    const blocks = s.blocks.map((b, i) => MultiScaleBlock.load(ctx, w, join(name, 'blocks', i), b, limits));
    return new Hiera(ctx, s, patchEmbed, posEmbed, blocks, limits);
  }

  /**
   * _get_pos_embed at a g4 x g4 token grid: the background table [1, E, bh, bw] resized bicubically
   * to g4 x g4, plus the window table [1, E, w0, w0] tiled (g4 / w0 times each way). Both tables
   * are stored channels-first; they are made channels-last here. The tiling is done by adding the
   * window table to every window of the partitioned map (a broadcast over windows), then
   * unpartitioning.
   */
  private static positionEmbedding(ctx: GpuContext, w: WeightLoader, name: string, s: HieraSettings, g4: number): Tensor {
    const E = s.embedDim;
    const [bh, bw] = s.bkgSize;
    const w0 = s.windowSpec[0]!;
    const bkg = ctx.upload(chwToHwc(w.cpu(join(name, 'pos_embed'), [1, E, bh, bw]), E, bh, bw), [1, bh, bw, E]);
    const win = ctx.upload(chwToHwc(w.cpu(join(name, 'pos_embed_window'), [1, E, w0, w0]), E, w0, w0), [w0 * w0 * E]);
    const resized = resizeBicubic(ctx, bkg, g4, g4); // [1, g4, g4, E]
    bkg.release();
    const windows = windowPartition(ctx, resized, w0); // [(g4/w0)^2, w0*w0, E] (g4 is a multiple of w0)
    resized.release();
    const tiled = add(ctx, windows, win); // + the window table, in every window
    windows.release();
    win.release();
    const out = windowUnpartition(ctx, tiled, w0, g4, g4); // [1, g4, g4, E]
    tiled.release();
    return out;
  }

  /** pixels [1, S, S, 3] -> the four stage outputs, [1, S/4, S/4, E] .. [1, S/32, S/32, 8E]. */
  forward(pixels: Tensor): Tensor[] {
    const ctx = this.ctx;
    const p = this.patchEmbed.forward(pixels); // [1, S/4, S/4, E]
    let x = add(ctx, p, this.posEmbed);
    p.release();
    const outputs: Tensor[] = [];
    const ends = new Set(this.settings.stageEnds);
    this.blocks.forEach((blk, i) => {
      const next = blk.forward(x);
      if (!outputs.includes(x)) x.release();
      x = next;
      if (ends.has(i)) outputs.push(x); // kept: a stage output
    });
    return outputs;
  }
}

/** [C, H, W] (channels-first, as the checkpoint stores a table) -> [H, W, C]. */
function chwToHwc(x: Float32Array, C: number, H: number, W: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let c = 0; c < C; c++) for (let i = 0; i < H * W; i++) out[i * C + c] = x[c * H * W + i]!;
  return out;
}
