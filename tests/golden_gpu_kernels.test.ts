/**
 * The GPU-shaped kernels inside the model: the tiny golden case's image encoder and prompts with
 * every tuned operation on its GPU default (workgroup-memory GEMMs, flash-tile
 * attention, workgroup-per-row softmax / layer norm with subgroups) instead of lavapipe's, against
 * the same references and bounds. What a GPU's table runs, checked on lavapipe (lean: each of
 * these pipelines takes lavapipe seconds to compile; the memory modules' kernels are covered by
 * the per-candidate tests).
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GpuContext } from '../src/gpu/context.js';
import { loadCase, runGolden } from '../src/golden/case.js';
import { formatTable } from '../src/golden/compare.js';
import { stages } from '../src/golden/registry.js';
import { FAMILIES } from '../src/tune/families.js';

const TINY = resolve(__dirname, '../../shared/golden/tiny');

describe('golden tiny with the GPU-shaped kernels', () => {
  it('image encoder and every prompt match the reference', async () => {
    const ctx = await GpuContext.create();
    ctx.kernels.defaults = 'gpu';
    const used = new Set<string>();
    ctx.kernels.recorder = (op, call) => {
      const fam = FAMILIES.find((f) => f.op === op)!;
      used.add(`${op}: ${fam.fallback(ctx, call as never)}`);
    };
    const c = await loadCase(TINY);
    const only = ['image_encoder', 'predictor_embed', 'prompts'];
    const report = await runGolden(ctx, c, stages.filter((s) => only.includes(s.name)));
    console.log(formatTable(report.rows));
    // the GPU-shaped kernels did run
    console.log([...used].sort().join('\n'));
    expect([...used]).toEqual(expect.arrayContaining(['matmul: tiled32', 'conv2d: tiled32', 'attention: flash-tile', 'layernorm: subgroup']));
    expect(report.rows.length).toBeGreaterThanOrEqual(18);
    for (const row of report.rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
    ctx.destroy();
  }, 600_000);
});
