/**
 * Which official variant a weights file is, and whether it fits a given config.
 *
 * SAM 2 / SAM 2.1 (a Hiera trunk: `image_encoder.trunk.pos_embed_window`): the tensors tell
 * everything but the input size. The size is Hiera's width (96: tiny and small, which differ in
 * blocks, 12 or 16; 112: base_plus; 144: large); SAM 2.1 has two tensors SAM 2 lacks,
 * `no_obj_embed_spatial` and `obj_ptr_tpos_proj` (its third new setting,
 * use_signed_tpos_enc_to_obj_ptrs, has no tensor and comes with them in every SAM 2.1 config).
 * A file with one of the two and not the other is neither, and is reported as such. The input
 * size is 1024 (every official config) unless `imageSize` says otherwise (any multiple of 32: no
 * weight depends on it).
 *
 * EfficientTAM: what the tensors tell: the ViT width (image_encoder.trunk.patch_embed.proj.weight [E, 3, 16, 16]:
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
import {
  ALL_VARIANTS, SAM2_VARIANTS, VARIANTS, isHiera, isSam2Variant, preset, withImageSize,
  type EfficientTAMConfig, type EfficientTAMVariant, type Sam2Variant, type Variant,
} from '../model/config.js';
import { buildManifest, diffManifest, manifest, type ManifestDiff, type TensorListing } from './manifest.js';

export type CrossAttention = 'full' | 'pool1' | 'pool2';

const TRUNK_WEIGHT = 'image_encoder.trunk.patch_embed.proj.weight';
const FAMILY_BY_WIDTH: Record<number, 'ti' | 's'> = { 192: 'ti', 384: 's' };
/** Only Hiera (SAM 2) has it. */
const HIERA_WEIGHT = 'image_encoder.trunk.pos_embed_window';
/** The tensors SAM 2.1 adds to SAM 2. */
const SAM21_TENSORS = ['no_obj_embed_spatial', 'obj_ptr_tpos_proj.weight'];

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
  /** the model family */
  family: 'efficienttam' | 'sam2' | 'sam2.1';
  /** the trunk's width found in the file (the ViT's, or Hiera's first stage) */
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
function variantIn(text: string | undefined, among: readonly Variant[] = VARIANTS): Variant | undefined {
  if (!text) return undefined;
  const base = text.split(/[\\/]/).pop()!.toLowerCase();
  // longest first, so "efficienttam_ti_512x512" wins over "efficienttam_ti"
  const sorted = [...among].sort((a, b) => b.length - a.length);
  return sorted.find((v) => new RegExp(`(?<![a-z0-9.])${v.replace('.', '\\.')}(?![a-z0-9])`).test(base));
}

/** A short description of a variant's trunk ("ViT 192-d", "Hiera 96-d"). */
const trunkOf = (v: Variant): string => isSam2Variant(v)
  ? `${v.startsWith('sam2.1') ? 'SAM 2.1' : 'SAM 2'}, Hiera ${preset(v).image_encoder.trunk.embed_dim}-d`
  : `EfficientTAM, ViT ${preset(v).image_encoder.trunk.embed_dim}-d`;

/**
 * The official SAM 2 / SAM 2.1 variant whose tensors a Hiera file has, from Hiera's width and
 * block count and the SAM 2.1 tensors; a VariantError when it is none.
 */
function sam2VariantOf(file: TensorListing & { has(name: string): boolean; source?: string }): { variant: Sam2Variant; width: number } {
  const src = file.source ?? 'the weights';
  const width = file.info(TRUNK_WEIGHT).shape[0]!;
  let blocks = 0;
  for (const n of file.names()) {
    const m = /^image_encoder\.trunk\.blocks\.(\d+)\./.exec(n);
    if (m) blocks = Math.max(blocks, Number(m[1]) + 1);
  }
  const size = width === 96 ? (blocks === 12 ? 'tiny' : blocks === 16 ? 'small' : undefined)
    : width === 112 ? 'base_plus' : width === 144 ? 'large' : undefined;
  if (!size) {
    throw new VariantError(`${src}: a SAM 2 (Hiera) state dict of width ${width} with ${blocks} blocks, which is no official ` +
      'variant\'s (96-d with 12 blocks: tiny, 96-d with 16: small, 112-d: base_plus, 144-d: large); give its config');
  }
  const has21 = SAM21_TENSORS.map((n) => file.has(n));
  if (has21[0] !== has21[1]) {
    const [yes, no] = has21[0] ? SAM21_TENSORS : [...SAM21_TENSORS].reverse();
    throw new VariantError(`${src}: has ${yes} but not ${no}, so it is neither SAM 2 (neither tensor) nor SAM 2.1 (both); ` +
      'the settings that go with them cannot be told: give the model\'s config');
  }
  return { variant: `${has21[0] ? 'sam2.1' : 'sam2'}_hiera_${size}` as Sam2Variant, width };
}

/** The official variant a file looks like, whatever its family (undefined when it fits none). */
export function looksLike(file: TensorListing & { has(name: string): boolean; source?: string }): Variant | undefined {
  if (!file.has(TRUNK_WEIGHT)) return undefined;
  try {
    if (file.has(HIERA_WEIGHT)) return sam2VariantOf(file).variant;
  } catch {
    return undefined;
  }
  const family = FAMILY_BY_WIDTH[file.info(TRUNK_WEIGHT).shape[0]!];
  return family ? `efficienttam_${family}` : undefined;
}

/** The trunk width stored in a file (the ViT's or Hiera's), or undefined when it is not a model state dict. */
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
    throw new VariantError(`${file.source}: not an EfficientTAM or SAM 2 state dict (it has no "${TRUNK_WEIGHT}")`);
  }
  if (file.has(HIERA_WEIGHT)) return detectSam2(file, opts);
  if (opts.variant && isSam2Variant(opts.variant)) {
    throw new VariantError(`${file.source}: these weights are EfficientTAM's (a ViT trunk, width ${width}), not ${opts.variant} (${trunkOf(opts.variant)})`,
      FAMILY_BY_WIDTH[width] ? `efficienttam_${FAMILY_BY_WIDTH[width]}` : undefined);
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
  return { variant, config: preset(variant), family: 'efficienttam', trunkWidth: width, imageSizeFrom, crossAttentionFrom, notes };
}

/** detectVariant for a Hiera (SAM 2 / SAM 2.1) file. */
function detectSam2(file: SafetensorsFile, opts: DetectOptions): DetectedVariant {
  const { variant: found, width } = sam2VariantOf(file);
  const notes: string[] = [];
  if (opts.crossAttention && opts.crossAttention !== 'full') {
    throw new VariantError(`${file.source}: ${found} has the plain RoPE memory attention; crossAttention '${opts.crossAttention}' is EfficientTAM's`);
  }
  let variant: Variant = found;
  if (opts.variant && opts.variant !== found) {
    const why = isSam2Variant(opts.variant) && opts.variant.replace('sam2.1_', 'sam2_') === found.replace('sam2.1_', 'sam2_')
      ? `(SAM 2.1 has ${SAM21_TENSORS.join(' and ')}; SAM 2 has neither; this file has ${found.startsWith('sam2.1') ? 'both' : 'neither'})`
      : `(${trunkOf(found)}, not ${trunkOf(opts.variant)})`;
    throw new VariantError(`${file.source}: these weights look like ${found}, not ${opts.variant} ${why}`, found,
      diffManifest(file, manifest(opts.variant)));
  }
  const named = variantIn(file.source, SAM2_VARIANTS) ?? variantIn(file.metadata['variant'], SAM2_VARIANTS);
  if (named && named !== found) notes.push(`the name says ${named}, but the tensors are ${found}'s`);
  let size = 1024;
  let imageSizeFrom: DetectedVariant['imageSizeFrom'] = 'default';
  if (opts.imageSize !== undefined) { size = opts.imageSize; imageSizeFrom = 'option'; }
  else if (file.metadata['image_size']) { size = Number(file.metadata['image_size']); imageSizeFrom = 'metadata'; }
  if (!(Number.isInteger(size) && size > 0 && size % 32 === 0)) {
    throw new VariantError(`image size ${size}: SAM 2 takes a multiple of 32 (the official configs use 1024)`);
  }
  const diff = diffManifest(file, manifest(variant));
  if (diff.missing.length || diff.misShaped.length || diff.unexpected.length) {
    throw new VariantError(`${file.source}: the tensors do not match ${variant}:\n${describeDiff(diff)}`, undefined, diff);
  }
  const config = size === 1024 ? preset(variant) : withImageSize(preset(variant), size);
  return {
    variant, config, family: found.startsWith('sam2.1') ? 'sam2.1' : 'sam2', trunkWidth: width, imageSizeFrom,
    crossAttentionFrom: 'default', notes,
  };
}

/** The official variant whose preset this config is (same tensors, input size and attention), if any. */
export function officialVariantOf(cfg: EfficientTAMConfig): Variant | undefined {
  if (isHiera(cfg.image_encoder.trunk)) {
    // SAM 2: the input size is a run-time choice (no tensor depends on it); the settings must be the preset's
    const m = buildManifest(cfg);
    const flags = ['no_obj_embed_spatial', 'add_tpos_enc_to_obj_ptrs', 'proj_tpos_enc_in_obj_ptrs', 'use_signed_tpos_enc_to_obj_ptrs'];
    return SAM2_VARIANTS.find((v) => {
      const d = diffManifest(listing(m), manifest(v));
      const p = preset(v) as Record<string, unknown>, c = cfg as Record<string, unknown>;
      return !d.missing.length && !d.misShaped.length && !d.unexpected.length && flags.every((f) => !!p[f] === !!c[f]);
    });
  }
  const target = cfg.memory_attention?.layer?.cross_attention?._target_ ?? '';
  const attn: CrossAttention = target.endsWith('EfficientRoPEAttention1') ? 'pool1'
    : target.endsWith('EfficientRoPEAttention2') ? 'pool2' : 'full';
  const m = buildManifest(cfg);
  for (const v of VARIANTS as readonly EfficientTAMVariant[]) {
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
  const want = officialVariantOf(cfg);
  const hiera = isHiera(cfg.image_encoder.trunk);
  if (!diff.missing.length && !diff.misShaped.length) {
    // a SAM 2.1 file into a SAM 2 config has all it needs and two tensors more: still the wrong model
    const fileV = hiera && want && diff.unexpected.length ? looksLike(file) : undefined;
    if (!(fileV && isSam2Variant(fileV) && fileV !== want)) return;
  }
  const wantWidth = cfg.image_encoder.trunk.embed_dim;
  const wantName = want ?? `the given config (trunk width ${wantWidth}, image size ${cfg.image_size})`;
  const width = trunkWidth(file);
  // Does the file fit an official variant? Prefer one with the config's input size and attention.
  let looks: Variant | undefined;
  const family = width !== undefined && !file.has(HIERA_WEIGHT) ? FAMILY_BY_WIDTH[width] : undefined;
  if (family) {
    const candidates = VARIANTS.filter((v) => v.startsWith(`efficienttam_${family}`))
      .filter((v) => { const d = diffManifest(file, manifest(v)); return !d.missing.length && !d.misShaped.length && !d.unexpected.length; });
    const attn = attnOf(want ?? 'efficienttam_ti');
    looks = candidates.find((v) => sizeOf(v) === cfg.image_size && attnOf(v) === attn)
      ?? candidates.find((v) => sizeOf(v) === cfg.image_size) ?? candidates[0];
  } else if (file.has(HIERA_WEIGHT)) {
    const v = looksLike(file);
    if (v) { const d = diffManifest(file, manifest(v)); if (!d.missing.length && !d.misShaped.length && !d.unexpected.length) looks = v; }
  }
  const kind = (sam2: boolean) => (sam2 ? 'Hiera' : 'trunk');
  const head = looks
    ? isSam2Variant(looks) !== hiera || (want && isSam2Variant(want) && isSam2Variant(looks))
      ? `${file.source}: these weights look like ${looks} (${trunkOf(looks)}), not ${wantName}${want ? ` (${trunkOf(want)})` : ` (a ${hiera ? 'Hiera' : 'ViT'} trunk)`}`
      : `${file.source}: these weights look like ${looks} (${kind(isSam2Variant(looks))} width ${width}), not ${wantName}${want ? ` (${kind(hiera)} width ${wantWidth})` : ''}`
    : `${file.source}: the weights do not fit ${wantName}`;
  const shown = diff.missing.length || diff.misShaped.length ? { ...diff, unexpected: [] } : diff;
  throw new VariantError(`${head}\n${describeDiff(shown)}`, looks, diff);
}

/** Every official variant (for the CLI's and the demo's lists). */
export const OFFICIAL_VARIANT_NAMES: readonly Variant[] = ALL_VARIANTS;