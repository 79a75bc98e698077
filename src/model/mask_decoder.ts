/**
 * SAM's mask decoder (efficient_track_anything/modeling/sam/{mask_decoder,transformer}.py):
 *
 *   tokens = [obj_score_token, iou_token, mask_tokens (4), sparse prompt embeddings]   [B, Nt, C]
 *   src    = image_embed (repeated over B) + dense prompt embeddings                   [B, g*g, C]
 *   TwoWayTransformer (depth 2; self-attn of tokens, token->image, MLP, image->token;
 *   then the final token->image attention and norm_final_attn) -> hs [B, Nt, C], src [B, g*g, C]
 *   output_upscaling: ConvT 2x2 s2 -> LayerNorm2d -> GELU -> ConvT 2x2 s2 -> GELU  [B, 4g, 4g, C/8]
 *     with high-resolution features (SAM 2: use_high_res_features_in_sam), the image's stride-8 and
 *     stride-4 maps feat_s1 [1, 2g, 2g, C/4] and feat_s0 [1, 4g, 4g, C/8] (the FPN levels through
 *     conv_s1 / conv_s0, made once per image by `projectHighRes`) are added before each activation:
 *       GELU(LayerNorm2d(ConvT(src) + feat_s1)), then GELU(ConvT(.) + feat_s0)
 *   hyper_in[i] = output_hypernetworks_mlps[i](hs[:, 2 + i])                        [B, 4, C/8]
 *   masks = hyper_in · upscaledᵀ                                                    [B, 4, 4g, 4g]
 *   iou_pred = iou_prediction_head(hs[:, 1]) (sigmoid),  object_score_logits = pred_obj_score_head(hs[:, 0])
 *   then the multimask / single / dynamic (stability) choice of outputs.
 *
 * Everything stays on the GPU; only the token table (a few hundred floats) is uploaded per call.
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import type { WeightLoader } from '../io/weights.js';
import { attention } from '../kernels/attention.js';
import { convTranspose2d } from '../kernels/conv_transpose2d.js';
import { add } from '../kernels/elementwise.js';
import { broadcastAdd, copyRows, selectMasks, selectToken, unary, type MaskSelectMode } from '../kernels/mask_ops.js';
import { matmul } from '../kernels/matmul.js';
import { Conv2d } from '../layers/conv.js';
import { Linear, MLP } from '../layers/linear.js';
import { join } from '../layers/module.js';
import { LayerNorm, LayerNorm2d } from '../layers/norm.js';

/** transformer.Attention: projections to an internal width (C / downsample_rate), multi-head attention, out_proj. */
export class DecoderAttention {
  constructor(
    readonly ctx: GpuContext,
    readonly qProj: Linear,
    readonly kProj: Linear,
    readonly vProj: Linear,
    readonly outProj: Linear,
    readonly numHeads: number,
  ) {}

  static load(ctx: GpuContext, w: WeightLoader, name: string, dim: number, numHeads: number, downsampleRate = 1): DecoderAttention {
    const internal = dim / downsampleRate;
    return new DecoderAttention(
      ctx,
      Linear.load(ctx, w, join(name, 'q_proj'), dim, internal),
      Linear.load(ctx, w, join(name, 'k_proj'), dim, internal),
      Linear.load(ctx, w, join(name, 'v_proj'), dim, internal),
      Linear.load(ctx, w, join(name, 'out_proj'), internal, dim),
      numHeads,
    );
  }

  /** q [B, Nq, C], k, v [B, Nk, C] -> out_proj(attn) [B, Nq, C], plus `residual` when given. */
  forward(q: Tensor, k: Tensor, v: Tensor, residual?: Tensor): Tensor {
    const qp = this.qProj.forward(q);
    const kp = this.kProj.forward(k);
    const vp = this.vProj.forward(v);
    const a = attention(this.ctx, qp, kp, vp, this.numHeads); // [B, Nq, internal]
    qp.release();
    kp.release();
    vp.release();
    const out = this.outProj.forward(a, { residual });
    a.release();
    return out;
  }
}

/** transformer.TwoWayAttentionBlock. */
class TwoWayAttentionBlock {
  constructor(
    readonly ctx: GpuContext,
    readonly selfAttn: DecoderAttention,
    readonly norm1: LayerNorm,
    readonly crossAttnTokenToImage: DecoderAttention,
    readonly norm2: LayerNorm,
    readonly mlp: MLP,
    readonly norm3: LayerNorm,
    readonly norm4: LayerNorm,
    readonly crossAttnImageToToken: DecoderAttention,
    readonly skipFirstLayerPe: boolean,
  ) {}

  static load(ctx: GpuContext, w: WeightLoader, name: string, C: number, heads: number, mlpDim: number, rate: number,
    skipFirstLayerPe: boolean): TwoWayAttentionBlock {
    return new TwoWayAttentionBlock(
      ctx,
      DecoderAttention.load(ctx, w, join(name, 'self_attn'), C, heads),
      LayerNorm.load(ctx, w, join(name, 'norm1'), C),
      DecoderAttention.load(ctx, w, join(name, 'cross_attn_token_to_image'), C, heads, rate),
      LayerNorm.load(ctx, w, join(name, 'norm2'), C),
      MLP.load(ctx, w, join(name, 'mlp'), C, mlpDim, C, 2, 'relu'),
      LayerNorm.load(ctx, w, join(name, 'norm3'), C),
      LayerNorm.load(ctx, w, join(name, 'norm4'), C),
      DecoderAttention.load(ctx, w, join(name, 'cross_attn_image_to_token'), C, heads, rate),
      skipFirstLayerPe,
    );
  }

  /** queries [B, Nt, C], keys [B, HW, C], queryPe [B, Nt, C], keyPe [HW, C] -> new (queries, keys). */
  forward(queries: Tensor, keys: Tensor, queryPe: Tensor, keyPe: Tensor): { queries: Tensor; keys: Tensor } {
    const ctx = this.ctx;
    // self attention of the tokens
    let attnOut: Tensor;
    if (this.skipFirstLayerPe) {
      attnOut = this.selfAttn.forward(queries, queries, queries);
    } else {
      const q = add(ctx, queries, queryPe);
      attnOut = this.selfAttn.forward(q, q, queries, queries); // queries + attn
      q.release();
    }
    let qs = this.norm1.forward(attnOut);
    attnOut.release();

    // tokens attending to the image
    let q = add(ctx, qs, queryPe);
    const k = add(ctx, keys, keyPe); // keyPe broadcast over the batch
    attnOut = this.crossAttnTokenToImage.forward(q, k, keys, qs);
    q.release();
    qs.release();
    qs = this.norm2.forward(attnOut);
    attnOut.release();

    // MLP on the tokens
    const m = this.mlp.forward(qs, { residual: qs });
    qs.release();
    qs = this.norm3.forward(m);
    m.release();

    // the image attending to the tokens (keys + key_pe is unchanged since the token->image step)
    q = add(ctx, qs, queryPe);
    const kOut = this.crossAttnImageToToken.forward(k, q, qs, keys);
    q.release();
    k.release();
    const newKeys = this.norm4.forward(kOut);
    kOut.release();
    return { queries: qs, keys: newKeys };
  }
}

/** transformer.TwoWayTransformer. */
export class TwoWayTransformer {
  constructor(
    readonly ctx: GpuContext,
    readonly layers: TwoWayAttentionBlock[],
    readonly finalAttnTokenToImage: DecoderAttention,
    readonly normFinalAttn: LayerNorm,
  ) {}

  static load(ctx: GpuContext, w: WeightLoader, name: string, C: number, depth = 2, heads = 8, mlpDim = 2048, rate = 2): TwoWayTransformer {
    const layers = [];
    for (let i = 0; i < depth; i++) layers.push(TwoWayAttentionBlock.load(ctx, w, join(name, 'layers', i), C, heads, mlpDim, rate, i === 0));
    return new TwoWayTransformer(
      ctx, layers,
      DecoderAttention.load(ctx, w, join(name, 'final_attn_token_to_image'), C, heads, rate),
      LayerNorm.load(ctx, w, join(name, 'norm_final_attn'), C),
    );
  }

  /**
   * image [B, HW, C], imagePe [HW, C], pointEmbedding [B, Nt, C] -> (hs [B, Nt, C], src [B, HW, C]).
   * The inputs are not released.
   */
  forward(image: Tensor, imagePe: Tensor, pointEmbedding: Tensor): { hs: Tensor; src: Tensor } {
    const ctx = this.ctx;
    let queries = pointEmbedding, keys = image;
    for (const layer of this.layers) {
      const out = layer.forward(queries, keys, pointEmbedding, imagePe);
      if (queries !== pointEmbedding) queries.release();
      if (keys !== image) keys.release();
      queries = out.queries;
      keys = out.keys;
    }
    const q = add(ctx, queries, pointEmbedding);
    const k = add(ctx, keys, imagePe);
    const attnOut = this.finalAttnTokenToImage.forward(q, k, keys, queries);
    q.release();
    k.release();
    if (queries !== pointEmbedding) queries.release();
    const hs = this.normFinalAttn.forward(attnOut);
    attnOut.release();
    return { hs, src: keys };
  }
}

export interface MaskDecoderOutput {
  /** low-res mask logits [B, M, 4g, 4g] (M = 3 for multimask output, else 1) */
  masks: Tensor;
  /** predicted IoU of each output mask [B, M] (after the sigmoid when iou_prediction_use_sigmoid) */
  iouPred: Tensor;
  /** the mask tokens that go into the object pointer: [B, M', C] (M' = 3 with multimask output and use_multimask_token_for_obj_ptr, else 1) */
  samTokensOut: Tensor;
  /** [B, 1] */
  objectScoreLogits: Tensor;
}

/** The image's high-resolution maps for the decoder: [feat_s0 [1, 4g, 4g, C/8], feat_s1 [1, 2g, 2g, C/4]]. */
export type HighResFeatures = readonly [Tensor, Tensor];

export interface MaskDecoderArgs {
  /** the image embedding [1, g, g, C] (vision features + no_mem_embed for the image predictor) */
  imageEmbed: Tensor;
  /** get_dense_pe() [g, g, C] */
  imagePe: Tensor;
  /** sparse prompt embeddings [B, N, C] on the CPU */
  sparse: Float32Array;
  batch: number;
  /** dense prompt embeddings: [Bd, g, g, C] with Bd = 1 or B (mask prompts), or [C] (no_mask_embed) */
  dense: Tensor;
  multimaskOutput: boolean;
  /** SAM 2 (the decoder's `usesHighRes`): the image's [feat_s0, feat_s1], shared by the batch */
  highResFeatures?: HighResFeatures | null;
}

export class MaskDecoder {
  constructor(
    readonly ctx: GpuContext,
    readonly C: number,
    readonly transformer: TwoWayTransformer,
    /** rows of the output token table: [obj_score_token?, iou_token, mask_tokens], [T0, C] */
    readonly outputTokens: Float32Array,
    readonly numMaskTokens: number,
    readonly predObjScores: boolean,
    readonly upscaling: { dc1: { weight: Tensor; bias: Tensor }; ln1: LayerNorm2d; dc2: { weight: Tensor; bias: Tensor } },
    /** conv_s0 (C -> C/8) and conv_s1 (C -> C/4), 1x1: with use_high_res_features_in_sam */
    readonly convS: { s0: Conv2d; s1: Conv2d } | null,
    readonly hypernetworks: MLP[],
    readonly iouHead: MLP,
    readonly objScoreHead: MLP | Linear | null,
    readonly opts: {
      iouSigmoid: boolean;
      dynamicMultimaskViaStability: boolean;
      stabilityDelta: number;
      stabilityThresh: number;
      useMultimaskTokenForObjPtr: boolean;
    },
  ) {}

  static load(ctx: GpuContext, w: WeightLoader, name: string, C: number, cfg: {
    iou_prediction_use_sigmoid: boolean; pred_obj_scores: boolean; pred_obj_scores_mlp: boolean;
    use_multimask_token_for_obj_ptr: boolean; use_high_res_features_in_sam: boolean;
    sam_mask_decoder_extra_args?: { dynamic_multimask_via_stability: boolean; dynamic_multimask_stability_delta: number; dynamic_multimask_stability_thresh: number };
  }): MaskDecoder {
    const numMaskTokens = 4;
    const rows: Float32Array[] = [];
    if (cfg.pred_obj_scores) rows.push(w.cpu(join(name, 'obj_score_token.weight'), [1, C]));
    rows.push(w.cpu(join(name, 'iou_token.weight'), [1, C]));
    rows.push(w.cpu(join(name, 'mask_tokens.weight'), [numMaskTokens, C]));
    const outputTokens = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
    let off = 0;
    for (const r of rows) { outputTokens.set(r, off); off += r.length; }
    const up = join(name, 'output_upscaling');
    const convT = (i: number, cin: number, cout: number) => ({
      weight: w.tensor(join(up, i, 'weight'), [cin, cout, 2, 2]),
      bias: w.tensor(join(up, i, 'bias'), [cout]),
    });
    let objScoreHead: MLP | Linear | null = null;
    if (cfg.pred_obj_scores) {
      objScoreHead = cfg.pred_obj_scores_mlp
        ? MLP.load(ctx, w, join(name, 'pred_obj_score_head'), C, C, 1, 3, 'relu')
        : Linear.load(ctx, w, join(name, 'pred_obj_score_head'), C, 1);
    }
    const extra = cfg.sam_mask_decoder_extra_args;
    return new MaskDecoder(
      ctx, C,
      TwoWayTransformer.load(ctx, w, join(name, 'transformer'), C),
      outputTokens, numMaskTokens, cfg.pred_obj_scores,
      { dc1: convT(0, C, C / 4), ln1: LayerNorm2d.load(ctx, w, join(up, 1), C / 4), dc2: convT(3, C / 4, C / 8) },
      cfg.use_high_res_features_in_sam
        ? { s0: Conv2d.load(ctx, w, join(name, 'conv_s0'), C, C / 8, 1), s1: Conv2d.load(ctx, w, join(name, 'conv_s1'), C, C / 4, 1) }
        : null,
      Array.from({ length: numMaskTokens }, (_, i) => MLP.load(ctx, w, join(name, 'output_hypernetworks_mlps', i), C, C, C / 8, 3, 'relu')),
      MLP.load(ctx, w, join(name, 'iou_prediction_head'), C, 256, numMaskTokens, 3, 'relu'),
      objScoreHead,
      {
        iouSigmoid: cfg.iou_prediction_use_sigmoid,
        dynamicMultimaskViaStability: extra?.dynamic_multimask_via_stability ?? false,
        stabilityDelta: extra?.dynamic_multimask_stability_delta ?? 0.05,
        stabilityThresh: extra?.dynamic_multimask_stability_thresh ?? 0.98,
        useMultimaskTokenForObjPtr: cfg.use_multimask_token_for_obj_ptr,
      },
    );
  }

  /** Whether the decoder takes the image's high-resolution maps (SAM 2). */
  get usesHighRes(): boolean {
    return this.convS !== null;
  }

  /**
   * conv_s0 / conv_s1 on the image encoder's stride-4 and stride-8 levels (backbone_fpn 0 and 1,
   * [1, 4g, 4g, C] and [1, 2g, 2g, C]) -> [feat_s0 [1, 4g, 4g, C/8], feat_s1 [1, 2g, 2g, C/4]],
   * once per image, as the official forward_image precomputes them. The inputs are not released.
   */
  projectHighRes(backboneFpn: readonly Tensor[]): HighResFeatures {
    if (!this.convS) throw new Error('MaskDecoder: this model has no high-resolution features (use_high_res_features_in_sam is off)');
    if (backboneFpn.length < 2) throw new Error(`MaskDecoder: high-resolution features need the stride-4 and stride-8 levels, got ${backboneFpn.length} maps`);
    return [this.convS.s0.forward(backboneFpn[0]!), this.convS.s1.forward(backboneFpn[1]!)];
  }

  /** Rows of the output token table before the mask tokens (1, or 2 with the object-score token). */
  get numLeadingTokens(): number {
    return this.predObjScores ? 2 : 1;
  }

  forward(a: MaskDecoderArgs): MaskDecoderOutput {
    const { ctx, C } = this;
    const [g] = a.imagePe.shape as [number];
    const HW = g * g;
    const B = a.batch;
    const T0 = this.outputTokens.length / C;
    const Np = a.sparse.length / (B * C);
    if (!Number.isInteger(Np)) throw new Error(`MaskDecoder: sparse embeddings of ${a.sparse.length} floats are not [${B}, N, ${C}]`);
    const Nt = T0 + Np;
    const hr = a.highResFeatures ?? null;
    if (this.convS && !hr) throw new Error('MaskDecoder: this model (use_high_res_features_in_sam) needs the image\'s high-resolution features');
    if (!this.convS && hr) throw new Error('MaskDecoder: high-resolution features given to a model without use_high_res_features_in_sam');

    // tokens = cat(output_tokens, sparse) [B, Nt, C], built on the CPU and uploaded once
    const tokensCpu = new Float32Array(B * Nt * C);
    for (let b = 0; b < B; b++) {
      tokensCpu.set(this.outputTokens, b * Nt * C);
      tokensCpu.set(a.sparse.subarray(b * Np * C, (b + 1) * Np * C), (b * Nt + T0) * C);
    }
    const tokens = ctx.upload(tokensCpu, [B, Nt, C]);

    // src = image_embed (repeated) + dense [B, HW, C]
    const src0 = broadcastAdd(ctx, a.imageEmbed, a.dense, [B, HW, C]);
    const { hs, src } = this.transformer.forward(src0, a.imagePe.reshape([HW, C]), tokens);
    src0.release();
    tokens.release();

    // output_upscaling [B, g, g, C] -> [B, 2g, 2g, C/4] (+ feat_s1) -> [B, 4g, 4g, C/8] (+ feat_s0)
    const { dc1, ln1, dc2 } = this.upscaling;
    const u1 = convTranspose2d(ctx, src.reshape([B, g, g, C]), dc1.weight, dc1.bias, { add: hr?.[1] });
    src.release();
    const u2 = ln1.forward(u1);
    u1.release();
    const u3 = unary(ctx, u2, 'gelu');
    u2.release();
    const upscaled = convTranspose2d(ctx, u3, dc2.weight, dc2.bias, { activation: 'gelu', add: hr?.[0] }); // [B, 4g, 4g, C/8]
    u3.release();
    const m = 4 * g, C8 = C / 8, K = this.numMaskTokens, s = this.numLeadingTokens - 1;

    // hyper_in [B, K, C/8]: one MLP per mask token
    const hyperIn = ctx.empty([B, K, C8]);
    for (let i = 0; i < K; i++) {
      const tok = selectToken(ctx, hs, s + 1 + i); // [B, C]
      const h = this.hypernetworks[i]!.forward(tok); // [B, C/8]
      tok.release();
      copyRows(ctx, h, hyperIn, { rows: B, rowLen: C8, srcStride: C8, dstStride: K * C8, dstOffset: i * C8 });
      h.release();
    }
    // masks [B, K, m*m] = hyper_in · upscaledᵀ
    const allMasks = matmul(ctx, hyperIn, upscaled.reshape([B, m * m, C8]), { transposeB: true });
    hyperIn.release();
    upscaled.release();

    const iouTok = selectToken(ctx, hs, s); // [B, C]
    const iouRaw = this.iouHead.forward(iouTok); // [B, K], before the sigmoid
    iouTok.release();
    let objectScoreLogits: Tensor;
    if (this.objScoreHead) {
      const t0 = selectToken(ctx, hs, 0);
      objectScoreLogits = this.objScoreHead.forward(t0); // [B, 1]
      t0.release();
    } else {
      objectScoreLogits = ctx.upload(new Float32Array(B).fill(10), [B, 1]);
    }

    const mode: MaskSelectMode = a.multimaskOutput ? 'multimask' : this.opts.dynamicMultimaskViaStability ? 'dynamic' : 'single';
    const sel = selectMasks(ctx, allMasks.reshape([B, K, m, m]), iouRaw, {
      mode, sigmoid: this.opts.iouSigmoid, stabilityDelta: this.opts.stabilityDelta, stabilityThresh: this.opts.stabilityThresh,
    });
    allMasks.release();
    iouRaw.release();

    // sam_tokens_out: mask tokens 1..3 with multimask output (and use_multimask_token_for_obj_ptr), else token 0
    const multiTok = a.multimaskOutput && this.opts.useMultimaskTokenForObjPtr;
    const nTok = multiTok ? K - 1 : 1;
    const samTokensOut = copyRows(ctx, hs, ctx.empty([B, nTok, C]), {
      rows: B, rowLen: nTok * C, srcStride: Nt * C, srcOffset: (s + 1 + (multiTok ? 1 : 0)) * C, dstStride: nTok * C,
    });
    hs.release();
    return { masks: sel.masks, iouPred: sel.iou, samTokensOut, objectScoreLogits };
  }
}
