/**
 * Parity of the image predictor with the official EfficientTAMImagePredictor on the tiny golden
 * cases: the embedding it decodes (`image.predictor_embed`) and every `prompt.*` output (masks at
 * the original resolution, IoU scores, low-res logits), plus the best-mask choice.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCase, runGolden } from '../src/golden/case.js';
import { formatTable } from '../src/golden/compare.js';
import { stages } from '../src/golden/registry.js';
import { ImagePredictor } from '../src/model/image_predictor.js';
import { caseModel, chwToHwc } from '../src/golden/stages.js';
import { gpu } from './helpers.js';

const GOLDEN = resolve(__dirname, '../../shared/golden');
const CASES = ['tiny', 'tiny_pool1', 'tiny_pool2'];
const PROMPTS = ['point', 'points', 'box', 'box_point', 'refine'];
const STAGES = ['predictor_embed', 'prompts'];

const argmax = (x: ArrayLike<number>): number => {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
};

describe.each(CASES)('golden %s: prompt encoder + mask decoder', (name) => {
  const dir = resolve(GOLDEN, name);
  it('matches image.predictor_embed and every prompt.* output', async () => {
    const ctx = await gpu();
    const c = await loadCase(dir);
    const report = await runGolden(ctx, c, stages.filter((s) => STAGES.includes(s.name)));
    console.log(`${name}\n${formatTable(report.rows)}`);
    const expected = ['image.predictor_embed', ...PROMPTS.flatMap((p) => ['masks_bits', 'ious', 'low_res_logits'].map((k) => `prompt.${p}.${k}`))];
    expect(report.rows.map((r) => r.name).sort()).toEqual(expected.sort());
    for (const row of report.rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
  });

  it('picks the same best mask as the reference (argmax of ious)', async () => {
    const ctx = await gpu();
    const c = await loadCase(dir);
    const model = caseModel(ctx, c);
    const C = model.promptEncoder.embedDim, g = model.promptEncoder.embedSize;
    const [H, W] = JSON.parse(c.tensors.metadata.image_hw!) as [number, number];
    const pred = new ImagePredictor(model);
    pred.setEmbedding(ctx.upload(chwToHwc(c.tensors.getF32('image.predictor_embed'), C, g, g), [1, g, g, C]), W, H);
    for (const p of ['point', 'box_point']) {
      const coords = c.tensors.getF32(`prompt.${p}.point_coords`);
      const box = c.tensors.names().includes(`prompt.${p}.box`) ? Array.from(c.tensors.getF32(`prompt.${p}.box`)) : undefined;
      const r = await pred.predict({
        points: [Array.from(coords)], labels: Array.from(c.tensors.getF32(`prompt.${p}.point_labels`)), box,
        multimask: true, returnMasks: false, returnLowRes: false,
      });
      expect(r.numMasks).toBe(3);
      expect(argmax(r.ious)).toBe(argmax(c.tensors.getF32(`prompt.${p}.ious`)));
    }
    pred.reset();
  });
});
