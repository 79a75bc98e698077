/**
 * EfficientTAM model configuration, under the official parameter names (the `model` section of the
 * official YAML configs, as the goldens' `config.json` holds it, `_target_` keys included), and the
 * presets of the eight official checkpoints.
 *
 * The variants differ in: ViT width (Ti 192-d / 3 heads, S 384-d / 6 heads), input size (1024, or
 * 512 for `_512x512`) and the memory cross-attention (`RoPEAttention`, or the pooled
 * `EfficientRoPEAttention1` / `EfficientRoPEAttention2` for `_1` / `_2`).
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

export interface ImageEncoderConfig {
  scalp?: number;
  trunk: ViTConfig;
  neck: ViTDetNeckConfig;
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

export const VARIANTS = [
  'efficienttam_ti', 'efficienttam_ti_1', 'efficienttam_ti_2', 'efficienttam_ti_512x512',
  'efficienttam_s', 'efficienttam_s_1', 'efficienttam_s_2', 'efficienttam_s_512x512',
] as const;
export type Variant = (typeof VARIANTS)[number];

const ATTN = 'efficient_track_anything.modeling.sam.transformer.';

/** The resolved config of an official checkpoint (what the official builder makes of its YAML). */
export function preset(variant: Variant): EfficientTAMConfig {
  if (!(VARIANTS as readonly string[]).includes(variant)) {
    throw new Error(`Unknown variant '${variant}'; known: ${VARIANTS.join(', ')}`);
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

/** Checks the parts of a config (e.g. a golden's `config.json`) that this library relies on. */
export function validateConfig(cfg: unknown): EfficientTAMConfig {
  const c = cfg as EfficientTAMConfig;
  const need = (cond: unknown, what: string): void => {
    if (!cond) throw new Error(`Invalid EfficientTAM config: ${what}`);
  };
  need(c && typeof c === 'object', 'not an object');
  need(c.image_encoder?.trunk && c.image_encoder?.neck, 'image_encoder.trunk and image_encoder.neck are required');
  const t = c.image_encoder.trunk;
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
  // sizes that kernels are generated from: whole numbers, checked before any WGSL is made
  const whole = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  need(whole(n.d_model), 'image_encoder.neck.d_model must be a positive integer');
  if (c.memory_attention !== undefined) {
    need(whole(c.memory_attention.d_model) && whole(c.memory_attention.num_layers), 'memory_attention.d_model and num_layers must be positive integers');
  }
  if (c.memory_encoder !== undefined) need(whole(c.memory_encoder.out_dim), 'memory_encoder.out_dim must be a positive integer');
  if (c.num_maskmem !== undefined) need(whole(c.num_maskmem), 'num_maskmem must be a positive integer');
  return c;
}
