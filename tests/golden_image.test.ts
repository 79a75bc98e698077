/**
 * Parity of the image path with the official model on the tiny golden cases (../shared/golden):
 * the preprocessing from the JPEG, the ViT trunk, the neck and its position encoding.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCase, runGolden } from '../src/golden/case.js';
import { formatTable } from '../src/golden/compare.js';
import { imageEncoderStage, preprocessStage } from '../src/golden/stages.js';
import { gpu } from './helpers.js';

const GOLDEN = resolve(__dirname, '../../shared/golden');
const CASES = ['tiny', 'tiny_pool1', 'tiny_pool2'];
const EXPECTED = ['image.input', 'image.trunk', 'image.vision_features', 'image.vision_pos_enc'];

describe.each(CASES)('golden %s: image encoder', (name) => {
  const dir = resolve(GOLDEN, name);
  it('matches image.input, image.trunk, image.vision_features, image.vision_pos_enc', async () => {
    const ctx = await gpu();
    const report = await runGolden(ctx, await loadCase(dir), [preprocessStage, imageEncoderStage]);
    console.log(`${name}\n${formatTable(report.rows)}`);
    expect(report.rows.map((r) => r.name).sort()).toEqual([...EXPECTED].sort());
    for (const row of report.rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
  });
});
