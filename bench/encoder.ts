/**
 * One image-encoder frame: `npm run bench:encoder -- [case folder] [reps] [--kernels]` (default
 * ../shared/golden/ti512). Reports the first frame (pipeline compiles included) and the median of
 * later frames, split into the trunk and the neck, with the GPU context's counters.
 *
 * --kernels: instead, the encoder with the kernel table tuned for this adapter (tuning 'auto':
 * the stored table, or timed now within --budget S seconds) against the kernels from before issue
 * 15 (the lavapipe-shaped defaults), in interleaved runs of the same process: medians and the
 * ratio current / tuned (>= 1: the tuned kernels are no slower).
 */
import { resolve } from 'node:path';
import { adapterName } from '../src/gpu/adapter.js';
import { GpuContext } from '../src/gpu/context.js';
import { readSafetensorsFile } from '../src/io/safetensors.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import type { FpnNeck, ViTDetNeck } from '../src/model/image_encoder.js';
import { median } from './common.js';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (n: string): boolean => args.includes(n);
  const val = (n: string): string | undefined => { const i = args.indexOf(n); return i >= 0 ? args[i + 1] : undefined; };
  const pos = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--budget'));
  const dir = resolve(pos[0] ?? resolve(import.meta.dirname, '../../shared/golden/ti512'));
  const reps = Number(pos[1] ?? 3);
  const fs = await import('node:fs/promises');
  const config = JSON.parse(await fs.readFile(resolve(dir, 'config.json'), 'utf8'));
  const ctx = await GpuContext.create();
  let t0 = performance.now();
  const model = EfficientTAM.load(ctx, await readSafetensorsFile(resolve(dir, 'weights.safetensors')), config);
  await ctx.sync();
  console.log(`load: ${(performance.now() - t0).toFixed(0)} ms; adapter ${adapterName(ctx.adapter)}`);
  const S = model.imageSize;
  const pixels = ctx.upload(new Float32Array(S * S * 3).map((_, i) => Math.sin(i) * 2), [1, S, S, 3]);

  if (flag('--kernels')) {
    const budget = val('--budget');
    const r = await model.prepare({ timeSoftware: true, budgetMs: budget ? Number(budget) * 1000 : undefined });
    const differ = r.table?.entries.filter((e) => e.chosen !== e.fallback) ?? [];
    console.log(`kernel table: ${r.source}${r.note ? ` (${r.note})` : ''}, ${r.table?.entries.length ?? 0} classes (${r.timed} timed now), ` +
      `${differ.length} not the default${differ.length ? `: ${differ.map((e) => `${e.op} ${e.class} -> ${e.chosen}`).join('; ')}` : ''}`);
    const table = ctx.kernels.entries();
    const use = (tuned: boolean): void => {
      ctx.kernels.clear(tuned ? 'tuned' : 'defaults');
      ctx.kernels.defaults = tuned ? 'auto' : 'software';
      if (tuned) for (const [op, cls, c] of table) ctx.kernels.set(op, cls, c);
    };
    const times = { tuned: [] as number[], current: [] as number[] };
    for (let i = 0; i <= reps; i++) {
      for (const k of (i % 2 ? ['current', 'tuned'] : ['tuned', 'current']) as ('tuned' | 'current')[]) {
        use(k === 'tuned');
        await ctx.sync();
        const s = performance.now();
        const e = model.forwardImage(pixels);
        await ctx.sync();
        for (const x of [e.visionFeatures, ...(e.highResFeatures ?? [])]) x.release();
        if (i > 0) times[k].push(performance.now() - s); // round 0 compiles
      }
    }
    const tuned = median(times.tuned), current = median(times.current);
    console.log(`image encoder, median of ${reps} interleaved runs each: tuned ${tuned.toFixed(0)} ms, current ${current.toFixed(0)} ms, ratio current/tuned ${(current / tuned).toFixed(3)}`);
    console.log(`  tuned runs: ${times.tuned.map((t) => t.toFixed(0)).join(' ')}; current runs: ${times.current.map((t) => t.toFixed(0)).join(' ')}`);
    ctx.destroy();
    return;
  }

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
