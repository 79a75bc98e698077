/**
 * precision 'f16' on the tiny golden case: the policy (f16 weights and inputs everywhere but the
 * mask decoder) is applied, and the image path then stays within the case's f32 bounds (measured:
 * image.trunk 6.6e-4 of max|ref|, low-res logits 1.3e-4; see the notes for every golden).
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GpuContext } from '../src/gpu/context.js';
import { loadCase, runGolden } from '../src/golden/case.js';
import { formatTable } from '../src/golden/compare.js';
import { stages } from '../src/golden/registry.js';
import { caseModel } from '../src/golden/stages.js';
import { EfficientTAM } from '../src/model/efficienttam.js';

const TINY = resolve(__dirname, '../../shared/golden/tiny');

describe("precision 'f16'", () => {
  it('keeps the mask decoder f32, rounds the rest; the image encoder and prompts stay within the f32 bounds', async () => {
    const ctx = await GpuContext.create();
    const c = await loadCase(TINY);
    c.load = { precision: 'f16' };
    const m = caseModel(ctx, c);
    expect(ctx.kernels.f16).toEqual({ matmul: true, attention: true });
    expect(m.imageEncoder.trunk.blocks[0]!.mlp.layers[0]!.weight.dtype).toBe('f16');
    expect(m.maskDecoder.transformer.layers[0]!.selfAttn.qProj.weight.dtype).toBe('f32');
    const report = await runGolden(ctx, c, stages.filter((s) => ['image_encoder', 'predictor_embed', 'prompts'].includes(s.name)));
    console.log(formatTable(report.rows));
    expect(report.rows.length).toBeGreaterThanOrEqual(18);
    for (const row of report.rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
    // and f16 did change the numbers (not the f32 path by mistake): the trunk moved by more than f32 noise
    const trunk = report.rows.find((r) => r.name === 'image.trunk')!;
    expect(trunk.kind === 'float' && trunk.maxAbsErr / trunk.maxAbsRef).toBeGreaterThan(1e-4);
    // a later f32 model on the context switches the kernels back
    EfficientTAM.load(ctx, c.weights, c.config);
    expect(ctx.kernels.f16).toEqual({ matmul: false, attention: false });
    ctx.destroy();
  }, 600_000);

  it('rejects an unknown precision', async () => {
    const ctx = await GpuContext.create();
    const c = await loadCase(TINY);
    expect(() => EfficientTAM.load(ctx, c.weights, c.config, { precision: 'f8' as 'f16' })).toThrow(/precision is 'f32' or 'f16'/);
    ctx.destroy();
  });
});
