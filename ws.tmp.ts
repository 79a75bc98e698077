import { resolve } from 'node:path';
import { loadCase } from './src/golden/case.js';
import { GpuContext } from './src/gpu/context.js';
import { EfficientTAM } from './src/model/efficienttam.js';
import { VideoPredictor } from './src/model/video_predictor.js';
import { decodeImageFile } from './src/io/image.js';
const ctx = await GpuContext.create();
ctx.poolLimit = Number(process.argv[2] ?? 256) * 2 ** 20;
const c = await loadCase(resolve('../shared/golden/ti512'));
const model = EfficientTAM.load(ctx, c.weights, c.config);
const N = 12;
const frames = await Promise.all(Array.from({ length: N }, (_, i) => decodeImageFile(`../shared/data/bedroom/${String(i).padStart(5, '0')}.jpg`)));
const v = new VideoPredictor(model, { frames });
(await v.addPoints(0, 1, [[528, 324]], [1])).release();
(await v.addPoints(0, 2, [[200, 300]], [1])).release();
let peakPooled = 0;
const orig = (ctx as any).recycle.bind(ctx);
(ctx as any).recycle = (b: GPUBuffer) => { orig(b); peakPooled = Math.max(peakPooled, ctx.bytesPooled); };
let k = 0;
for await (const fm of v.propagate()) {
  const c0 = ctx.stats.buffersCreated;
  await fm.masks();
  fm.release();
  k++;
  console.log(`frame ${fm.frameIndex}: held ${(ctx.bytesHeld / 2 ** 20).toFixed(1)} MiB, pooled ${(ctx.bytesPooled / 2 ** 20).toFixed(1)}, peak pooled ${(peakPooled / 2 ** 20).toFixed(1)}, buffers created total ${ctx.stats.buffersCreated}`);
}
process.exit(0);
