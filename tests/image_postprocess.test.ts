/**
 * ImagePredictor with max_hole_area / max_sprinkle_area on the tiny golden model: the full-res
 * masks are postprocess_masks of the low-res logits (holes and sprinkles found on the unprocessed
 * low-res logits, then the bilinear resize), checked against a CPU union-find transcription of the
 * official code applied to the unprocessed low-res logits the predictor returns.
 */
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCase } from '../src/golden/case.js';
import { resizeBilinearCpu } from '../src/kernels/mask_ops.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { ImagePredictor } from '../src/model/image_predictor.js';
import { gpu, maxAbs, maxAbsDiff, rng } from './helpers.js';

const DIR = resolve(__dirname, '../../shared/golden/tiny');
const W = 96, H = 72;

let model: EfficientTAM;
beforeAll(async () => {
  const ctx = await gpu();
  const c = await loadCase(DIR);
  model = EfficientTAM.load(ctx, c.weights, c.config);
});

function image(): { data: Uint8Array; width: number; height: number; channels: 4 } {
  const r = rng(11);
  const data = new Uint8Array(W * H * 4);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(r() * 256);
  return { data, width: W, height: H, channels: 4 };
}

/** Component areas (8-connected) of the pixels where `fg`, 0 elsewhere: a sequential union-find. */
function areasCpu(fg: (i: number) => boolean, h: number, w: number): Int32Array {
  const parent = Int32Array.from({ length: h * w }, (_, i) => i);
  const find = (a: number): number => {
    while (parent[a] !== a) { parent[a] = parent[parent[a]!]!; a = parent[a]!; }
    return a;
  };
  const unite = (a: number, b: number) => { const ra = find(a), rb = find(b); if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb); };
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = y * w + x;
    if (!fg(i)) continue;
    for (const [dy, dx] of [[-1, -1], [-1, 0], [-1, 1], [0, -1]] as const) {
      const yy = y + dy, xx = x + dx;
      if (yy >= 0 && xx >= 0 && xx < w && fg(yy * w + xx)) unite(i, yy * w + xx);
    }
  }
  const count = new Int32Array(h * w);
  for (let i = 0; i < h * w; i++) if (fg(i)) count[find(i)]!++;
  return Int32Array.from({ length: h * w }, (_, i) => (fg(i) ? count[find(i)]! : 0));
}

/** postprocess_masks on planes of low-res logits, before the resize (threshold 0). */
function postprocessCpu(x: Float32Array, h: number, w: number, maxHole: number, maxSprinkle: number): Float32Array {
  const out = x.slice();
  for (let p = 0; p < x.length / (h * w); p++) {
    const o = p * h * w;
    const holes = areasCpu((i) => x[o + i]! <= 0, h, w);
    const sprinkles = areasCpu((i) => x[o + i]! > 0, h, w); // from the input, as the official code
    for (let i = 0; i < h * w; i++) {
      if (maxHole > 0 && holes[i]! > 0 && holes[i]! <= maxHole) out[o + i] = 10;
      if (maxSprinkle > 0 && sprinkles[i]! > 0 && sprinkles[i]! <= maxSprinkle) out[o + i] = -10;
    }
  }
  return out;
}

describe('ImagePredictor hole / sprinkle postprocessing', () => {
  it('validates the areas', () => {
    expect(() => new ImagePredictor(model, { maxHoleArea: -1 })).toThrow(/maxHoleArea/);
    expect(() => new ImagePredictor(model, { maxSprinkleArea: NaN })).toThrow(/maxSprinkleArea/);
  });

  it('full-res masks = resize(postprocess(low-res)), low-res logits unprocessed', async () => {
    const ctx = await gpu();
    const plain = new ImagePredictor(model);
    plain.setImage(image());
    const prompts = { points: [[[20, 15], [70, 50]], [[50, 30], [10, 60]]], labels: [[1, 1], [1, 0]], returnLogits: true };
    const ref = await plain.predict(prompts);
    const m = ref.lowResSize, planes = ref.batch * ref.numMasks;
    const low = ref.lowResLogits!;
    // the returned low-res logits are clamped to +-32; unclamped = clamped when they stay inside
    expect(maxAbs(low)).toBeLessThan(32);

    for (const [maxHole, maxSprinkle] of [[6, 0], [0, 6], [40, 25]] as const) {
      const p = new ImagePredictor(model, { maxHoleArea: maxHole, maxSprinkleArea: maxSprinkle });
      p.setEmbedding(plain.imageEmbedding.reshape(plain.imageEmbedding.shape), W, H);
      const before = ctx.stats.readbacks;
      const r = await p.predict(prompts);
      expect(ctx.stats.readbacks - before).toBe(1);
      expect(maxAbsDiff(r.lowResLogits!, low)).toBe(0);
      const post = postprocessCpu(low, m, m, maxHole, maxSprinkle);
      let changed = 0;
      for (let i = 0; i < post.length; i++) if (post[i] !== low[i]) changed++;
      expect(changed).toBeGreaterThan(0); // the setting does something on this image (251 / 560 / 997 pixels)
      const full = resizeBilinearCpu(post, planes, m, m, H, W);
      expect(maxAbsDiff(r.masks as Float32Array, full)).toBeLessThan(1e-4);
      // binary masks of the same call agree with the processed logits
      const bin = await p.predict({ ...prompts, returnLogits: false });
      const logits = r.masks as Float32Array;
      let bad = 0;
      for (let i = 0; i < logits.length; i++) if ((logits[i]! > 0 ? 1 : 0) !== bin.masks![i]) bad++;
      expect(bad).toBe(0);
    }
  });
});
