/**
 * Manifests: the complete list of tensors (name and shape) of an official EfficientTAM, SAM 2 or
 * SAM 2.1 state dict,
 * generated from a model config by walking the official module tree the way PyTorch's
 * `state_dict()` does (a module's own parameters and buffers, then its children in the order
 * they were registered).
 *
 * The tree, as `EfficientTAMBase` builds it (all names below are relative to the model):
 *
 *   maskmem_tpos_enc [num_maskmem, 1, 1, mem_dim], no_mem_embed / no_mem_pos_enc [1, 1, C],
 *   no_obj_ptr [1, C] (pred_obj_scores and use_obj_ptrs_in_encoder),
 *   no_obj_embed_spatial [1, mem_dim] (no_obj_embed_spatial)
 *   image_encoder.trunk      ViT: patch_embed.proj (conv p x p), pos_embed [1, (224/p)^2 + cls, E],
 *                            blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.layers.0/1, ls1/ls2}
 *                            or Hiera (SAM 2): pos_embed [1, E, bh, bw], pos_embed_window [1, E, w0, w0],
 *                            patch_embed.proj (conv 7x7), blocks.i.{norm1, attn.qkv, attn.proj, norm2,
 *                            mlp.layers.0/1, proj (at a width change)}
 *   image_encoder.neck       ViTDetNeck: convs.i.{conv_1x1, norm_0, conv_3x3, norm_1} per backbone channel,
 *                            or FpnNeck: convs.i.conv (1x1) per backbone channel
 *   mask_downsample          conv 4x4 (use_obj_ptrs_in_encoder)
 *   memory_attention         layers.i.{self_attn, cross_attn_image}.{q,k,v,out}_proj,
 *                            linear1/2, norm1/2/3; norm
 *   memory_encoder           mask_downsampler.encoder.{conv, LayerNorm2d, act}* + conv 1x1,
 *                            pix_feat_proj, fuser.{proj?, layers.i.{dwconv, norm, pwconv1/2, gamma}},
 *                            out_proj (when out_dim != in_dim)
 *   sam_prompt_encoder       pe_layer (buffer), point_embeddings.0-3, not_a_point_embed,
 *                            mask_downscaling.{0,1,3,4,6}, no_mask_embed
 *   sam_mask_decoder         transformer (TwoWayTransformer, depth 2, 8 heads, mlp 2048), iou_token,
 *                            mask_tokens, obj_score_token, output_upscaling.{0,1,3}, conv_s0/conv_s1 (SAM 2),
 *                            output_hypernetworks_mlps.i, iou_prediction_head, pred_obj_score_head
 *   obj_ptr_proj             Linear or 3-layer MLP (use_obj_ptrs_in_encoder)
 *   obj_ptr_tpos_proj        Linear C -> mem_dim (proj_tpos_enc_in_obj_ptrs)
 *
 * Things that hold no tensors: activations, dropout, position encodings other than the prompt
 * encoder's random one, and the RoPE tables (`freqs_cis` is a plain attribute, not a buffer).
 * `EfficientRoPEAttention1/2` (the `_1` / `_2` variants) pool keys and values with a parameter-
 * free average pool, so their state dicts are the same as `RoPEAttention`'s: a checkpoint does
 * not tell which of the three attentions it was trained with.
 */
import {
  ALL_VARIANTS, VARIANTS, hieraSettings, isHiera, preset,
  type AttentionConfig, type EfficientTAMConfig, type FpnNeckConfig, type HieraConfig, type ViTConfig, type ViTDetNeckConfig, type Variant,
} from '../model/config.js';

/** One tensor of a state dict. */
export interface ManifestEntry {
  name: string;
  shape: number[];
}

/** The tensors of a state dict, in `state_dict()` order. */
export type Manifest = ManifestEntry[];

/** Collects entries under a growing name prefix. */
class Builder {
  constructor(readonly out: ManifestEntry[] = [], readonly prefix = '') {}

  sub(name: string | number): Builder {
    return new Builder(this.out, `${this.prefix}${name}.`);
  }

  param(name: string, shape: number[]): void {
    if (shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new Error(`manifest: ${this.prefix}${name} would have the shape [${shape}]; the config is inconsistent`);
    }
    this.out.push({ name: this.prefix + name, shape });
  }

  /** torch.nn.Linear(inDim, outDim) */
  linear(name: string | number, inDim: number, outDim: number, bias = true): void {
    const m = this.sub(name);
    m.param('weight', [outDim, inDim]);
    if (bias) m.param('bias', [outDim]);
  }

  /** torch.nn.Conv2d(inCh, outCh, k, groups) */
  conv(name: string | number, inCh: number, outCh: number, k: number, opts: { groups?: number; bias?: boolean } = {}): void {
    const m = this.sub(name);
    m.param('weight', [outCh, inCh / (opts.groups ?? 1), k, k]);
    if (opts.bias ?? true) m.param('bias', [outCh]);
  }

  /** torch.nn.ConvTranspose2d(inCh, outCh, k): weight [in, out, k, k] */
  convTranspose(name: string | number, inCh: number, outCh: number, k: number): void {
    const m = this.sub(name);
    m.param('weight', [inCh, outCh, k, k]);
    m.param('bias', [outCh]);
  }

  /** torch.nn.LayerNorm(dim) or the reference's LayerNorm2d(dim) */
  norm(name: string | number, dim: number): void {
    const m = this.sub(name);
    m.param('weight', [dim]);
    m.param('bias', [dim]);
  }

  /** torch.nn.Embedding(n, dim) */
  embedding(name: string | number, n: number, dim: number): void {
    this.sub(name).param('weight', [n, dim]);
  }

  /** The reference's MLP: `layers.i` Linear, input -> hidden x (n-1) -> output. */
  mlp(name: string | number, inDim: number, hidden: number, outDim: number, numLayers: number): void {
    const m = this.sub(name).sub('layers');
    const dims = [inDim, ...Array<number>(numLayers - 1).fill(hidden), outDim];
    for (let i = 0; i < numLayers; i++) m.linear(i, dims[i]!, dims[i + 1]!);
  }

  /** sam.transformer.Attention (and RoPEAttention, EfficientRoPEAttention1/2: no extra tensors). */
  attention(name: string, dim: number, downsampleRate = 1, kvInDim?: number): void {
    const m = this.sub(name);
    const internal = dim / downsampleRate;
    const kv = kvInDim ?? dim;
    m.linear('q_proj', dim, internal);
    m.linear('k_proj', kv, internal);
    m.linear('v_proj', kv, internal);
    m.linear('out_proj', internal, dim);
  }
}

// ------------------------------------------------------------------------------------------------
// the parts
// ------------------------------------------------------------------------------------------------

/** backbones.vitdet.ViT */
function vit(b: Builder, cfg: EfficientTAMConfig): void {
  const t = cfg.image_encoder.trunk as ViTConfig & { init_values?: number | null; in_chans?: number };
  const E = t.embed_dim, p = t.patch_size;
  b.conv('patch_embed.proj', t.in_chans ?? 3, E, p);
  if (t.use_abs_pos ?? true) {
    const pre = Math.floor((t.pretrain_img_size ?? 224) / p);
    b.param('pos_embed', [1, pre * pre + ((t.pretrain_use_cls_token ?? true) ? 1 : 0), E]);
  }
  const headDim = E / t.num_heads;
  const windows = new Set(t.window_block_indexes);
  for (let i = 0; i < t.depth; i++) {
    const blk = b.sub('blocks').sub(i);
    blk.norm('norm1', E);
    const attn = blk.sub('attn');
    attn.linear('qkv', E, 3 * E, t.qkv_bias);
    attn.linear('proj', E, E);
    if (t.use_rel_pos) {
      // input_size is the window (window blocks) or the whole feature map (global blocks)
      const size = windows.has(i) ? t.window_size : Math.floor(cfg.image_size / p);
      attn.param('rel_pos_h', [2 * size - 1, headDim]);
      attn.param('rel_pos_w', [2 * size - 1, headDim]);
    }
    if (t.init_values) blk.sub('ls1').param('gamma', [E]);
    blk.norm('norm2', E);
    blk.mlp('mlp', E, Math.floor(E * t.mlp_ratio), E, 2);
    if (t.init_values) blk.sub('ls2').param('gamma', [E]);
  }
}

/** sam2 backbones.hieradet.Hiera */
function hiera(b: Builder, t: HieraConfig): void {
  const h = hieraSettings(t);
  const E = h.embedDim;
  b.param('pos_embed', [1, E, ...h.bkgSize]);
  b.param('pos_embed_window', [1, E, h.windowSpec[0]!, h.windowSpec[0]!]);
  b.conv('patch_embed.proj', 3, E, 7);
  h.blocks.forEach(({ dim, dimOut }, i) => {
    const blk = b.sub('blocks').sub(i);
    blk.norm('norm1', dim);
    blk.linear('attn.qkv', dim, 3 * dimOut);
    blk.linear('attn.proj', dimOut, dimOut);
    blk.norm('norm2', dimOut);
    blk.mlp('mlp', dimOut, Math.floor(dimOut * 4.0), dimOut, 2);
    if (dim !== dimOut) blk.linear('proj', dim, dimOut);
  });
}

/** sam2 backbones.image_encoder.FpnNeck: a lateral conv per backbone channel */
function fpnNeck(b: Builder, n: FpnNeckConfig): void {
  const k = n.kernel_size ?? 1;
  n.backbone_channel_list.forEach((dim, i) => b.sub('convs').sub(i).conv('conv', dim, n.d_model, k));
}

/** backbones.image_encoder.ViTDetNeck */
function neck(b: Builder, cfg: EfficientTAMConfig): void {
  const n = cfg.image_encoder.neck as ViTDetNeckConfig;
  const d = n.d_model;
  const useNorm = n.neck_norm !== null && n.neck_norm !== undefined;
  n.backbone_channel_list.forEach((dim, i) => {
    const c = b.sub('convs').sub(i);
    c.conv('conv_1x1', dim, d, 1, { bias: !useNorm });
    if (useNorm) c.norm('norm_0', d);
    c.conv('conv_3x3', d, d, 3, { bias: !useNorm });
    if (useNorm) c.norm('norm_1', d);
  });
}

function attentionFromConfig(b: Builder, name: string, a: AttentionConfig): void {
  b.attention(name, a.embedding_dim, a.downsample_rate ?? 1, a.kv_in_dim ?? undefined);
}

/** memory_attention.MemoryAttention */
function memoryAttention(b: Builder, cfg: EfficientTAMConfig): void {
  const m = cfg.memory_attention;
  const l = m.layer;
  for (let i = 0; i < m.num_layers; i++) {
    const layer = b.sub('layers').sub(i);
    attentionFromConfig(layer, 'self_attn', l.self_attention);
    attentionFromConfig(layer, 'cross_attn_image', l.cross_attention);
    layer.linear('linear1', l.d_model, l.dim_feedforward);
    layer.linear('linear2', l.dim_feedforward, l.d_model);
    layer.norm('norm1', l.d_model);
    layer.norm('norm2', l.d_model);
    layer.norm('norm3', l.d_model);
  }
  b.norm('norm', m.d_model);
}

/** memory_encoder.MemoryEncoder; returns mem_dim */
function memoryEncoder(b: Builder, cfg: EfficientTAMConfig): void {
  const me = cfg.memory_encoder;
  const inDim = me.in_dim ?? 256;
  // MaskDownSampler: log_stride(total_stride) x (conv k/stride, LayerNorm2d, activation), then a 1x1 conv
  const ds = me.mask_downsampler;
  const stride = ds.stride ?? 4, total = ds.total_stride ?? 16;
  const numLayers = Math.floor(Math.log2(total) / Math.log2(stride));
  if (stride ** numLayers !== total) throw new Error(`manifest: mask_downsampler total_stride ${total} is not a power of stride ${stride}`);
  const enc = b.sub('mask_downsampler').sub('encoder');
  let cin = 1, cout = 1, idx = 0;
  for (let i = 0; i < numLayers; i++) {
    cout = cin * stride * stride;
    enc.conv(idx, cin, cout, ds.kernel_size ?? 4);
    enc.norm(idx + 1, cout);
    idx += 3; // the activation holds nothing
    cin = cout;
  }
  enc.conv(idx, cout, ds.embed_dim ?? 256, 1);

  b.conv('pix_feat_proj', inDim, inDim, 1);

  const f = me.fuser as MemoryEncoderFuser;
  const fuser = b.sub('fuser');
  if (f.input_projection) fuser.conv('proj', f.dim!, f.dim!, 1);
  const L = f.layer;
  for (let i = 0; i < f.num_layers; i++) {
    const blk = fuser.sub('layers').sub(i);
    blk.conv('dwconv', L.dim, L.dim, L.kernel_size ?? 7, { groups: (L.use_dwconv ?? true) ? L.dim : 1 });
    blk.norm('norm', L.dim);
    blk.linear('pwconv1', L.dim, 4 * L.dim);
    blk.linear('pwconv2', 4 * L.dim, L.dim);
    if ((L.layer_scale_init_value ?? 1e-6) > 0) blk.param('gamma', [L.dim]);
  }
  if (me.out_dim !== inDim) b.conv('out_proj', inDim, me.out_dim, 1);
}

type MemoryEncoderFuser = EfficientTAMConfig['memory_encoder']['fuser'] & { dim?: number; input_projection?: boolean };

/** sam.prompt_encoder.PromptEncoder (mask_in_chans = 16, as EfficientTAMBase builds it) */
function promptEncoder(b: Builder, C: number): void {
  const maskInChans = 16;
  b.sub('pe_layer').param('positional_encoding_gaussian_matrix', [2, C / 2]);
  for (let i = 0; i < 4; i++) b.sub('point_embeddings').embedding(i, 1, C);
  b.embedding('not_a_point_embed', 1, C);
  const md = b.sub('mask_downscaling');
  md.conv(0, 1, maskInChans / 4, 2);
  md.norm(1, maskInChans / 4);
  md.conv(3, maskInChans / 4, maskInChans, 2);
  md.norm(4, maskInChans);
  md.conv(6, maskInChans, C, 1);
  b.embedding('no_mask_embed', 1, C);
}

/** sam.mask_decoder.MaskDecoder with its TwoWayTransformer, as EfficientTAMBase builds them */
function maskDecoder(b: Builder, cfg: EfficientTAMConfig, C: number): void {
  const depth = 2, mlpDim = 2048, downsample = 2, numMaskTokens = 3 + 1, iouHidden = 256;
  const tr = b.sub('transformer');
  for (let i = 0; i < depth; i++) {
    const l = tr.sub('layers').sub(i);
    l.attention('self_attn', C);
    l.norm('norm1', C);
    l.attention('cross_attn_token_to_image', C, downsample);
    l.norm('norm2', C);
    l.mlp('mlp', C, mlpDim, C, 2);
    l.norm('norm3', C);
    l.norm('norm4', C);
    l.attention('cross_attn_image_to_token', C, downsample);
  }
  tr.attention('final_attn_token_to_image', C, downsample);
  tr.norm('norm_final_attn', C);

  b.embedding('iou_token', 1, C);
  b.embedding('mask_tokens', numMaskTokens, C);
  if (cfg.pred_obj_scores) b.embedding('obj_score_token', 1, C);
  const up = b.sub('output_upscaling');
  up.convTranspose(0, C, C / 4, 2);
  up.norm(1, C / 4);
  up.convTranspose(3, C / 4, C / 8, 2);
  // EfficientTAMBase sets use_high_res_features_in_sam to False whatever the config says, so
  // conv_s0 / conv_s1 exist only in SAM 2 (a Hiera trunk).
  if (cfg.use_high_res_features_in_sam && isHiera(cfg.image_encoder.trunk)) {
    b.conv('conv_s0', C, C / 8, 1);
    b.conv('conv_s1', C, C / 4, 1);
  }
  for (let i = 0; i < numMaskTokens; i++) b.sub('output_hypernetworks_mlps').mlp(i, C, C, C / 8, 3);
  b.mlp('iou_prediction_head', C, iouHidden, numMaskTokens, 3);
  if (cfg.pred_obj_scores) {
    if (cfg.pred_obj_scores_mlp) b.mlp('pred_obj_score_head', C, C, 1, 3);
    else b.linear('pred_obj_score_head', C, 1);
  }
}

/**
 * The manifest of the state dict that the official `EfficientTAMBase` (or the video predictor
 * built on it) has for this config: every parameter and persistent buffer, in state_dict order.
 */
export function buildManifest(cfg: EfficientTAMConfig): Manifest {
  const b = new Builder();
  const C = cfg.image_encoder.neck.d_model; // hidden_dim
  const inDim = cfg.memory_encoder.in_dim ?? 256;
  const memDim = cfg.memory_encoder.out_dim !== inDim ? cfg.memory_encoder.out_dim : C;
  const extra = cfg as EfficientTAMConfig & { proj_tpos_enc_in_obj_ptrs?: boolean; no_obj_embed_spatial?: boolean };

  // EfficientTAMBase's own parameters come first in state_dict(), then its children.
  b.param('maskmem_tpos_enc', [cfg.num_maskmem, 1, 1, memDim]);
  b.param('no_mem_embed', [1, 1, C]);
  b.param('no_mem_pos_enc', [1, 1, C]);
  if (cfg.pred_obj_scores && cfg.use_obj_ptrs_in_encoder) b.param('no_obj_ptr', [1, C]);
  if (extra.no_obj_embed_spatial) b.param('no_obj_embed_spatial', [1, memDim]);

  const ie = b.sub('image_encoder');
  const trunk = cfg.image_encoder.trunk;
  if (isHiera(trunk)) {
    hiera(ie.sub('trunk'), trunk);
    fpnNeck(ie.sub('neck'), cfg.image_encoder.neck as FpnNeckConfig);
  } else {
    vit(ie.sub('trunk'), cfg);
    neck(ie.sub('neck'), cfg);
  }
  if (cfg.use_obj_ptrs_in_encoder) b.conv('mask_downsample', 1, 1, 4);
  memoryAttention(b.sub('memory_attention'), cfg);
  memoryEncoder(b.sub('memory_encoder'), cfg);
  promptEncoder(b.sub('sam_prompt_encoder'), C);
  maskDecoder(b.sub('sam_mask_decoder'), cfg, C);
  if (cfg.use_obj_ptrs_in_encoder) {
    if (cfg.use_mlp_for_obj_ptr_proj) b.mlp('obj_ptr_proj', C, C, C, 3);
    else b.linear('obj_ptr_proj', C, C);
  }
  if (extra.proj_tpos_enc_in_obj_ptrs) b.linear('obj_ptr_tpos_proj', C, memDim);
  return b.out;
}

const cache = new Map<Variant, Manifest>();

/** The manifest of an official checkpoint. */
export function manifest(variant: Variant): Manifest {
  let m = cache.get(variant);
  if (!m) {
    m = buildManifest(preset(variant));
    cache.set(variant, m);
  }
  return m.map((e) => ({ name: e.name, shape: [...e.shape] }));
}

/** Number of values in a manifest (the model's parameter count). */
export const manifestNumel = (m: Manifest): number =>
  m.reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);

// ------------------------------------------------------------------------------------------------
// comparing a file with a manifest
// ------------------------------------------------------------------------------------------------

/** What a file holds, as far as a manifest is concerned. */
export interface TensorListing {
  names(): string[];
  info(name: string): { shape: number[] };
}

export interface ManifestDiff {
  /** in the manifest, not in the file */
  missing: string[];
  /** in both, with different shapes */
  misShaped: { name: string; expected: number[]; found: number[] }[];
  /** in the file, not in the manifest */
  unexpected: string[];
}

export function diffManifest(file: TensorListing, m: Manifest): ManifestDiff {
  const names = new Set(file.names());
  const known = new Set<string>();
  const missing: string[] = [];
  const misShaped: ManifestDiff['misShaped'] = [];
  for (const e of m) {
    known.add(e.name);
    if (!names.has(e.name)) { missing.push(e.name); continue; }
    const found = file.info(e.name).shape;
    if (found.length !== e.shape.length || found.some((d, i) => d !== e.shape[i])) {
      misShaped.push({ name: e.name, expected: [...e.shape], found: [...found] });
    }
  }
  const unexpected = [...names].filter((n) => !known.has(n));
  return { missing, misShaped, unexpected };
}

export const diffIsEmpty = (d: ManifestDiff): boolean =>
  d.missing.length === 0 && d.misShaped.length === 0 && d.unexpected.length === 0;

/** The official variants (EfficientTAM, SAM 2, SAM 2.1), for callers that iterate over them. */
export const OFFICIAL_VARIANTS: readonly Variant[] = ALL_VARIANTS;
/** The eight EfficientTAM variants. */
export const EFFICIENTTAM_VARIANTS: readonly Variant[] = VARIANTS;
