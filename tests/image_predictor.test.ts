/**
 * The image predictor's API on the tiny golden model: clear errors for bad prompts (and the
 * predictor still works after one), binary masks vs logits, batched boxes, the overlay, and the
 * one-readback-per-predict rule.
 */
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCase } from '../src/golden/case.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { ImagePredictor } from '../src/model/image_predictor.js';
import { gpu, maxAbsDiff, randomImage } from './helpers.js';

const DIR = resolve(__dirname, '../../shared/golden/tiny');
const W = 96, H = 72;

let model: EfficientTAM;
beforeAll(async () => {
  const ctx = await gpu();
  const c = await loadCase(DIR);
  model = EfficientTAM.load(ctx, c.weights, c.config);
});

const image = () => randomImage(W, H, 7);

describe('ImagePredictor', () => {
  it('refuses to predict before setImage', async () => {
    const p = new ImagePredictor(model);
    await expect(p.predict({ points: [[10, 10]], labels: [1] })).rejects.toThrow(/setImage/);
  });

  it('rejects bad prompts with clear errors and still works afterwards', async () => {
    const p = new ImagePredictor(model);
    p.setImage(image());
    await expect(p.predict({ points: [[W + 5, 10]], labels: [1] })).rejects.toThrow(/outside the 96x72 image/);
    await expect(p.predict({ points: [[-1, 10]], labels: [1] })).rejects.toThrow(/outside/);
    await expect(p.predict({ points: [[NaN, 10]], labels: [1] })).rejects.toThrow(/not finite/);
    await expect(p.predict({ box: [50, 10, 20, 40] })).rejects.toThrow(/x1 < x0/);
    await expect(p.predict({ points: [[10, 10], [20, 20]], labels: [1] })).rejects.toThrow(/2 points but 1 labels/);
    await expect(p.predict({ points: [[10, 10]] })).rejects.toThrow(/together/);
    await expect(p.predict({ points: [[10, 10]], labels: [7] })).rejects.toThrow(/label 7/);
    await expect(p.predict({ maskInput: new Float32Array(10) })).rejects.toThrow(/maskInput/);
    const r = await p.predict({ points: [[40, 30]], labels: [1] });
    expect(r.numMasks).toBe(3);
    expect(r.masks!.length).toBe(3 * W * H);
    expect(r.ious.every((v) => v > 0 && v < 1)).toBe(true);
  });

  it('binary masks are logits > 0, one readback per predict, low-res clamped', async () => {
    const ctx = await gpu();
    const p = new ImagePredictor(model);
    p.setImage(image());
    const before = ctx.stats.readbacks;
    const logits = await p.predict({ points: [[40, 30], [10, 60]], labels: [1, 0], multimask: false, returnLogits: true });
    expect(ctx.stats.readbacks - before).toBe(1);
    const bin = await p.predict({ points: [[40, 30], [10, 60]], labels: [1, 0], multimask: false, overlay: true });
    expect(bin.masks).toBeInstanceOf(Uint8Array);
    const l = logits.masks as Float32Array;
    let same = 0;
    for (let i = 0; i < l.length; i++) if ((l[i]! > 0 ? 1 : 0) === bin.masks![i]) same++;
    expect(same).toBe(l.length);
    expect(bin.overlay!.length).toBe(W * H * 4);
    for (let i = 0; i < W * H; i++) expect(bin.overlay![i * 4 + 3]).toBe(bin.masks![i] ? 128 : 0);
    expect(logits.lowResLogits!.every((v) => v >= -32 && v <= 32)).toBe(true);
    expect(logits.lowResLogits!.length).toBe(32 * 32);
  });

  it('decodes several boxes in one call like one call per box', async () => {
    const p = new ImagePredictor(model);
    p.setImage(image());
    const boxes = [[5, 5, 50, 40], [30, 20, 90, 70]];
    const both = await p.predict({ box: boxes, multimask: false, returnLogits: true });
    expect(both.batch).toBe(2);
    for (let b = 0; b < 2; b++) {
      const one = await p.predict({ box: boxes[b], multimask: false, returnLogits: true });
      expect(maxAbsDiff(both.ious.subarray(b, b + 1), one.ious)).toBeLessThan(1e-5);
      expect(maxAbsDiff((both.masks as Float32Array).subarray(b * W * H, (b + 1) * W * H), one.masks as Float32Array)).toBeLessThan(1e-4);
    }
  });

  it('takes a mask prompt fed back from an earlier prediction', async () => {
    const p = new ImagePredictor(model);
    p.setImage(image());
    const first = await p.predict({ points: [[40, 30]], labels: [1] });
    const best = first.ious.indexOf(Math.max(...first.ious));
    const plane = first.lowResSize ** 2;
    const r = await p.predict({
      points: [[40, 30], [60, 40]], labels: [1, 1], multimask: false,
      maskInput: first.lowResLogits!.slice(best * plane, (best + 1) * plane),
    });
    expect(r.numMasks).toBe(1);
    expect(Number.isFinite(r.ious[0]!)).toBe(true);
  });
});
