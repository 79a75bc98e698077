/**
 * Manifests generated from configs against the goldens' weight files, the eight presets'
 * manifests, variant detection, and the load-time check of EfficientTAM.load.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GpuContext } from '../src/gpu/context.js';
import { readSafetensorsFile, type SafetensorsFile } from '../src/io/safetensors.js';
import { SAM2_VARIANTS, VARIANTS, preset, type Variant } from '../src/model/config.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { buildManifest, diffManifest, manifest, manifestNumel, type Manifest } from '../src/weights/manifest.js';
import { VariantError, checkWeightsForConfig, detectVariant, officialVariantOf } from '../src/weights/variant.js';
import { loadWeights } from '../src/weights/load.js';
import { syntheticTensors, writeTorchCheckpoint } from '../bench/convert.js';
import { gpu } from './helpers.js';

const GOLDEN = '/work/shared/golden';
const config = (c: string): unknown => JSON.parse(readFileSync(`${GOLDEN}/${c}/config.json`, 'utf8'));
const files = new Map<string, Promise<SafetensorsFile>>();
const weights = (c: string): Promise<SafetensorsFile> => {
  if (!files.has(c)) files.set(c, readSafetensorsFile(`${GOLDEN}/${c}/weights.safetensors`));
  return files.get(c)!;
};

/** A file's tensors as a manifest sorted by name. */
const listing = (f: SafetensorsFile): Manifest =>
  f.names().map((name) => ({ name, shape: f.info(name).shape })).sort((a, b) => (a.name < b.name ? -1 : 1));
const sorted = (m: Manifest): Manifest => [...m].sort((a, b) => (a.name < b.name ? -1 : 1));
const shapeOf = (m: Manifest, name: string): number[] | undefined => m.find((e) => e.name === name)?.shape;

/** A file-like object with a manifest's names (for detection tests without data). */
function fakeFile(m: Manifest, source: string, metadata: Record<string, string> = {}): SafetensorsFile {
  const map = new Map(m.map((e) => [e.name, e.shape]));
  return {
    source, metadata,
    names: () => [...map.keys()],
    has: (n) => map.has(n),
    info: (n) => ({ dtype: 'F16', shape: map.get(n)!, dataOffsets: [0, 0] }),
    getF32: () => { throw new Error('no data'); },
    getRaw: () => { throw new Error('no data'); },
  };
}

describe('manifest generated from a config', () => {
  for (const c of ['tiny', 'tiny_pool1', 'tiny_pool2', 'ti512', 'sam2_tiny']) {
    it(`${c}: exactly the names and shapes of weights.safetensors`, async () => {
      const f = await weights(c);
      const m = buildManifest(config(c) as never);
      expect(diffManifest(f, m)).toEqual({ missing: [], misShaped: [], unexpected: [] });
      expect(sorted(m)).toEqual(listing(f));
    });
  }

  it('efficienttam_ti_512x512 preset = the ti512 golden weights (17.9M parameters)', async () => {
    const m = manifest('efficienttam_ti_512x512');
    expect(sorted(m)).toEqual(listing(await weights('ti512')));
    expect(manifestNumel(m)).toBe(17_866_274);
  });

  it('every preset: unique names, 455 tensors, the ViT width in the right places', () => {
    for (const v of VARIANTS) {
      const m = manifest(v);
      const E = v.startsWith('efficienttam_s') ? 384 : 192;
      expect(new Set(m.map((e) => e.name)).size).toBe(m.length);
      expect(m.length).toBe(455);
      expect(shapeOf(m, 'image_encoder.trunk.patch_embed.proj.weight')).toEqual([E, 3, 16, 16]);
      // stored at the pretraining size (224/16)^2 + cls, whatever the input size
      expect(shapeOf(m, 'image_encoder.trunk.pos_embed')).toEqual([1, 197, E]);
      expect(shapeOf(m, 'image_encoder.trunk.blocks.11.attn.qkv.weight')).toEqual([3 * E, E]);
      expect(shapeOf(m, 'image_encoder.trunk.blocks.11.mlp.layers.0.weight')).toEqual([4 * E, E]);
      expect(shapeOf(m, 'image_encoder.trunk.blocks.12.norm1.weight')).toBeUndefined();
      expect(shapeOf(m, 'image_encoder.neck.convs.0.conv_1x1.weight')).toEqual([256, E, 1, 1]);
      expect(shapeOf(m, 'memory_attention.layers.3.cross_attn_image.k_proj.weight')).toEqual([256, 64]);
      expect(shapeOf(m, 'memory_encoder.out_proj.weight')).toEqual([64, 256, 1, 1]);
      expect(shapeOf(m, 'maskmem_tpos_enc')).toEqual([7, 1, 1, 64]);
    }
  });

  it('_1 / _2 and _512x512 have the same tensors as the plain variant; Ti and S differ only in the ViT', () => {
    const key = (v: Variant) => JSON.stringify(sorted(manifest(v)));
    for (const fam of ['ti', 's']) {
      const base = key(`efficienttam_${fam}` as Variant);
      for (const s of ['_1', '_2', '_512x512']) expect(key(`efficienttam_${fam}${s}` as Variant)).toBe(base);
    }
    const ti = manifest('efficienttam_ti'), s = manifest('efficienttam_s');
    expect(ti.map((e) => e.name)).toEqual(s.map((e) => e.name));
    const differ = ti.filter((e, i) => JSON.stringify(e.shape) !== JSON.stringify(s[i]!.shape)).map((e) => e.name);
    expect(differ.every((n) => n.startsWith('image_encoder.trunk.') || n === 'image_encoder.neck.convs.0.conv_1x1.weight')).toBe(true);
    expect(differ.length).toBe(3 + 12 * 12 + 1); // patch embed w/b, pos_embed, 12 tensors per block, the neck's 1x1 conv
    expect(manifestNumel(s)).toBe(34_056_098);
  });

  it('a preset is recognised as itself', () => {
    for (const v of VARIANTS) expect(officialVariantOf(preset(v))).toBe(v);
    expect(officialVariantOf(config('tiny') as never)).toBeUndefined();
  });
});

describe('detectVariant', () => {
  it('ti512 weights: Ti; the input size and attention cannot be told, and it says so', async () => {
    const f = await weights('ti512');
    const d = detectVariant(f);
    expect(d.variant).toBe('efficienttam_ti');
    expect(d.trunkWidth).toBe(192);
    expect(d.imageSizeFrom).toBe('default');
    expect(d.crossAttentionFrom).toBe('default');
    expect(d.notes.join('\n')).toMatch(/input size cannot be told/);
    expect(d.notes.join('\n')).toMatch(/_1 and _2 pool without parameters/);
    expect(detectVariant(f, { imageSize: 512 }).variant).toBe('efficienttam_ti_512x512');
    expect(detectVariant(f, { imageSize: 512 }).config.image_size).toBe(512);
    expect(detectVariant(f, { crossAttention: 'pool2' }).variant).toBe('efficienttam_ti_2');
    expect(detectVariant(f, { variant: 'efficienttam_ti_1' }).variant).toBe('efficienttam_ti_1');
  });

  it('takes the input size and attention from metadata or the file name', () => {
    const m = manifest('efficienttam_s');
    expect(detectVariant(fakeFile(m, '/x/efficienttam_s_512x512.safetensors')).variant).toBe('efficienttam_s_512x512');
    expect(detectVariant(fakeFile(m, 'https://h/efficienttam_s_1.pt')).variant).toBe('efficienttam_s_1');
    const byName = detectVariant(fakeFile(m, 'efficienttam_s_2.safetensors'));
    expect([byName.variant, byName.crossAttentionFrom]).toEqual(['efficienttam_s_2', 'file name']);
    expect(detectVariant(fakeFile(m, 'w.safetensors', { variant: 'efficienttam_s_512x512' })).variant).toBe('efficienttam_s_512x512');
    // the width wins over a name that disagrees
    expect(detectVariant(fakeFile(manifest('efficienttam_ti'), 'efficienttam_s.safetensors')).variant).toBe('efficienttam_ti');
  });

  it('a forced variant of the other width fails, naming what the file looks like', async () => {
    const f = await weights('ti512');
    expect(() => detectVariant(f, { variant: 'efficienttam_s_512x512' }))
      .toThrow(/these weights look like efficienttam_ti_512x512 \(trunk width 192\), not efficienttam_s_512x512 \(trunk width 384\)/);
  });

  it('a non-official file fails clearly', async () => {
    expect(() => detectVariant(fakeFile([{ name: 'x', shape: [1] }], 'x.safetensors'))).toThrow(/not an EfficientTAM or SAM 2 state dict/);
    expect(() => detectVariant(fakeFile([], 'empty'))).toThrow(VariantError);
    const tiny = await weights('tiny');
    expect(() => detectVariant(tiny)).toThrow(/ViT width is 48, which is no official variant's/);
    const broken = manifest('efficienttam_ti').filter((e) => !e.name.startsWith('memory_attention.layers.3.'));
    expect(() => detectVariant(fakeFile(broken, 'b'))).toThrow(/do not match efficienttam_ti:\n26 missing:\n  memory_attention.layers.3./);
  });
});

describe('EfficientTAM.load checks the file against the config first', () => {
  it('ti512 weights do not load into efficienttam_s_512x512, and nothing is uploaded', async () => {
    const ctx = await gpu();
    const f = await weights('ti512');
    const before = ctx.stats.uploads;
    let err: unknown;
    try {
      EfficientTAM.load(ctx, f, preset('efficienttam_s_512x512'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VariantError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/these weights look like efficienttam_ti_512x512 \(trunk width 192\), not efficienttam_s_512x512 \(trunk width 384\)/);
    expect(msg).toMatch(/image_encoder.trunk.patch_embed.proj.weight: expected \[384, 3, 16, 16\], found \[192, 3, 16, 16\]/);
    expect((err as VariantError).looksLike).toBe('efficienttam_ti_512x512');
    expect(ctx.stats.uploads).toBe(before);
    // the same check without a GPU
    expect(() => checkWeightsForConfig(f, preset('efficienttam_s'))).toThrow(/look like efficienttam_ti \(trunk width 192\), not efficienttam_s \(trunk width 384\)/);
    expect(() => checkWeightsForConfig(f, preset('efficienttam_ti_512x512'))).not.toThrow();
    // a golden config checks its own file
    expect(() => checkWeightsForConfig(f, config('tiny') as never)).toThrow(/look like efficienttam_ti \(trunk width 192\), not the given config \(trunk width 48, image size 128\)/);
  });

  it('ti512 weights load into efficienttam_ti_512x512 (F16 kept as f16: GPU bytes f16 vs f32)', async () => {
    const ctx = await gpu();
    const f = await weights('ti512');
    const b0 = ctx.stats.uploadBytes;
    const m = EfficientTAM.load(ctx, f, preset('efficienttam_ti_512x512'));
    const bytesF16 = ctx.stats.uploadBytes - b0;
    expect(m.imageSize).toBe(512);
    expect(m.imageEncoder).toBeDefined();

    // the same on a device without shader-f16: everything f32
    const ctx32 = await GpuContext.create({ f16: false });
    expect(ctx32.hasF16).toBe(false);
    const m32 = EfficientTAM.load(ctx32, f, preset('efficienttam_ti_512x512'));
    const bytesF32 = ctx32.stats.uploadBytes;
    expect(m32.imageSize).toBe(512);
    console.log(`ti512 weights uploaded (image encoder + prompt encoder + mask decoder + no_mem_embed): ` +
      `f32 ${(bytesF32 / 2 ** 20).toFixed(2)} MiB, f16 kept ${(bytesF16 / 2 ** 20).toFixed(2)} MiB`);
    expect(bytesF16).toBeLessThan(0.55 * bytesF32);
    ctx32.destroy();
  });
});

describe('a synthetic checkpoint written from a manifest (the small case of bench/convert.ts)', () => {
  it('tiny config: torch.save format -> loadWeights converts it -> the manifest and the data come back', async () => {
    const cfg = config('tiny') as never;
    const tensors = syntheticTensors(buildManifest(cfg), 7);
    const pt = writeTorchCheckpoint(tensors);
    const t0 = performance.now();
    const f = await loadWeights(pt, { source: 'synthetic_tiny.pt' });
    const ms = performance.now() - t0;
    expect(sorted(listing(f))).toEqual(sorted(buildManifest(cfg)));
    for (const t of [tensors[0]!, tensors[100]!, tensors.at(-1)!]) expect(f.getF32(t.name)).toEqual(t.data);
    expect(() => checkWeightsForConfig(f, cfg)).not.toThrow();
    expect(ms).toBeLessThan(5000);
    // and as F16
    const h = await loadWeights(pt, { f16: true });
    expect(h.info(tensors[5]!.name).dtype).toBe('F16');
  });
});

// ------------------------------------------------------------------------------------------------
// SAM 2 / SAM 2.1

/** The official sizes: Hiera width, blocks per stage, state-dict tensors and values (SAM 2; SAM 2.1 adds 3 tensors, 16,512 values). */
const SAM2_SIZES = {
  tiny: { E: 96, stages: [1, 2, 7, 2], tensors: 468, numel: 38_946_242, millions: 38.9 },
  small: { E: 96, stages: [1, 2, 11, 2], tensors: 516, numel: 46_044_098, millions: 46.0 },
  base_plus: { E: 112, stages: [2, 3, 16, 3], tensors: 612, numel: 80_833_922, millions: 80.8 },
  large: { E: 144, stages: [2, 6, 36, 4], tensors: 900, numel: 224_430_386, millions: 224.4 },
} as const;
const sizeOf = (v: string) => SAM2_SIZES[v.replace(/^sam2(\.1)?_hiera_/, '') as keyof typeof SAM2_SIZES];

describe('SAM 2 / SAM 2.1 presets and manifests', () => {
  it('every preset: the official size (parameters as the release table, truncated to 0.1M), Hiera and FPN shapes', () => {
    for (const v of SAM2_VARIANTS) {
      const m = manifest(v);
      const z = sizeOf(v);
      const v21 = v.startsWith('sam2.1');
      expect(new Set(m.map((e) => e.name)).size).toBe(m.length);
      expect(m.length).toBe(z.tensors + (v21 ? 3 : 0));
      // the state dict holds the parameters and one buffer (the prompt encoder's 2 x 128 matrix)
      expect(manifestNumel(m)).toBe(z.numel + (v21 ? 16_512 : 0));
      expect(Math.floor((manifestNumel(m) - 256) / 1e5) / 10).toBe(z.millions); // the release table truncates
      const E = z.E, depth = z.stages.reduce((a, b) => a + b, 0);
      expect(shapeOf(m, 'image_encoder.trunk.patch_embed.proj.weight')).toEqual([E, 3, 7, 7]);
      expect(shapeOf(m, 'image_encoder.trunk.pos_embed')).toEqual([1, E, ...(v.endsWith('base_plus') ? [14, 14] : [7, 7])]);
      expect(shapeOf(m, 'image_encoder.trunk.pos_embed_window')).toEqual([1, E, 8, 8]);
      expect(shapeOf(m, `image_encoder.trunk.blocks.${depth - 1}.mlp.layers.0.weight`)).toEqual([32 * E, 8 * E]);
      expect(shapeOf(m, `image_encoder.trunk.blocks.${depth}.norm1.weight`)).toBeUndefined();
      // the first block of stage 2 pools and widens: qkv E -> 3*2E, proj E -> 2E
      expect(shapeOf(m, `image_encoder.trunk.blocks.${z.stages[0]}.attn.qkv.weight`)).toEqual([6 * E, E]);
      expect(shapeOf(m, `image_encoder.trunk.blocks.${z.stages[0]}.proj.weight`)).toEqual([2 * E, E]);
      expect(shapeOf(m, `image_encoder.trunk.blocks.${z.stages[0] - 1}.proj.weight`)).toBeUndefined();
      expect([0, 1, 2, 3].map((i) => shapeOf(m, `image_encoder.neck.convs.${i}.conv.weight`))).toEqual(
        [8 * E, 4 * E, 2 * E, E].map((d) => [256, d, 1, 1]));
      expect(shapeOf(m, 'sam_mask_decoder.conv_s0.weight')).toEqual([32, 256, 1, 1]);
      expect(shapeOf(m, 'sam_mask_decoder.conv_s1.weight')).toEqual([64, 256, 1, 1]);
      expect(shapeOf(m, 'no_obj_embed_spatial')).toEqual(v21 ? [1, 64] : undefined);
      expect(shapeOf(m, 'obj_ptr_tpos_proj.weight')).toEqual(v21 ? [64, 256] : undefined);
      expect(officialVariantOf(preset(v))).toBe(v);
    }
  });

  it('SAM 2 and SAM 2.1 differ by no_obj_embed_spatial, obj_ptr_tpos_proj and four settings', () => {
    for (const size of ['tiny', 'small', 'base_plus', 'large']) {
      const a = manifest(`sam2_hiera_${size}` as Variant), b = manifest(`sam2.1_hiera_${size}` as Variant);
      const names = new Set(a.map((e) => e.name));
      expect(b.filter((e) => !names.has(e.name)).map((e) => e.name).sort()).toEqual(['no_obj_embed_spatial', 'obj_ptr_tpos_proj.bias', 'obj_ptr_tpos_proj.weight']);
      const p2 = preset(`sam2_hiera_${size}` as Variant) as Record<string, unknown>, p21 = preset(`sam2.1_hiera_${size}` as Variant) as Record<string, unknown>;
      const differ = [...new Set([...Object.keys(p2), ...Object.keys(p21)])].filter((k) => JSON.stringify(p2[k]) !== JSON.stringify(p21[k])).sort();
      expect(differ).toEqual(['add_tpos_enc_to_obj_ptrs', 'no_obj_embed_spatial', 'proj_tpos_enc_in_obj_ptrs', 'use_signed_tpos_enc_to_obj_ptrs']);
    }
  });

  it('the sam2_tiny golden config is SAM 2.1-tiny\'s with smaller sizes: the same settings', () => {
    const g = config('sam2_tiny') as Record<string, unknown>;
    const p = preset('sam2.1_hiera_tiny') as Record<string, unknown>;
    const sizes = ['image_encoder', 'memory_attention', 'memory_encoder', 'image_size', 'fill_hole_area'];
    for (const k of Object.keys(p)) if (!sizes.includes(k)) expect(g[k], k).toEqual(p[k]);
  });
});

describe('detectVariant: SAM 2 / SAM 2.1', () => {
  it('tells all eight apart from their tensors (width, blocks, the SAM 2.1 tensors)', () => {
    for (const v of SAM2_VARIANTS) {
      const d = detectVariant(fakeFile(manifest(v), 'weights.safetensors'));
      expect(d.variant).toBe(v);
      expect(d.family).toBe(v.startsWith('sam2.1') ? 'sam2.1' : 'sam2');
      expect(d.config.image_size).toBe(1024);
      expect(d.config.use_high_res_features_in_sam).toBe(true);
    }
  });

  it('a name that disagrees is noted; the input size is an option (RoPE tables follow it)', () => {
    const d = detectVariant(fakeFile(manifest('sam2.1_hiera_small'), '/x/sam2_hiera_small.pt'));
    expect(d.variant).toBe('sam2.1_hiera_small');
    expect(d.notes.join('\n')).toMatch(/the name says sam2_hiera_small, but the tensors are sam2.1_hiera_small's/);
    const d512 = detectVariant(fakeFile(manifest('sam2.1_hiera_tiny'), 'w'), { imageSize: 512 });
    expect([d512.variant, d512.config.image_size, d512.imageSizeFrom]).toEqual(['sam2.1_hiera_tiny', 512, 'option']);
    expect(d512.config.memory_attention.layer.cross_attention.feat_sizes).toEqual([32, 32]);
    expect(() => detectVariant(fakeFile(manifest('sam2.1_hiera_tiny'), 'w'), { imageSize: 500 })).toThrow(/multiple of 32/);
  });

  it('a forced variant of the other version, size or family fails, saying why', () => {
    const f21 = fakeFile(manifest('sam2.1_hiera_tiny'), 'sam2.1_hiera_tiny.safetensors');
    expect(() => detectVariant(f21, { variant: 'sam2_hiera_tiny' }))
      .toThrow(/look like sam2.1_hiera_tiny, not sam2_hiera_tiny \(SAM 2.1 has no_obj_embed_spatial and obj_ptr_tpos_proj.weight; SAM 2 has neither; this file has both\)/);
    expect(() => detectVariant(f21, { variant: 'sam2.1_hiera_large' })).toThrow(/look like sam2.1_hiera_tiny, not sam2.1_hiera_large \(SAM 2.1, Hiera 96-d, not SAM 2.1, Hiera 144-d\)/);
    expect(() => detectVariant(f21, { variant: 'efficienttam_ti' })).toThrow(/look like sam2.1_hiera_tiny, not efficienttam_ti \(SAM 2.1, Hiera 96-d, not EfficientTAM, ViT 192-d\)/);
    expect(() => detectVariant(fakeFile(manifest('efficienttam_ti'), 'e'), { variant: 'sam2.1_hiera_tiny' }))
      .toThrow(/EfficientTAM's \(a ViT trunk, width 192\), not sam2.1_hiera_tiny \(SAM 2.1, Hiera 96-d\)/);
  });

  it('files that are no official SAM 2 fail clearly', async () => {
    // one of the two SAM 2.1 tensors without the other: neither version
    const half = manifest('sam2.1_hiera_base_plus').filter((e) => e.name !== 'no_obj_embed_spatial');
    expect(() => detectVariant(fakeFile(half, 'h'))).toThrow(/has obj_ptr_tpos_proj.weight but not no_obj_embed_spatial, so it is neither SAM 2 .* nor SAM 2.1/);
    // the golden's small Hiera
    const golden = await weights('sam2_tiny');
    expect(() => detectVariant(golden)).toThrow(/a SAM 2 \(Hiera\) state dict of width 16 with 8 blocks, which is no official variant's/);
    const broken = manifest('sam2_hiera_large').filter((e) => !e.name.startsWith('image_encoder.neck.convs.3'));
    expect(() => detectVariant(fakeFile(broken, 'b'))).toThrow(/do not match sam2_hiera_large:\n2 missing:\n  image_encoder.neck.convs.3.conv.weight/);
  });

  it('checkWeightsForConfig: SAM 2.1 weights into an EfficientTAM or SAM 2 config, and the reverse, name what they are', () => {
    const f21 = fakeFile(manifest('sam2.1_hiera_tiny'), 'sam21.safetensors');
    expect(() => checkWeightsForConfig(f21, preset('efficienttam_ti')))
      .toThrow(/sam21.safetensors: these weights look like sam2.1_hiera_tiny \(SAM 2.1, Hiera 96-d\), not efficienttam_ti \(EfficientTAM, ViT 192-d\)/);
    // SAM 2.1 into SAM 2: nothing missing, two tensors more, still refused
    expect(() => checkWeightsForConfig(f21, preset('sam2_hiera_tiny')))
      .toThrow(/look like sam2.1_hiera_tiny \(SAM 2.1, Hiera 96-d\), not sam2_hiera_tiny \(SAM 2, Hiera 96-d\)\n3 not in the model/);
    expect(() => checkWeightsForConfig(fakeFile(manifest('sam2_hiera_tiny'), 's2'), preset('sam2.1_hiera_tiny')))
      .toThrow(/look like sam2_hiera_tiny \(SAM 2, Hiera 96-d\), not sam2.1_hiera_tiny \(SAM 2.1, Hiera 96-d\)\n3 missing/);
    expect(() => checkWeightsForConfig(fakeFile(manifest('efficienttam_s'), 'e'), preset('sam2.1_hiera_small')))
      .toThrow(/look like efficienttam_s \(EfficientTAM, ViT 384-d\), not sam2.1_hiera_small \(SAM 2.1, Hiera 96-d\)/);
    expect(() => checkWeightsForConfig(f21, preset('sam2.1_hiera_tiny'))).not.toThrow();
  });

  it('a SAM 2.1 checkpoint made here: torch.save format -> converted -> detected -> loaded; into an EfficientTAM preset it fails before any upload', async () => {
    const ctx = await gpu();
    const tensors = syntheticTensors(manifest('sam2.1_hiera_tiny'), 21);
    const pt = writeTorchCheckpoint(tensors);
    const f = await loadWeights(pt, { source: 'sam2.1_hiera_tiny.pt', f16: true });
    expect(sorted(listing(f))).toEqual(sorted(manifest('sam2.1_hiera_tiny')));
    const d = detectVariant(f);
    expect([d.variant, d.family]).toEqual(['sam2.1_hiera_tiny', 'sam2.1']);
    const before = ctx.stats.uploads;
    expect(() => EfficientTAM.load(ctx, f, preset('efficienttam_ti'))).toThrow(/look like sam2.1_hiera_tiny \(SAM 2.1, Hiera 96-d\), not efficienttam_ti/);
    expect(ctx.stats.uploads).toBe(before);
    const m = EfficientTAM.load(ctx, f, detectVariant(f, { imageSize: 256 }).config);
    expect(m.isSam2).toBe(true);
    expect(m.imageSize).toBe(256);
    expect(m.tracking.noObjEmbedSpatial).not.toBeNull();
    expect(m.tracking.objPtrTposProj).not.toBeNull();
  }, 120_000);
});
