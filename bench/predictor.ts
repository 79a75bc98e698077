/**
 * The image predictor per prompt: `npx tsx bench/predictor.ts [case folder] [reps]` (default
 * ../shared/golden/ti512 and its photograph). setImage once, then the median time of `predict`
 * for each prompt kind of the goldens, GPU time of the prompt encoder + mask decoder from a
 * GpuContext profile, and the wall time of a whole predict call reading back (a) the IoUs and
 * low-res logits only, (b) the masks at the original resolution too.
 */
import { resolve } from 'node:path';
import { GpuContext } from '../src/gpu/context.js';
import { loadCase } from '../src/golden/case.js';
import { caseModel, findDataFile } from '../src/golden/stages.js';
import { decodeImageFile } from '../src/io/image.js';
import { ImagePredictor, type PredictOptions } from '../src/model/image_predictor.js';
import { median, printTable, type Row } from './common.js';

async function main(): Promise<void> {
  const dir = resolve(process.argv[2] ?? resolve(import.meta.dirname, '../../shared/golden/ti512'));
  const reps = Number(process.argv[3] ?? 5);
  const c = await loadCase(dir);
  const ctx = await GpuContext.create();
  const model = caseModel(ctx, c);
  const img = await decodeImageFile(await findDataFile(c, c.tensors.metadata.image ?? ''));
  const p = new ImagePredictor(model);
  let t = performance.now();
  p.setImage({ ...img, channels: img.channels as 3 | 4 });
  await ctx.sync();
  console.log(`${dir}: ${img.width}x${img.height} image, setImage ${(performance.now() - t).toFixed(0)} ms (first, compiles included)`);
  const W = img.width, H = img.height;
  const prompts: Record<string, PredictOptions> = {
    point: { points: [[W * 0.45, H * 0.55]], labels: [1], multimask: true },
    points: { points: [[W * 0.45, H * 0.55], [W * 0.2, H * 0.3]], labels: [1, 0], multimask: false },
    box: { box: [W * 0.3, H * 0.35, W * 0.7, H * 0.8], multimask: false },
    '4 boxes (batched)': { box: [[0, 0, W / 2, H / 2], [W / 2, 0, W, H / 2], [0, H / 2, W / 2, H], [W / 2, H / 2, W, H]], multimask: false },
  };
  const rows: Row[] = [];
  for (const [name, o] of Object.entries(prompts)) {
    await p.predict({ ...o, returnMasks: false }); // warm-up: compiles
    const gpu: number[] = [], low: number[] = [], full: number[] = [];
    for (let r = 0; r < reps; r++) {
      ctx.startProfile();
      t = performance.now();
      await p.predict({ ...o, returnMasks: false });
      low.push(performance.now() - t);
      gpu.push((await ctx.endProfile()).reduce((s, m) => s + m.ms, 0));
      t = performance.now();
      await p.predict(o);
      full.push(performance.now() - t);
    }
    rows.push({
      prompt: name, 'GPU ms (decoder)': median(gpu).toFixed(0), 'predict ms (low-res)': median(low).toFixed(0),
      [`predict ms (+ ${W}x${H} masks)`]: median(full).toFixed(0),
    });
  }
  printTable(rows);
  ctx.destroy();
}

await main();
