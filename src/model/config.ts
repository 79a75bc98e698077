/**
 * Model configuration, under the official parameter names (the `model` section of the official
 * YAML configs, as the goldens' `config.json` holds it, `_target_` keys included), and the presets
 * of the sixteen official checkpoints: eight EfficientTAM, eight SAM 2 / SAM 2.1.
 *
 * EfficientTAM variants differ in: ViT width (Ti 192-d / 3 heads, S 384-d / 6 heads), input size
 * (1024, or 512 for `_512x512`) and the memory cross-attention (`RoPEAttention`, or the pooled
 * `EfficientRoPEAttention1` / `EfficientRoPEAttention2` for `_1` / `_2`).
 *
 * SAM 2 / SAM 2.1 (`sam2_hiera_*`, `sam2.1_hiera_*`) are the same model with a Hiera trunk and an
 * FPN neck (whose stride-4 and stride-8 levels feed the mask decoder: use_high_res_features_in_sam);
 * the sizes differ in Hiera's width, heads, blocks per stage, global blocks and windows. SAM 2.1
 * adds three settings (no_obj_embed_spatial, proj_tpos_enc_in_obj_ptrs, use_signed_tpos_enc_to_obj_ptrs
 * with add_tpos_enc_to_obj_ptrs) and two tensors (no_obj_embed_spatial, obj_ptr_tpos_proj).
 */

export interface PositionEmbeddingSineConfig {
  num_pos_feats: number;
  temperature?: number;
  normalize?: boolean;
  scale?: number | null;
}

/** `efficient_track_anything.modeling.backbones.vitdet.ViT` */
export interface ViTConfig {
  patch_size: number;
  embed_dim: number;
  depth: number;
  num_heads: number;
  mlp_ratio: number;
  qkv_bias: boolean;
  window_size: number;
  window_block_indexes: number[];
  use_rel_pos?: boolean;
  use_abs_pos?: boolean;
  pretrain_img_size?: number;
  pretrain_use_cls_token?: boolean;
  drop_path_rate?: number;
}

/** `efficient_track_anything.modeling.backbones.image_encoder.ViTDetNeck` */
export interface ViTDetNeckConfig {
  position_encoding: PositionEmbeddingSineConfig;
  d_model: number;
  backbone_channel_list: number[];
  neck_norm?: string | null;
  kernel_size?: number;
}

/** `sam2.modeling.backbones.hieradet.Hiera` (unset fields take the class defaults, see `hieraSettings`) */
export interface HieraConfig {
  _target_?: string;
  embed_dim: number;
  num_heads: number;
  stages?: number[];
  q_pool?: number;
  q_stride?: number[];
  dim_mul?: number;
  head_mul?: number;
  window_pos_embed_bkg_spatial_size?: number[];
  window_spec?: number[];
  global_att_blocks?: number[];
  drop_path_rate?: number;
  return_interm_layers?: boolean;
}

/** `sam2.modeling.backbones.image_encoder.FpnNeck` */
export interface FpnNeckConfig {
  _target_?: string;
  position_encoding: PositionEmbeddingSineConfig;
  d_model: number;
  /** the trunk's stage widths, lowest resolution first (e.g. [768, 384, 192, 96]) */
  backbone_channel_list: number[];
  kernel_size?: number;
  stride?: number;
  padding?: number;
  fpn_interp_model?: string;
  fuse_type?: 'sum' | 'avg';
  /** levels (0 = stride 4) that receive the top-down path; default all */
  fpn_top_down_levels?: number[];
}

export interface ImageEncoderConfig {
  scalp?: number;
  trunk: ViTConfig | HieraConfig;
  neck: ViTDetNeckConfig | FpnNeckConfig;
}

/** Whether a trunk config is Hiera's (SAM 2) rather than the plain ViT's (EfficientTAM). */
export function isHiera(t: ViTConfig | HieraConfig): t is HieraConfig {
  const target = (t as { _target_?: string })._target_;
  if (typeof target === 'string') return /(^|\.)Hiera$/.test(target);
  return !('patch_size' in t) && ('stages' in t || 'window_spec' in t || 'global_att_blocks' in t);
}

/** g: the side of the features the model tracks with (stride 16: the ViT's patches, Hiera's third stage after scalp). */
export function featureSize(cfg: EfficientTAMConfig): number {
  const t = cfg.image_encoder.trunk;
  return cfg.image_size / (isHiera(t) ? 16 : t.patch_size);
}

/** Hiera's settings with the class defaults filled in, and what follows from them. */
export interface HieraSettings {
  embedDim: number;
  numHeads: number;
  stages: number[];
  qPool: number;
  qStride: [number, number];
  dimMul: number;
  headMul: number;
  bkgSize: [number, number];
  windowSpec: number[];
  globalAttBlocks: number[];
  /** the last block of each stage */
  stageEnds: number[];
  /** blocks that pool their queries (the first of stages 2 .. qPool + 1) */
  qPoolBlocks: number[];
  /** per block: input and output width, heads, window size (0 = global), whether it pools */
  blocks: { dim: number; dimOut: number; heads: number; window: number; pool: boolean }[];
  /** the stage outputs' widths, stride 4 first */
  stageDims: number[];
}

export function hieraSettings(t: HieraConfig): HieraSettings {
  const stages = t.stages ?? [2, 3, 16, 3];
  const windowSpec = t.window_spec ?? [8, 4, 14, 7];
  const qStride = (t.q_stride ?? [2, 2]) as [number, number];
  const qPool = t.q_pool ?? 3;
  const dimMul = t.dim_mul ?? 2.0, headMul = t.head_mul ?? 2.0;
  const globalAttBlocks = t.global_att_blocks ?? [12, 16, 20];
  const stageEnds = stages.map((_, i) => stages.slice(0, i + 1).reduce((a, b) => a + b, 0) - 1);
  const qPoolBlocks = stageEnds.slice(0, -1).map((e) => e + 1).slice(0, qPool);
  const blocks: HieraSettings['blocks'] = [];
  let dim = t.embed_dim, heads = t.num_heads, stage = 1;
  const depth = stages.reduce((a, b) => a + b, 0);
  for (let i = 0; i < depth; i++) {
    let dimOut = dim;
    // the window lags by a block: the first block of a stage still uses the previous stage's
    const window = globalAttBlocks.includes(i) ? 0 : windowSpec[stage - 1]!;
    if (stageEnds.includes(i - 1)) {
      dimOut = Math.floor(dim * dimMul);
      heads = Math.floor(heads * headMul);
      stage++;
    }
    blocks.push({ dim, dimOut, heads, window, pool: qPoolBlocks.includes(i) });
    dim = dimOut;
  }
  return {
    embedDim: t.embed_dim, numHeads: t.num_heads, stages, qPool, qStride, dimMul, headMul,
    bkgSize: (t.window_pos_embed_bkg_spatial_size ?? [14, 14]) as [number, number],
    windowSpec, globalAttBlocks, stageEnds, qPoolBlocks, blocks,
    stageDims: stageEnds.map((e) => blocks[e]!.dimOut),
  };
}

export interface AttentionConfig {
  _target_?: string;
  rope_theta?: number;
  feat_sizes?: number[];
  rope_k_repeat?: boolean;
  embedding_dim: number;
  num_heads: number;
  downsample_rate?: number;
  dropout?: number;
  kv_in_dim?: number;
}

export interface MemoryAttentionConfig {
  d_model: number;
  pos_enc_at_input: boolean;
  num_layers: number;
  layer: {
    activation: string;
    dim_feedforward: number;
    dropout?: number;
    pos_enc_at_attn: boolean;
    d_model: number;
    pos_enc_at_cross_attn_keys: boolean;
    pos_enc_at_cross_attn_queries: boolean;
    self_attention: AttentionConfig;
    cross_attention: AttentionConfig;
  };
}

export interface MemoryEncoderConfig {
  out_dim: number;
  in_dim?: number;
  position_encoding: PositionEmbeddingSineConfig;
  mask_downsampler: { kernel_size: number; stride: number; padding: number; embed_dim?: number; total_stride?: number };
  fuser: {
    layer: { dim: number; kernel_size: number; padding: number; layer_scale_init_value: number; use_dwconv: boolean };
    num_layers: number;
  };
}

/** The whole model: `EfficientTAMBase` / `EfficientTAMVideoPredictor` arguments. */
export interface EfficientTAMConfig {
  image_encoder: ImageEncoderConfig;
  memory_attention: MemoryAttentionConfig;
  memory_encoder: MemoryEncoderConfig;
  num_maskmem: number;
  image_size: number;
  sigmoid_scale_for_mem_enc: number;
  sigmoid_bias_for_mem_enc: number;
  use_mask_input_as_output_without_sam: boolean;
  directly_add_no_mem_embed: boolean;
  use_high_res_features_in_sam: boolean;
  multimask_output_in_sam: boolean;
  iou_prediction_use_sigmoid: boolean;
  use_obj_ptrs_in_encoder: boolean;
  add_tpos_enc_to_obj_ptrs: boolean;
  only_obj_ptrs_in_the_past_for_eval: boolean;
  pred_obj_scores: boolean;
  pred_obj_scores_mlp: boolean;
  fixed_no_obj_ptr: boolean;
  multimask_output_for_tracking: boolean;
  use_multimask_token_for_obj_ptr: boolean;
  multimask_min_pt_num: number;
  multimask_max_pt_num: number;
  use_mlp_for_obj_ptr_proj: boolean;
  sam_mask_decoder_extra_args?: {
    dynamic_multimask_via_stability: boolean;
    dynamic_multimask_stability_delta: number;
    dynamic_multimask_stability_thresh: number;
  };
  binarize_mask_from_pts_for_mem_enc?: boolean;
  fill_hole_area?: number;
  [extra: string]: unknown;
}

/** The eight official EfficientTAM checkpoints. */
export const VARIANTS = [
  'efficienttam_ti', 'efficienttam_ti_1', 'efficienttam_ti_2', 'efficienttam_ti_512x512',
  'efficienttam_s', 'efficienttam_s_1', 'efficienttam_s_2', 'efficienttam_s_512x512',
] as const;
export type EfficientTAMVariant = (typeof VARIANTS)[number];

/** The eight official SAM 2 and SAM 2.1 checkpoints (named as their .pt files). */
export const SAM2_VARIANTS = [
  'sam2_hiera_tiny', 'sam2_hiera_small', 'sam2_hiera_base_plus', 'sam2_hiera_large',
  'sam2.1_hiera_tiny', 'sam2.1_hiera_small', 'sam2.1_hiera_base_plus', 'sam2.1_hiera_large',
] as const;
export type Sam2Variant = (typeof SAM2_VARIANTS)[number];

/** Every official checkpoint this library has a preset for. */
export const ALL_VARIANTS = [...VARIANTS, ...SAM2_VARIANTS] as const;
export type Variant = EfficientTAMVariant | Sam2Variant;

export const isSam2Variant = (v: string): v is Sam2Variant => (SAM2_VARIANTS as readonly string[]).includes(v);
export const isVariant = (v: string): v is Variant => (ALL_VARIANTS as readonly string[]).includes(v);

const ATTN = 'efficient_track_anything.modeling.sam.transformer.';

/** The resolved config of an official checkpoint (what the official builder makes of its YAML). */
export function preset(variant: Variant): EfficientTAMConfig {
  if (isSam2Variant(variant)) return sam2Preset(variant);
  if (!(VARIANTS as readonly string[]).includes(variant)) {
    throw new Error(`Unknown variant '${variant}'; known: ${ALL_VARIANTS.join(', ')}`);
  }
  const small = variant.startsWith('efficienttam_s');
  const size = variant.endsWith('_512x512') ? 512 : 1024;
  const cross = variant.endsWith('_1') ? 'EfficientRoPEAttention1' : variant.endsWith('_2') ? 'EfficientRoPEAttention2' : 'RoPEAttention';
  const embed = small ? 384 : 192;
  const g = size / 16;
  return {
    image_encoder: {
      scalp: 0,
      trunk: {
        patch_size: 16, embed_dim: embed, depth: 12, num_heads: small ? 6 : 3, mlp_ratio: 4.0, qkv_bias: true,
        drop_path_rate: 0.0, use_rel_pos: false, window_size: 14, window_block_indexes: [0, 1, 3, 4, 6, 7, 9, 10],
      },
      neck: {
        position_encoding: { num_pos_feats: 256, normalize: true, scale: null, temperature: 10000 },
        d_model: 256, backbone_channel_list: [embed], neck_norm: 'LN',
      },
    },
    memory_attention: {
      d_model: 256, pos_enc_at_input: true, num_layers: 4,
      layer: {
        activation: 'relu', dim_feedforward: 2048, dropout: 0.1, pos_enc_at_attn: false, d_model: 256,
        pos_enc_at_cross_attn_keys: true, pos_enc_at_cross_attn_queries: false,
        self_attention: { _target_: ATTN + 'RoPEAttention', rope_theta: 10000.0, feat_sizes: [g, g], embedding_dim: 256, num_heads: 1, downsample_rate: 1, dropout: 0.1 },
        cross_attention: { _target_: ATTN + cross, rope_theta: 10000.0, feat_sizes: [g, g], rope_k_repeat: true, embedding_dim: 256, num_heads: 1, downsample_rate: 1, dropout: 0.1, kv_in_dim: 64 },
      },
    },
    memory_encoder: {
      out_dim: 64,
      position_encoding: { num_pos_feats: 64, normalize: true, scale: null, temperature: 10000 },
      mask_downsampler: { kernel_size: 3, stride: 2, padding: 1 },
      fuser: { layer: { dim: 256, kernel_size: 7, padding: 3, layer_scale_init_value: 1e-6, use_dwconv: true }, num_layers: 2 },
    },
    num_maskmem: 7,
    image_size: size,
    sigmoid_scale_for_mem_enc: 20.0,
    sigmoid_bias_for_mem_enc: -10.0,
    use_mask_input_as_output_without_sam: true,
    directly_add_no_mem_embed: true,
    use_high_res_features_in_sam: false,
    multimask_output_in_sam: true,
    iou_prediction_use_sigmoid: true,
    use_obj_ptrs_in_encoder: true,
    add_tpos_enc_to_obj_ptrs: false,
    only_obj_ptrs_in_the_past_for_eval: true,
    pred_obj_scores: true,
    pred_obj_scores_mlp: true,
    fixed_no_obj_ptr: true,
    multimask_output_for_tracking: true,
    use_multimask_token_for_obj_ptr: true,
    multimask_min_pt_num: 0,
    multimask_max_pt_num: 1,
    use_mlp_for_obj_ptr_proj: true,
    sam_mask_decoder_extra_args: {
      dynamic_multimask_via_stability: true,
      dynamic_multimask_stability_delta: 0.05,
      dynamic_multimask_stability_thresh: 0.98,
    },
    binarize_mask_from_pts_for_mem_enc: true,
    fill_hole_area: 8,
  };
}

/**
 * Hiera of each SAM 2 size, as the official sam2*_hiera_{t,s,b+,l}.yaml set it (the class defaults
 * written out: b+ takes them all but width and heads).
 */
const HIERA: Record<'tiny' | 'small' | 'base_plus' | 'large', HieraConfig> = {
  tiny: { embed_dim: 96, num_heads: 1, stages: [1, 2, 7, 2], global_att_blocks: [5, 7, 9], window_pos_embed_bkg_spatial_size: [7, 7], window_spec: [8, 4, 14, 7] },
  small: { embed_dim: 96, num_heads: 1, stages: [1, 2, 11, 2], global_att_blocks: [7, 10, 13], window_pos_embed_bkg_spatial_size: [7, 7], window_spec: [8, 4, 14, 7] },
  base_plus: { embed_dim: 112, num_heads: 2, stages: [2, 3, 16, 3], global_att_blocks: [12, 16, 20], window_pos_embed_bkg_spatial_size: [14, 14], window_spec: [8, 4, 14, 7] },
  large: { embed_dim: 144, num_heads: 2, stages: [2, 6, 36, 4], global_att_blocks: [23, 33, 43], window_pos_embed_bkg_spatial_size: [7, 7], window_spec: [8, 4, 16, 8] },
};

const SAM2_ATTN = 'sam2.modeling.sam.transformer.';

/**
 * A SAM 2 / SAM 2.1 checkpoint's resolved config: the official YAML's `model` section with what
 * `build_sam2_video_predictor` adds (stability fallback, binarised clicked masks, fill_hole_area 8).
 * Besides the image encoder, the SAM 2 YAMLs differ from efficienttam_ti.yaml only in
 * use_high_res_features_in_sam (and compile_image_encoder); SAM 2.1 also in the four
 * object-pointer / no-object settings below. The memory modules are the same.
 */
function sam2Preset(variant: Sam2Variant): EfficientTAMConfig {
  const v21 = variant.startsWith('sam2.1_');
  const size = variant.replace(/^sam2(\.1)?_hiera_/, '') as keyof typeof HIERA;
  const trunk = { _target_: 'sam2.modeling.backbones.hieradet.Hiera', ...HIERA[size] };
  const E = trunk.embed_dim;
  const base = preset('efficienttam_ti'); // 1024, the plain RoPE cross-attention
  const layer = base.memory_attention.layer;
  const sam2Attn = (a: AttentionConfig): AttentionConfig => ({ ...a, _target_: SAM2_ATTN + 'RoPEAttention' });
  return {
    ...base,
    _target_: 'sam2.sam2_video_predictor.SAM2VideoPredictor',
    image_encoder: {
      scalp: 1,
      trunk,
      neck: {
        _target_: 'sam2.modeling.backbones.image_encoder.FpnNeck',
        position_encoding: { num_pos_feats: 256, normalize: true, scale: null, temperature: 10000 },
        d_model: 256, backbone_channel_list: [8 * E, 4 * E, 2 * E, E], fpn_top_down_levels: [2, 3], fpn_interp_model: 'nearest',
      },
    },
    memory_attention: { ...base.memory_attention, layer: { ...layer, self_attention: sam2Attn(layer.self_attention), cross_attention: sam2Attn(layer.cross_attention) } },
    use_high_res_features_in_sam: true,
    add_tpos_enc_to_obj_ptrs: v21,
    ...(v21 ? { no_obj_embed_spatial: true, proj_tpos_enc_in_obj_ptrs: true, use_signed_tpos_enc_to_obj_ptrs: true } : {}),
    compile_image_encoder: false,
  };
}

/**
 * A config at another input size (a multiple of 32; e.g. SAM 2 at 512): the image size and the
 * memory attention's RoPE tables (one entry per stride-16 feature) follow it; no weight depends on it.
 */
export function withImageSize(cfg: EfficientTAMConfig, size: number): EfficientTAMConfig {
  const c = structuredClone(cfg);
  c.image_size = size;
  const g = size / 16;
  for (const a of [c.memory_attention.layer.self_attention, c.memory_attention.layer.cross_attention]) {
    if (a.feat_sizes) a.feat_sizes = [g, g];
  }
  return c;
}

/** Checks the parts of a config (e.g. a golden's `config.json`) that this library relies on. */
export function validateConfig(cfg: unknown): EfficientTAMConfig {
  const c = cfg as EfficientTAMConfig;
  const need = (cond: unknown, what: string): void => {
    if (!cond) throw new Error(`Invalid model config: ${what}`);
  };
  need(c && typeof c === 'object', 'not an object');
  need(c.image_encoder?.trunk && c.image_encoder?.neck, 'image_encoder.trunk and image_encoder.neck are required');
  const t = c.image_encoder.trunk;
  if (isHiera(t)) {
    validateHiera(c, t, need);
  } else {
    for (const k of ['patch_size', 'embed_dim', 'depth', 'num_heads', 'mlp_ratio', 'window_size'] as const) {
      need(typeof t[k] === 'number' && t[k] > 0, `image_encoder.trunk.${k} must be a positive number`);
    }
    need(t.embed_dim % t.num_heads === 0, 'image_encoder.trunk.embed_dim must be divisible by num_heads');
    need(!t.use_rel_pos, 'relative position embeddings (use_rel_pos) are not used by EfficientTAM and not supported');
    for (const k of ['patch_size', 'embed_dim', 'depth', 'num_heads', 'window_size'] as const) {
      need(Number.isInteger(t[k]), `image_encoder.trunk.${k} must be an integer`);
    }
    need(Number.isInteger(c.image_size) && c.image_size > 0 && c.image_size % t.patch_size === 0,
      'image_size must be a positive integer multiple of the patch size');
    const n = c.image_encoder.neck;
    need(n.backbone_channel_list?.length === 1 && n.backbone_channel_list[0] === t.embed_dim,
      'image_encoder.neck.backbone_channel_list must be [trunk.embed_dim] (a plain ViT has one output)');
    need(!c.use_high_res_features_in_sam, 'use_high_res_features_in_sam needs the multi-level (Hiera + FPN) image encoder of SAM 2');
  }
  // sizes that kernels are generated from: whole numbers, checked before any WGSL is made
  const whole = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  need(whole(c.image_encoder.neck.d_model), 'image_encoder.neck.d_model must be a positive integer');
  if (c.memory_attention !== undefined) {
    need(whole(c.memory_attention.d_model) && whole(c.memory_attention.num_layers), 'memory_attention.d_model and num_layers must be positive integers');
  }
  if (c.memory_encoder !== undefined) need(whole(c.memory_encoder.out_dim), 'memory_encoder.out_dim must be a positive integer');
  if (c.num_maskmem !== undefined) need(whole(c.num_maskmem), 'num_maskmem must be a positive integer');
  return c;
}

/** What the SAM 2 image encoder (Hiera, FpnNeck, scalp) and the high-resolution decoder need. */
function validateHiera(c: EfficientTAMConfig, t: HieraConfig, need: (cond: unknown, what: string) => void): void {
  for (const k of ['embed_dim', 'num_heads'] as const) {
    need(Number.isInteger(t[k]) && t[k] > 0, `image_encoder.trunk.${k} must be a positive integer`);
  }
  need(Number.isInteger(c.image_size) && c.image_size > 0 && c.image_size % 32 === 0,
    `image_size ${c.image_size} must be a positive integer multiple of 32 (Hiera pools three times after a stride-4 patch embedding)`);
  const h = hieraSettings(t);
  need(h.stages.length === 4 && h.stages.every((n) => Number.isInteger(n) && n > 0), 'image_encoder.trunk.stages must be 4 positive block counts');
  need(h.windowSpec.length === h.stages.length, 'image_encoder.trunk.window_spec needs one window size per stage');
  need(h.qStride[0] === 2 && h.qStride[1] === 2, 'image_encoder.trunk.q_stride other than [2, 2] is not supported');
  need(h.qPool === 3, 'image_encoder.trunk.q_pool other than 3 (pooling at every stage change) is not supported');
  need(h.bkgSize.length === 2 && h.bkgSize.every((n) => n > 0), 'image_encoder.trunk.window_pos_embed_bkg_spatial_size must be [h, w]');
  for (const b of h.blocks) {
    need(b.dimOut % b.heads === 0, `Hiera: a block of width ${b.dimOut} cannot have ${b.heads} heads`);
    need(!b.pool || b.window % 2 === 0, `Hiera: a pooling block's window (${b.window}) must be even`);
  }
  const S = c.image_size;
  need((S / 4) % h.windowSpec[0]! === 0, `image_size / 4 (${S / 4}) must be a multiple of the first window size ${h.windowSpec[0]} (the window position embedding is tiled)`);
  const n = c.image_encoder.neck as FpnNeckConfig;
  const rev = [...h.stageDims].reverse();
  need(Array.isArray(n.backbone_channel_list) && n.backbone_channel_list.length === 4 && n.backbone_channel_list.every((d, i) => d === rev[i]),
    `image_encoder.neck.backbone_channel_list must be the trunk's stage widths, lowest resolution first: [${rev.join(', ')}]`);
  need(typeof n.d_model === 'number' && n.d_model > 0 && n.d_model % 8 === 0, 'image_encoder.neck.d_model must be a positive multiple of 8');
  need((n.kernel_size ?? 1) === 1 && (n.stride ?? 1) === 1 && (n.padding ?? 0) === 0, 'FpnNeck: only 1x1 lateral convolutions (kernel_size 1, stride 1, padding 0) are supported');
  need((n.fpn_interp_model ?? 'bilinear') === 'nearest', `FpnNeck: fpn_interp_model '${n.fpn_interp_model ?? 'bilinear'}' is not supported (the official configs use 'nearest')`);
  need(['sum', 'avg'].includes(n.fuse_type ?? 'sum'), `FpnNeck: fuse_type must be 'sum' or 'avg'`);
  need(n.position_encoding?.num_pos_feats === n.d_model, 'FpnNeck: position_encoding.num_pos_feats must equal d_model');
  // scalp 1 drops the stride-32 level: the stride-16 level is the features the model tracks with
  need((c.image_encoder.scalp ?? 0) === 1, 'image_encoder.scalp must be 1 (SAM 2 decodes from the stride-16 level)');
  need(c.use_high_res_features_in_sam, 'use_high_res_features_in_sam false with a Hiera trunk is not supported (every SAM 2 config sets it)');
}
