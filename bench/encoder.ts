/**
 * One image-encoder frame: `npm run bench:encoder -- [case folder]` (default ../shared/golden/ti512).
 * Reports the first frame (pipeline compiles included) and the median of later frames, split into
 * the trunk and the neck, with the GPU context's counters.
 */
import { resolve } from 'node:path';
import { GpuContext } from '../src/gpu/context.js';
import { readSafetensorsFile } from '../src/io/safetensors.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import type { FpnNeck, ViTDetNeck } from '../src/model/image_encoder.js';
import { median } from './common.js';

async function main(): Promise<void> {
  const dir = resolve(process.argv[2] ?? resolve(import.meta.dirname, '../../shared/golden/ti512'));
  const reps = Number(process.argv[3] ?? 3);
  const fs = await import('node:fs/promises');
  const config = JSON.parse(await fs.readFile(resolve(dir, 'config.json'), 'utf8'));
  const ctx = await GpuContext.create();
  let t0 = performance.now();
  const model = EfficientTAM.load(ctx, await readSafetensorsFile(resolve(dir, 'weights.safetensors')), config);
  await ctx.sync();
  console.log(`load: ${(performance.now() - t0).toFixed(0)} ms`);
  const S = model.imageSize;
  const pixels = ctx.upload(new Float32Array(S * S * 3).map((_, i) => Math.sin(i) * 2), [1, S, S, 3]);
  const times: { total: number; trunk: number; neck: number }[] = [];
  for (let i = 0; i < reps + 1; i++) {
    const compiled = ctx.stats.pipelinesCompiled;
    t0 = performance.now();
    // the trunk then the neck, as ImageEncoder.forward runs them (ViT + ViTDet neck, or Hiera + FPN)
    const enc = model.imageEncoder;
    const trunk = enc.trunk.forward(pixels);
    await ctx.sync();
    const t1 = performance.now();
    const feats = Array.isArray(trunk) ? (enc.neck as FpnNeck).forward(trunk) : [(enc.neck as ViTDetNeck).forward(trunk)];
    await ctx.sync();
    const t2 = performance.now();
    for (const t of [trunk, feats].flat()) t.release();
    const row = { total: t2 - t0, trunk: t1 - t0, neck: t2 - t1 };
    console.log(`frame ${i}: ${row.total.toFixed(0)} ms (trunk ${row.trunk.toFixed(0)}, neck ${row.neck.toFixed(0)}), ` +
      `${ctx.stats.pipelinesCompiled - compiled} pipelines compiled`);
    if (i > 0) times.push(row);
  }
  console.log(`median of ${reps} frames after the first: ${median(times.map((t) => t.total)).toFixed(0)} ms ` +
    `(trunk ${median(times.map((t) => t.trunk)).toFixed(0)}, neck ${median(times.map((t) => t.neck)).toFixed(0)})`);
  ctx.destroy();
}

await main();
