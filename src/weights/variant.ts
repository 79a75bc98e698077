/**
 * Which official variant a weights file is, and whether it fits a given config.
 *
 * What the tensors tell: the ViT width (image_encoder.trunk.patch_embed.proj.weight [E, 3, 16, 16]:
 * 192 for Ti, 384 for S). What they cannot tell:
 *   - the input size: the 512x512 and 1024 variants have exactly the same tensors (the ViT's
 *     pos_embed is stored at its pretraining size, [1, 197, E], and interpolated at run time);
 *   - the memory cross-attention: `_1` / `_2` (EfficientRoPEAttention1/2) pool with no parameters,
 *     so their state dicts are identical to the plain variant's.
 * Those two come from the caller (`imageSize`, `crossAttention`, or `variant`), else from the
 * file's metadata (`variant`, `image_size`), else from a variant name in the file's name (e.g.
 * ".../efficienttam_s_1.safetensors"), else the defaults: 1024 and the plain attention. The result
 * says which of its parts were guessed.
 */
import type { SafetensorsFile } from '../io/safetensors.js';
import { VARIANTS, preset, type EfficientTAMConfig, type Variant } from '../model/config.js';
import { buildManifest, diffManifest, manifest, type ManifestDiff, type TensorListing } from './manifest.js';

export type CrossAttention = 'full' | 'pool1' | 'pool2';

const TRUNK_WEIGHT = 'image_encoder.trunk.patch_embed.proj.weight';
const FAMILY_BY_WIDTH: Record<number, 'ti' | 's'> = { 192: 'ti', 384: 's' };

export class VariantError extends Error {
  override name = 'VariantError';
  constructor(
    message: string,
    /** the official variant the file looks like, when it fits one */
    readonly looksLike?: Variant,
    /** the file against the expected manifest */
    readonly diff?: ManifestDiff,
  ) {
    super(message);
  }
}

export interface DetectOptions {
  /** 1024 or 512: the input size (weights cannot tell). */
  imageSize?: number;
  /** the memory cross-attention (weights cannot tell): plain RoPE ('full'), `_1` ('pool1') or `_2` ('pool2'). */
  crossAttention?: CrossAttention;
  /** Take this variant (it is still checked against the file's tensors). */
  variant?: Variant;
}

export interface DetectedVariant {
  variant: Variant;
  config: EfficientTAMConfig;
  /** ViT width found in the file */
  trunkWidth: number;
  /** Where the input size and the cross-attention came from. */
  imageSizeFrom: 'option' | 'metadata' | 'file name' | 'default';
  crossAttentionFrom: 'option' | 'metadata' | 'file name' | 'default';
  /** Human-readable notes on what was guessed. */
  notes: string[];
}

const variantName = (family: 'ti' | 's', size: number, attn: CrossAttention): Variant => {
  if (size === 512 && attn !== 'full') {
    throw new VariantError(`there is no official 512x512 variant with the pooled cross-attention (${attn})`);
  }
  const suffix = size === 512 ? '_512x512' : attn === 'pool1' ? '_1' : attn === 'pool2' ? '_2' : '';
  return `efficienttam_${family}${suffix}` as Variant;
};

const sizeOf = (v: Variant): number => (v.endsWith('_512x512') ? 512 : 1024);
const attnOf = (v: Variant): CrossAttention => (v.endsWith('_1') ? 'pool1' : v.endsWith('_2') ? 'pool2' : 'full');

/** The longest official variant name inside `text` (e.g. a file name), if any. */
function variantIn(text: string | undefined): Variant | undefined {
  if (!text) return undefined;
  const base = text.split(/[\\/]/).pop()!.toLowerCase();
  // longest first, so "efficienttam_ti_512x512" wins over "efficienttam_ti"
  const sorted = [...VARIANTS].sort((a, b) => b.length - a.length);
  return sorted.find((v) => new RegExp(`${v}(?![a-z0-9])`).test(base));
}

/** The ViT width stored in a file, or undefined when it is not an EfficientTAM state dict. */
export function trunkWidth(file: TensorListing & { has(name: string): boolean }): number | undefined {
  return file.has(TRUNK_WEIGHT) ? file.info(TRUNK_WEIGHT).shape[0] : undefined;
}

function describeDiff(d: ManifestDiff, limit = 8): string {
  const parts: string[] = [];
  const list = (xs: string[]) => xs.slice(0, limit).map((x) => `  ${x}`).join('\n') + (xs.length > limit ? `\n  ... and ${xs.length - limit} more` : '');
  if (d.missing.length) parts.push(`${d.missing.length} missing:\n${list(d.missing)}`);
  if (d.misShaped.length) {
    parts.push(`${d.misShaped.length} with the wrong shape:\n` +
      list(d.misShaped.map((m) => `${m.name}: expected [${m.expected.join(', ')}], found [${m.found.join(', ')}]`)));
  }
  if (d.unexpected.length) parts.push(`${d.unexpected.length} not in the model:\n${list(d.unexpected)}`);
  return parts.join('\n');
}

/**
 * Tells the official variant of a weights file from its tensor names and shapes. Throws a
 * VariantError when the file is no official EfficientTAM checkpoint (saying what differs).
 */
export function detectVariant(file: SafetensorsFile, opts: DetectOptions = {}): DetectedVariant {
  const width = trunkWidth(file);
  if (width === undefined) {
    throw new VariantError(`${file.source}: not an EfficientTAM state dict (it has no "${TRUNK_WEIGHT}")`);
  }
  const family = FAMILY_BY_WIDTH[width];
  if (!family) {
    throw new VariantError(`${file.source}: the ViT width is ${width}, which is no official variant's ` +
      `(192: efficienttam_ti*, 384: efficienttam_s*)`);
  }
  const notes: string[] = [];
  const fromMeta = (file.metadata['variant'] as Variant | undefined);
  const metaVariant = fromMeta && (VARIANTS as readonly string[]).includes(fromMeta) ? fromMeta : undefined;
  const nameVariant = variantIn(file.source);

  let variant: Variant;
  let imageSizeFrom: DetectedVariant['imageSizeFrom'];
  let crossAttentionFrom: DetectedVariant['crossAttentionFrom'];
  if (opts.variant) {
    variant = opts.variant;
    imageSizeFrom = crossAttentionFrom = 'option';
  } else {
    let size: number;
    if (opts.imageSize !== undefined) { size = opts.imageSize; imageSizeFrom = 'option'; }
    else if (metaVariant) { size = sizeOf(metaVariant); imageSizeFrom = 'metadata'; }
    else if (file.metadata['image_size']) { size = Number(file.metadata['image_size']); imageSizeFrom = 'metadata'; }
    else if (nameVariant) { size = sizeOf(nameVariant); imageSizeFrom = 'file name'; }
    else { size = 1024; imageSizeFrom = 'default'; }
    if (size !== 512 && size !== 1024) throw new VariantError(`image size ${size}: the official variants take 1024 or 512`);

    let attn: CrossAttention;
    if (opts.crossAttention) { attn = opts.crossAttention; crossAttentionFrom = 'option'; }
    else if (metaVariant) { attn = attnOf(metaVariant); crossAttentionFrom = 'metadata'; }
    else if (nameVariant) { attn = attnOf(nameVariant); crossAttentionFrom = 'file name'; }
    else { attn = 'full'; crossAttentionFrom = 'default'; }
    if (size === 512 && attn !== 'full' && crossAttentionFrom !== 'option') { attn = 'full'; }
    variant = variantName(family, size, attn);
  }
  if (imageSizeFrom === 'default') {
    notes.push('the input size cannot be told from the weights (the 512x512 and 1024 variants have the same tensors); ' +
      'assumed 1024 — pass imageSize: 512 for efficienttam_*_512x512');
  }
  if (crossAttentionFrom === 'default') {
    notes.push('the memory cross-attention cannot be told from the weights (_1 and _2 pool without parameters, ' +
      'so their tensors equal the plain variant\'s); assumed the plain RoPE attention — pass crossAttention ' +
      '\'pool1\' / \'pool2\' (or variant) for efficienttam_*_1 / _2');
  }

  const diff = diffManifest(file, manifest(variant));
  if (diff.missing.length || diff.misShaped.length || diff.unexpected.length) {
    const looks = variantName(family, sizeOf(variant), attnOf(variant));
    const head = variant.startsWith(`efficienttam_${family}`)
      ? `${file.source}: the tensors do not match ${variant}`
      : `${file.source}: these weights look like ${looks} (trunk width ${width}), not ${variant} (trunk width ${preset(variant).image_encoder.trunk.embed_dim})`;
    throw new VariantError(`${head}:\n${describeDiff(diff)}`, variant.startsWith(`efficienttam_${family}`) ? undefined : looks, diff);
  }
  return { variant, config: preset(variant), trunkWidth: width, imageSizeFrom, crossAttentionFrom, notes };
}

/** The official variant whose preset this config is (same tensors, input size and attention), if any. */
export function officialVariantOf(cfg: EfficientTAMConfig): Variant | undefined {
  const target = cfg.memory_attention?.layer?.cross_attention?._target_ ?? '';
  const attn: CrossAttention = target.endsWith('EfficientRoPEAttention1') ? 'pool1'
    : target.endsWith('EfficientRoPEAttention2') ? 'pool2' : 'full';
  const m = buildManifest(cfg);
  for (const v of VARIANTS) {
    if (sizeOf(v) !== cfg.image_size || attnOf(v) !== attn) continue;
    const d = diffManifest(listing(m), manifest(v));
    if (!d.missing.length && !d.misShaped.length && !d.unexpected.length) return v;
  }
  return undefined;
}

function listing(m: { name: string; shape: number[] }[]): TensorListing {
  const map = new Map(m.map((e) => [e.name, e.shape]));
  return { names: () => [...map.keys()], info: (n) => ({ shape: map.get(n)! }) };
}

/**
 * Checks a weights file against the tensors a config's model has, before anything is uploaded.
 * Throws a VariantError when a tensor is missing or has the wrong shape; when the file is another
 * official variant, the message names it ("these weights look like efficienttam_ti (trunk width
 * 192), not efficienttam_s (trunk width 384)"). Tensors the model does not have are left to the
 * caller (the weight loader's `allowUnused`).
 */
export function checkWeightsForConfig(file: SafetensorsFile, cfg: EfficientTAMConfig): void {
  const diff = diffManifest(file, buildManifest(cfg));
  if (!diff.missing.length && !diff.misShaped.length) return;

  const want = officialVariantOf(cfg);
  const wantWidth = cfg.image_encoder.trunk.embed_dim;
  const wantName = want ?? `the given config (trunk width ${wantWidth}, image size ${cfg.image_size})`;
  const width = trunkWidth(file);
  // Does the file fit an official variant? Prefer one with the config's input size and attention.
  let looks: Variant | undefined;
  const family = width !== undefined ? FAMILY_BY_WIDTH[width] : undefined;
  if (family) {
    const candidates = VARIANTS.filter((v) => v.startsWith(`efficienttam_${family}`))
      .filter((v) => { const d = diffManifest(file, manifest(v)); return !d.missing.length && !d.misShaped.length && !d.unexpected.length; });
    const attn = attnOf(want ?? 'efficienttam_ti');
    looks = candidates.find((v) => sizeOf(v) === cfg.image_size && attnOf(v) === attn)
      ?? candidates.find((v) => sizeOf(v) === cfg.image_size) ?? candidates[0];
  }
  const head = looks
    ? `${file.source}: these weights look like ${looks} (trunk width ${width}), not ${wantName}${want ? ` (trunk width ${wantWidth})` : ''}`
    : `${file.source}: the weights do not fit ${wantName}`;
  throw new VariantError(`${head}\n${describeDiff({ ...diff, unexpected: [] })}`, looks, diff);
}
