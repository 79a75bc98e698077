/**
 * Parity of "segment everything" with the official generator on the small golden cases (the SAM 2
 * one through the same code: the image predictor gives it its decoder): every
 * amg.* row (count and order, masks by the binary-mask rule, the records' numbers by the float
 * bound, areas within the differing pixels), for both runs of each case (a point grid; one crop
 * layer with mask-to-mask refinement), with the settings in the case's metadata.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCase, runGolden } from '../src/golden/case.js';
import { formatTable } from '../src/golden/compare.js';
import { amgRuns, amgStage } from '../src/golden/stages_amg.js';
import { gpu } from './helpers.js';

const GOLDEN = resolve(__dirname, '../../shared/golden');
const FIELDS = ['count', 'masks_bits', 'bbox', 'area', 'predicted_iou', 'stability_score', 'point_coords', 'crop_box'];

describe.each(['tiny', 'tiny_pool1', 'tiny_pool2', 'sam2_tiny'])('golden %s: segment everything', (name) => {
  it('matches every amg.* row of both runs', async () => {
    const ctx = await gpu();
    const c = await loadCase(resolve(GOLDEN, name));
    const runs = Object.keys(amgRuns(c));
    expect(runs.sort()).toEqual(['crops', 'grid']);
    const report = await runGolden(ctx, c, [amgStage]);
    console.log(`${name}\n${formatTable(report.rows)}`);
    expect(report.rows.map((r) => r.name).sort()).toEqual(runs.flatMap((r) => FIELDS.map((f) => `amg.${r}.${f}`)).sort());
    for (const row of report.rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
  });
});
