/**
 * The streaming mode over a long video: `npx tsx bench/streaming.ts [frames]` (default 1,000; the
 * tiny golden model, a generated 96x64 video with a moving disc, one clicked object). Prints, every
 * 100 frames, the GPU bytes held and in use, the RSS, and the median time per frame over the last
 * 100; exits 1 if the GPU memory still grows once the memory bank is full (from frame 100 on).
 * tests/video_modes.test.ts makes the same check over 150 frames in `npm test`.
 */
import { resolve } from 'node:path';
import { GpuContext } from '../src/gpu/context.js';
import { loadCase } from '../src/golden/case.js';
import { caseModel } from '../src/golden/stages.js';
import type { ImageSource } from '../src/kernels/preprocess.js';
import { VideoPredictor } from '../src/model/video_predictor.js';
import { movingDiscFrame } from '../tests/helpers.js';
import { median, printTable, type Row } from './common.js';

const W = 96, H = 64; // movingDiscFrame's size

async function* frames(n: number): AsyncGenerator<ImageSource> {
  for (let i = 0; i < n; i++) yield movingDiscFrame(i);
}

async function main(): Promise<number> {
  const n = Number(process.argv[2] ?? 1000);
  const ctx = await GpuContext.create();
  const model = caseModel(ctx, await loadCase(resolve(import.meta.dirname, '../../shared/golden/tiny')));
  const vp = new VideoPredictor(model, { frames: frames(n), streaming: true });
  (await vp.addPoints(0, 1, [[45, 32]], [1])).release();
  const rows: Row[] = [];
  let count = 0, present = 0, t = performance.now();
  let ms: number[] = [];
  let held0 = -1, inUse0 = -1, grew = false;
  for await (const fm of vp.propagate()) {
    if (fm.frameIndex % 100 === 50) present += (await fm.present())[0] ? 1 : 0;
    fm.release();
    await ctx.sync();
    const now = performance.now();
    ms.push(now - t);
    t = now;
    count++;
    if (count % 100 === 0) {
      const held = ctx.bytesHeld, inUse = ctx.bytesHeld - ctx.bytesPooled;
      if (count === 100) { held0 = held; inUse0 = inUse; } else if (held !== held0 || inUse !== inUse0) grew = true;
      rows.push({ frame: count, 'GPU held (MiB)': held / 2 ** 20, 'GPU in use (MiB)': inUse / 2 ** 20,
        'RSS (MiB)': process.memoryUsage().rss / 2 ** 20, 'ms/frame (median of 100)': median(ms) });
      ms = [];
      console.error(`frame ${count}`);
    }
  }
  vp.dispose();
  const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const adapter = info ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : 'unknown';
  console.log(`streaming, tiny model, ${count} frames of ${W}x${H}, one object (present on ${present} of ${Math.ceil(n / 100)} sampled frames); adapter: ${adapter}`);
  printTable(rows);
  console.log(grew ? 'FAIL: GPU memory changed after frame 100' : 'GPU memory flat from frame 100 on');
  ctx.destroy();
  return grew || count !== n ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => { console.error(e); process.exit(2); });
