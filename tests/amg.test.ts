/**
 * Segment everything (AutomaticMaskGenerator) beyond what the goldens' random weights reach: the
 * generator against a CPU transcription of the official algorithm (tests/amg_reference.ts) with
 * settings under which the thresholds filter, small regions are removed, several crop layers and
 * the NMS between crops act; the GPU NMS against torchvision's own output; the exact ratio test in
 * WGSL; readbacks, progress, cancelling, bad options, drawing.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCase } from '../src/golden/case.js';
import type { Tensor } from '../src/gpu/tensor.js';
import { labelColor } from '../src/kernels/draw_masks.js';
import { STATS_WORDS } from '../src/kernels/mask_stats.js';
import { boxNms } from '../src/kernels/nms.js';
import { MUL_WIDE_WGSL, ratioPasses, ratioTest, ratioTestWGSL } from '../src/kernels/ratio.js';
import { batchedNmsOrder } from '../src/model/amg.js';
import {
  AutomaticMaskGenerator, MaskGeneratorError, type AutomaticMaskGeneratorOptions, type MaskRecord,
} from '../src/model/automatic_mask_generator.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { generateReference } from './amg_reference.js';
import { gpu, randomImage, readTexture, rng } from './helpers.js';

const DIR = resolve(__dirname, '../../shared/golden/tiny');
const REF = JSON.parse(readFileSync(resolve(__dirname, 'fixtures/amg_reference.json'), 'utf8'));
const W = 160, H = 120;
const image = randomImage(W, H, 5);

let model: EfficientTAM;
beforeAll(async () => {
  const ctx = await gpu();
  const c = await loadCase(DIR);
  model = EfficientTAM.load(ctx, c.weights, c.config);
});

/** A record as comparable text (binary masks as their bytes). */
const text = (r: MaskRecord | undefined) =>
  JSON.stringify(r && { ...r, segmentation: r.segmentation instanceof Uint8Array ? Array.from(r.segmentation).join('') : r.segmentation });

async function compareWithReference(opts: AutomaticMaskGeneratorOptions) {
  const ref = await generateReference(model, image, opts);
  const got = await new AutomaticMaskGenerator(model, opts).generate(image);
  expect(got.length).toBe(ref.records.length);
  expect(got.length).toBeGreaterThan(0);
  got.forEach((r, i) => expect(text(r), `record ${i}`).toBe(text(ref.records[i])));
  return ref;
}

describe('AutomaticMaskGenerator = the official algorithm (CPU transcription)', () => {
  it('thresholds that filter (predicted IoU, stability with its offset), binary masks', async () => {
    const ref = await compareWithReference({
      pointsPerSide: 6, pointsPerBatch: 16, predIouThresh: 0.45, stabilityScoreThresh: 0.1, stabilityScoreOffset: 0.5, boxNmsThresh: 0.98,
    });
    expect(ref.dropped.iou).toBeGreaterThan(0);
    expect(ref.dropped.stability).toBeGreaterThan(0);
    expect(ref.dropped.nms).toBeGreaterThan(0);
  });

  it('two crop layers, small regions removed (min_mask_region_area), COCO RLE', async () => {
    const ref = await compareWithReference({
      pointsPerSide: 4, pointsPerBatch: 16, predIouThresh: 0, stabilityScoreThresh: 0, cropNLayers: 2, cropNPointsDownscaleFactor: 2,
      cropOverlapRatio: 0.9, minMaskRegionArea: 12, outputMode: 'coco_rle', boxNmsThresh: 0.8, cropNmsThresh: 0.3,
    });
    expect(ref.postprocessed).toBeGreaterThan(0); // holes filled / islands removed in the low-res logits
    expect(ref.dropped.edge).toBeGreaterThan(0); // masks at crop edges
  });

  it('mask-to-mask refinement, one crop layer with NMS between crops, uncompressed RLE', async () => {
    const ref = await compareWithReference({
      pointsPerSide: 4, pointsPerBatch: 16, predIouThresh: 0, stabilityScoreThresh: 0, useM2m: true, cropNLayers: 1,
      cropOverlapRatio: 0.9, outputMode: 'uncompressed_rle', boxNmsThresh: 0.8, cropNmsThresh: 0.3,
    });
    expect(ref.dropped.cropNms).toBeGreaterThan(0);
  });
});

describe('AutomaticMaskGenerator on the GPU', () => {
  const opts: AutomaticMaskGeneratorOptions = { pointsPerSide: 4, pointsPerBatch: 8, predIouThresh: 0, stabilityScoreThresh: 0, boxNmsThresh: 0.98 };

  it('reads back only the survivors (one readback per crop, after its NMS) and the final masks; frees what it made', async () => {
    const ctx = await gpu();
    const gen = new AutomaticMaskGenerator(model, { ...opts, cropNLayers: 1 });
    await gen.generate(image); // warm the pools
    const inUse = ctx.bytesHeld - ctx.bytesPooled;
    const before = ctx.stats.readbacks;
    const records = await gen.generate(image);
    expect(records.length).toBeGreaterThan(0);
    expect(ctx.stats.readbacks - before).toBe(5 + 1); // 5 crops, then one chunk of masks
    expect(ctx.bytesHeld - ctx.bytesPooled).toBe(inUse);
  });

  it('reports progress as the GPU finishes, and cancels cleanly', async () => {
    const ctx = await gpu();
    const gen = new AutomaticMaskGenerator(model, opts);
    const steps: [number, number][] = [];
    const full = await gen.generate(image, { onProgress: (d, t) => steps.push([d, t]) });
    const total = 1 + 2 + 1; // embedding, 16 points in batches of 8, the masks
    expect(steps).toEqual(Array.from({ length: total + 1 }, (_, i) => [i, total]));

    const inUse = ctx.bytesHeld - ctx.bytesPooled;
    const ac = new AbortController();
    await expect(gen.generate(image, { signal: ac.signal, onProgress: (d) => { if (d === 1) ac.abort(); } }))
      .rejects.toMatchObject({ name: 'AbortError' });
    expect(ctx.bytesHeld - ctx.bytesPooled).toBe(inUse); // nothing leaked
    const again = await gen.generate(image); // not poisoned
    expect(again.map(text)).toEqual(full.map(text));
    const pre = new AbortController();
    pre.abort();
    await expect(gen.generate(image, { signal: pre.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('rejects bad options and input with MaskGeneratorError, naming the problem', () => {
    const bad = (o: AutomaticMaskGeneratorOptions, re: RegExp) => {
      expect(() => new AutomaticMaskGenerator(model, o)).toThrow(MaskGeneratorError);
      expect(() => new AutomaticMaskGenerator(model, o)).toThrow(re);
    };
    bad({ pointsPerSide: 0 }, /pointsPerSide/);
    bad({ pointsPerSide: null }, /exactly one of pointsPerSide and pointGrids/);
    bad({ pointsPerSide: 8, pointGrids: [[[0.5, 0.5]]] }, /exactly one/);
    bad({ pointGrids: [[[0.5, 1.5]]] }, /outside \[0, 1\]/);
    bad({ pointGrids: [[[0.5, 0.5]]], cropNLayers: 1 }, /1 point grids for 2 crop layers/);
    bad({ outputMode: 'png' as never }, /outputMode 'png'/);
    bad({ pointsPerBatch: 2.5 }, /pointsPerBatch/);
    bad({ boxNmsThresh: NaN }, /boxNmsThresh/);
    bad({ minMaskRegionArea: -1 }, /minMaskRegionArea/);
    bad({ pointsPerSide: 4, cropNLayers: 3, cropNPointsDownscaleFactor: 2 }, /crop layer 3 would have 0 points/);
    bad({ pointsPerSide: 150 }, /67500 candidate masks in a crop/);
    const gen = new AutomaticMaskGenerator(model, opts);
    return expect(gen.generate({ data: new Uint8Array(10), width: 10, height: 10, channels: 4 })).rejects.toThrow(/10 bytes for a 10x10 image/);
  });

  it('explicit point grids give the same records as the equal built grid', async () => {
    const { buildPointGrid } = await import('../src/model/amg.js');
    const a = await new AutomaticMaskGenerator(model, opts).generate(image);
    const b = await new AutomaticMaskGenerator(model, { ...opts, pointsPerSide: undefined, pointGrids: [buildPointGrid(4)] }).generate(image);
    expect(b.map(text)).toEqual(a.map(text));
  });

  it('draws every mask in its own colour on the GPU (smaller over larger), as the records say', async () => {
    const ctx = await gpu();
    const gen = new AutomaticMaskGenerator(model, opts);
    const tex = ctx.device.createTexture({ size: [W, H], format: 'rgba8unorm', usage: 0x10 | 0x01 });
    const records = await gen.generate(image, { draw: { target: tex, alpha: 1 } });
    const { px, row } = await readTexture(ctx, tex);
    tex.destroy();
    expect(records.length).toBeGreaterThan(1);
    const byArea = records.map((_, i) => i).sort((a, b) => records[b]!.area - records[a]!.area || a - b);
    let covered = 0, bad = 0;
    for (let i = 0; i < W * H; i++) {
      let top = -1;
      byArea.forEach((r, k) => { if ((records[r]!.segmentation as Uint8Array)[i]) top = k; });
      const want = top < 0 ? [0, 0, 0, 0] : [...labelColor(top + 1), 255];
      const o = Math.floor(i / W) * row + 4 * (i % W);
      const got = Array.from(px.subarray(o, o + 4));
      if (top >= 0) covered++;
      if (got.some((v, c) => Math.abs(v - want[c]!) > 1)) bad++;
    }
    expect(covered).toBeGreaterThan(0);
    expect(bad).toBe(0);
  });
});

describe('GPU kernels of the generator', () => {
  it('box NMS = torchvision batched_nms (kept set and order, ties, both paths)', async () => {
    const ctx = await gpu();
    for (const c of REF.torchvision_batched_nms as { boxes: number[]; scores: number[]; threshold: number; keep: number[] }[]) {
      const n = c.scores.length;
      // the generator's stats layout: (I, U, area, x0, y0, x1, y1, keep); a few candidates filtered out
      const stats = new Uint32Array(n * STATS_WORDS);
      const filtered = new Set([5, 17, 33]);
      for (let i = 0; i < n; i++) {
        stats.set(c.boxes.slice(4 * i, 4 * i + 4), i * STATS_WORDS + 3);
        stats[i * STATS_WORDS + 7] = filtered.has(i) ? 0 : 1;
      }
      const survivors = Array.from({ length: n }, (_, i) => i).filter((i) => !filtered.has(i));
      const st = ctx.upload(new Float32Array(stats.buffer), [stats.length]);
      const sc = ctx.upload(Float32Array.from(c.scores), [n]);
      const kept = boxNms(ctx, st, sc, n, c.threshold);
      const k = new Uint32Array((await kept.read()).buffer);
      const order = batchedNmsOrder(Array.from(k.subarray(1, 1 + k[0]!)), Float32Array.from(c.scores), survivors.length);
      // torchvision on the same candidates (its indices are into the filtered list)
      const { batchedNms } = await import('../src/model/amg.js');
      const want = batchedNms(survivors.map((i) => c.boxes.slice(4 * i, 4 * i + 4)), Float32Array.from(survivors, (i) => c.scores[i]!), c.threshold)
        .map((j) => survivors[j]!);
      expect(order).toEqual(want);
      if (filtered.size === 0) expect(order).toEqual(c.keep);
      for (const t of [st, sc, kept]) t.release();
    }
    // without filtering, exactly the fixture (torchvision's own output)
    const c = REF.torchvision_batched_nms[0] as { boxes: number[]; scores: number[]; threshold: number; keep: number[] };
    const n = c.scores.length;
    const stats = new Uint32Array(n * STATS_WORDS);
    for (let i = 0; i < n; i++) { stats.set(c.boxes.slice(4 * i, 4 * i + 4), i * STATS_WORDS + 3); stats[i * STATS_WORDS + 7] = 1; }
    const st = ctx.upload(new Float32Array(stats.buffer), [stats.length]);
    const sc = ctx.upload(Float32Array.from(c.scores), [n]);
    const kept = boxNms(ctx, st, sc, n, c.threshold);
    const k = new Uint32Array((await kept.read()).buffer);
    expect(batchedNmsOrder(Array.from(k.subarray(1, 1 + k[0]!)), Float32Array.from(c.scores), n)).toEqual(c.keep);
    for (const t of [st, sc, kept]) t.release();
  });

  it('the WGSL ratio test decides as float32(a / b) OP t, also on the boundary', async () => {
    const ctx = await gpu();
    const r = rng(4);
    const n = 4096;
    for (const [t, op] of [[0.95, '>'], [0.7, '>'], [0.95, '>='], [1 / 3, '>='], [0, '>'], [1e-9, '>=']] as const) {
      const test = ratioTest(t, op);
      const pairs = new Uint32Array(2 * n);
      for (let i = 0; i < n; i++) {
        const b = i < n / 2 ? 1 + Math.floor(r() * 300) : 1 + Math.floor(r() * 2 ** 30);
        const a = i % 3 === 0 ? Math.min(b, Math.round(b * t)) : Math.floor(r() * (b + 1));
        pairs[2 * i] = a; pairs[2 * i + 1] = b;
      }
      pairs.set([19, 20, 0, 0, 190, 200, 7, 7], 0);
      const inp: Tensor = ctx.upload(new Float32Array(pairs.buffer), [2 * n]);
      const out = ctx.empty([n]);
      const wgsl = `
@group(0) @binding(0) var<storage, read> pairs: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
${MUL_WIDE_WGSL}${ratioTestWGSL('passes', test)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= ${n}u) { return; }
  out[g.x] = select(0u, 1u, passes(pairs[2u * g.x], pairs[2u * g.x + 1u]));
}`;
      ctx.run({ pipeline: ctx.pipeline('test_ratio', wgsl), bindings: [inp, out], workgroups: [n / 64] });
      const got = new Uint32Array((await out.read()).buffer);
      const wrong: string[] = [];
      for (let i = 0; i < n; i++) {
        if ((got[i] === 1) !== ratioPasses(test, pairs[2 * i]!, pairs[2 * i + 1]!)) wrong.push(`${pairs[2 * i]}/${pairs[2 * i + 1]}`);
      }
      expect(wrong, `${op} ${t}`).toEqual([]);
      inp.release();
      out.release();
    }
  });
});
