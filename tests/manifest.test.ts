/**
 * Manifests generated from configs against the goldens' weight files, the eight presets'
 * manifests, variant detection, and the load-time check of EfficientTAM.load.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GpuContext } from '../src/gpu/context.js';
import { readSafetensorsFile, type SafetensorsFile } from '../src/io/safetensors.js';
import { VARIANTS, preset, type Variant } from '../src/model/config.js';
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
  for (const c of ['tiny', 'tiny_pool1', 'tiny_pool2', 'ti512']) {
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
    expect(() => detectVariant(fakeFile([{ name: 'x', shape: [1] }], 'x.safetensors'))).toThrow(/not an EfficientTAM state dict/);
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
