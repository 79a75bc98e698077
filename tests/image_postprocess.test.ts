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
import { gpu, maxAbs, maxAbsDiff, postprocessCpu, randomImage, readTexture } from './helpers.js';

const DIR = resolve(__dirname, '../../shared/golden/tiny');
const W = 96, H = 72;

let model: EfficientTAM;
beforeAll(async () => {
  const ctx = await gpu();
  const c = await loadCase(DIR);
  model = EfficientTAM.load(ctx, c.weights, c.config);
});

const image = () => randomImage(W, H, 11);

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

describe('ImagePredictor draw', () => {
  it('draws each object\'s best mask into a texture on the GPU, as the returned masks', async () => {
    const ctx = await gpu();
    const p = new ImagePredictor(model, { maxHoleArea: 30 });
    p.setImage(image());
    const tex = ctx.device.createTexture({ size: [W, H], format: 'rgba8unorm', usage: 0x10 /* RENDER_ATTACHMENT */ | 0x01 /* COPY_SRC */ });
    const res = await p.predict({
      box: [[5, 5, 60, 50], [40, 20, 90, 70]], multimask: true,
      draw: { target: tex, colors: [[255, 0, 0], [0, 0, 255]], alpha: 1 },
    });
    // the texture's bytes
    const { px, row } = await readTexture(ctx, tex);
    tex.destroy();
    const masks = res.masks as Uint8Array; // [B, M, H, W]
    const M = res.numMasks, P = W * H;
    const best = [0, 1].map((b) => { let k = 0; for (let j = 1; j < M; j++) if (res.ious[b * M + j]! > res.ious[b * M + k]!) k = j; return k; });
    let covered = 0;
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const i = y * W + x, o = y * row + 4 * x;
      const in0 = masks[(0 * M + best[0]!) * P + i], in1 = masks[(1 * M + best[1]!) * P + i];
      const want = in1 ? [0, 0, 255, 255] : in0 ? [255, 0, 0, 255] : [0, 0, 0, 0];
      if (in0 || in1) covered++;
      expect(Array.from(px.subarray(o, o + 4)), `pixel ${x},${y}`).toEqual(want);
    }
    expect(covered).toBeGreaterThan(0);
  });
});
