/**
 * Time per tracked frame, split by module: `npx tsx bench/video.ts [case folder] [frames]`
 * (default ../shared/golden/ti512 on the bedroom frames, 8 frames). Tracks 1 and then 2 objects
 * (streaming mode) and reports, per tracked frame after the first two (pipeline compiles and a
 * still-filling memory bank excluded), the median GPU time of the image encoder and, summed over
 * the objects, of memory attention, the mask decoder (prompt encoder + SAM heads) and the memory
 * encoder, from GpuContext profiles (GPU timestamps of every compute pass, when the adapter has
 * `timestamp-query`); "other" is the rest of the GPU work (frame preprocessing, mask copies); and
 * the wall time per frame (JPEG decoding and the CPU bicubic resize of the frame included).
 */
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { GpuContext } from '../src/gpu/context.js';
import { loadCase } from '../src/golden/case.js';
import { caseModel } from '../src/golden/stages.js';
import { decodeImageFile } from '../src/io/image.js';
import { VideoPredictor } from '../src/model/video_predictor.js';
import { median, printTable, type Row } from './common.js';

const PARTS = ['image_encoder', 'memory_attention', 'decoder', 'memory_encoder'] as const;

async function main(): Promise<void> {
  const dir = resolve(process.argv[2] ?? resolve(import.meta.dirname, '../../shared/golden/ti512'));
  const nFrames = Number(process.argv[3] ?? 8);
  const framesDir = resolve(import.meta.dirname, '../../shared/data/bedroom');
  const names = readdirSync(framesDir).filter((n) => n.endsWith('.jpg')).sort().slice(0, nFrames);
  const c = await loadCase(dir);
  const ctx = await GpuContext.create();
  const model = caseModel(ctx, c);
  console.log(`${dir}: image size ${model.imageSize}, ${names.length} bedroom frames`);
  const rows: Row[] = [];
  for (const objects of [1, 2]) {
    const vp = new VideoPredictor(model, {
      frames: (i: number) => decodeImageFile(resolve(framesDir, names[i]!)).then((d) => ({ ...d, channels: d.channels as 3 | 4 })),
      numFrames: names.length,
      streaming: true,
    });
    (await vp.addPoints(0, 1, [[528, 324]], [1])).release();
    if (objects === 2) (await vp.addBox(0, 2, [96, 108, 384, 378])).release();
    const perFrame: Record<string, number>[] = [];
    let t = performance.now();
    ctx.startProfile();
    for await (const fm of vp.propagate()) {
      await ctx.sync();
      const marks = await ctx.endProfile();
      const now = performance.now();
      const sums: Record<string, number> = { wall: now - t };
      for (const { label, ms } of marks) sums[label] = (sums[label] ?? 0) + ms;
      perFrame.push(sums);
      fm.release();
      t = performance.now();
      ctx.startProfile();
    }
    await ctx.endProfile();
    vp.dispose();
    const steady = perFrame.slice(2);
    const row: Row = { objects, frames: steady.length };
    for (const p of PARTS) row[`${p} ms`] = median(steady.map((s) => s[p] ?? 0)).toFixed(0);
    row['other GPU ms'] = median(steady.map((s) => (s.start ?? 0) + (s.rest ?? 0))).toFixed(0);
    row['frame ms (wall)'] = median(steady.map((s) => s.wall!)).toFixed(0);
    row['fps'] = (1000 / median(steady.map((s) => s.wall!))).toFixed(2);
    rows.push(row);
  }
  printTable(rows);
  ctx.destroy();
}

await main();
