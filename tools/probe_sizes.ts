/**
 * The probes of issue 11 ("Sizes a user has", the prompt items of "Weights and prompts that are
 * wrong"): each one prints what happened (result or error class and message), the GPU bytes in
 * use before and after, and whether the next call works. Used for the before/after table in the
 * notes; not a test (the tests are in tests/sizes.test.ts and tests/errors.test.ts).
 *
 *   npx tsx tools/probe_sizes.ts [probe ...]     (default: all; weights ../shared/golden/tiny)
 */
import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { decodeImageFile } from '../src/io/image.js';
import { loadCase } from '../src/golden/case.js';
import { GpuContext } from '../src/gpu/context.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { ImagePredictor } from '../src/model/image_predictor.js';
import { VideoPredictor } from '../src/model/video_predictor.js';

const DIR = resolve(import.meta.dirname, '../../shared/golden/tiny');

function image(W: number, H: number, seed = 1): { data: Uint8Array; width: number; height: number; channels: 4 } {
  const data = new Uint8Array(W * H * 4);
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i += 4096) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data.fill(s & 255, i, i + 4096);
  }
  return { data, width: W, height: H, channels: 4 };
}

const mb = (n: number) => (n / 1e6).toFixed(1);
const inUse = (ctx: GpuContext) => ctx.bytesHeld - ctx.bytesPooled;

async function attempt(what: string, f: () => Promise<unknown>): Promise<boolean> {
  const t0 = performance.now();
  try {
    const r = await f();
    console.log(`  ${what}: ok${r ? ` (${r})` : ''} [${((performance.now() - t0) / 1000).toFixed(1)} s]`);
    return true;
  } catch (e) {
    const err = e as Error;
    console.log(`  ${what}: ${err.name}: ${err.message.split('\n')[0]!.slice(0, 300)} [${((performance.now() - t0) / 1000).toFixed(1)} s]`);
    return false;
  }
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const want = (p: string) => only.length === 0 || only.includes(p);
  const ctx = await GpuContext.create();
  console.log(`adapter limits: maxStorageBufferBindingSize ${ctx.device.limits.maxStorageBufferBindingSize}, maxBufferSize ${ctx.device.limits.maxBufferSize}, maxTextureDimension2D ${ctx.device.limits.maxTextureDimension2D}`);
  const c = await loadCase(DIR);
  const model = EfficientTAM.load(ctx, c.weights, c.config);
  const p = new ImagePredictor(model);

  const photo = async (W: number, H: number, multimask: boolean, label: string) => {
    console.log(`${label}: ${W}x${H}${multimask ? ' multimask' : ''}`);
    const before = inUse(ctx);
    await attempt('setImage + predict', async () => {
      p.setImage(image(W, H));
      const r = await p.predict({ points: [[W / 2, H / 2]], labels: [1], multimask });
      return `${r.numMasks} masks of ${r.width}x${r.height}`;
    });
    await attempt('next call (small image)', async () => {
      p.setImage(image(64, 48));
      const r = await p.predict({ points: [[32, 24]], labels: [1] });
      return `${r.numMasks} masks`;
    });
    p.reset();
    console.log(`  GPU bytes in use: ${mb(before)} -> ${mb(inUse(ctx))} MB (held ${mb(ctx.bytesHeld)} MB)`);
  };

  if (want('12mp')) await photo(4000, 3000, true, '12 MP photo');
  if (want('wide')) await photo(16384, 40, true, 'very wide image');
  if (want('tall')) await photo(40, 16384, true, 'very tall image');

  if (want('video')) {
    console.log('three objects on a 4000x3000 video (2 frames)');
    const frames = [image(4000, 3000, 1), image(4000, 3000, 2)];
    const before = inUse(ctx);
    await attempt('addPoints x3 + propagate + masks()', async () => {
      const v = new VideoPredictor(model, { frames });
      try {
        await v.addPoints(0, 1, [[1000, 1000]], [1]);
        await v.addPoints(0, 2, [[2000, 1500]], [1]);
        const fm = await v.addPoints(0, 3, [[3000, 2000]], [1]);
        fm.release();
        let n = 0;
        for await (const m of v.propagate()) {
          const masks = await m.masks();
          n += masks.length;
          m.release();
        }
        return `${n} mask bytes`;
      } finally {
        v.dispose();
      }
    });
    console.log(`  GPU bytes in use: ${mb(before)} -> ${mb(inUse(ctx))} MB`);
  }

  if (want('pool')) {
    console.log('16 distinct ~1 MP image sizes');
    ctx.trimPool();
    const held0 = ctx.bytesHeld;
    const pipes0 = ctx.stats.pipelinesCompiled;
    let held1 = 0, pipes1 = 0;
    for (let k = 0; k < 16; k++) {
      const W = 1152 + 8 * k, H = 864 + 4 * k;
      p.setImage(image(W, H));
      await p.predict({ points: [[W / 2, H / 2]], labels: [1] });
      if (k === 0) { held1 = ctx.bytesHeld; pipes1 = ctx.stats.pipelinesCompiled; }
    }
    p.reset();
    console.log(`  GPU bytes held: ${mb(held0)} before, ${mb(held1)} after the first size, ${mb(ctx.bytesHeld)} MB after 16 (pooled ${mb(ctx.bytesPooled)} MB); ` +
      `pipelines compiled: ${pipes1 - pipes0} for the first size, +${ctx.stats.pipelinesCompiled - pipes1} for the 15 others`);
  }

  if (want('mask-input')) {
    console.log('maskInput as number[] and Float64Array');
    p.setImage(image(96, 72));
    const m = model.promptEncoder.maskInputSize;
    const ref = await p.predict({ points: [[40, 30]], labels: [1], multimask: false, maskInput: new Float32Array(m * m).fill(-20) });
    await attempt('number[] (all -20, same as the Float32Array)', async () => {
      const r = await p.predict({ points: [[40, 30]], labels: [1], multimask: false, maskInput: Array(m * m).fill(-20) as unknown as Float32Array });
      return `IoU ${r.ious[0]} vs ${ref.ious[0]} with the Float32Array`;
    });
    await attempt('Float64Array', async () => {
      const r = await p.predict({ points: [[40, 30]], labels: [1], multimask: false, maskInput: new Float64Array(m * m).fill(-20) as unknown as Float32Array });
      return `IoU ${r.ious[0]}`;
    });
    await attempt('number[] of the wrong length', async () => {
      await p.predict({ points: [[40, 30]], labels: [1], maskInput: [1, 2, 3] as unknown as Float32Array });
    });
    await attempt('next call', async () => { await p.predict({ points: [[40, 30]], labels: [1] }); });
  }

  if (want('prompts')) {
    console.log('video predictor prompts');
    const frames = [image(96, 72, 1), image(96, 72, 2)];
    const v = new VideoPredictor(model, { frames });
    await attempt('point off the frame (200, 10)', () => v.addPoints(0, 1, [[200, 10]], [1]));
    await attempt('reversed box', () => v.addBox(0, 1, [50, 40, 10, 10]));
    await attempt('zero-area box', () => v.addBox(0, 1, [10, 10, 10, 40]));
    await attempt('object id 1.5', () => v.addPoints(0, 1.5, [[10, 10]], [1]));
    await attempt('label 2 on a point', () => v.addPoints(0, 1, [[10, 10]], [2]));
    v.dispose();
    console.log('image predictor prompts');
    p.setImage(image(96, 72));
    await attempt('zero-area box', () => p.predict({ box: [10, 10, 10, 40] }));
    await attempt('label 2 on a point', () => p.predict({ points: [[10, 10]], labels: [2] }));
  }

  if (want('sizes')) {
    console.log('non-integer sizes, image_size 0, NaN maskThreshold');
    await attempt('setImage width 10.5', async () => {
      const q = new ImagePredictor(model);
      q.setImage({ data: new Uint8Array(84), width: 10.5, height: 2, channels: 4 });
      await q.predict({ points: [[5, 1]], labels: [1] });
    });
    await attempt('image_size 0', async () => {
      EfficientTAM.load(ctx, c.weights, { ...(c.config as object), image_size: 0 }, { checkManifest: false });
    });
    await attempt('maskThreshold NaN', async () => {
      const q = new ImagePredictor(model, { maskThreshold: NaN });
      q.setImage(image(96, 72));
      await q.predict({ points: [[5, 1]], labels: [1] });
    });
    await attempt('next call', async () => {
      p.setImage(image(96, 72));
      await p.predict({ points: [[40, 30]], labels: [1] });
    });
  }

  if (want('bomb')) {
    // a 16000x16000 PNG (a few hundred kB: one colour), under sharp's own pixel limit
    const file = join(tmpdir(), 'etam-probe-16000.png');
    if (!existsSync(file)) {
      const { default: sharp } = await import('sharp');
      await sharp({ create: { width: 16000, height: 16000, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toFile(file);
    }
    console.log(`decode bomb: ${file} (${statSync(file).size} bytes)`);
    const rss0 = process.memoryUsage().rss;
    await attempt('decodeImageFile', async () => {
      const im = await decodeImageFile(file);
      return `${im.width}x${im.height}`;
    });
    console.log(`  RSS ${mb(rss0)} -> ${mb(process.memoryUsage().rss)} MB`);
  }

  if (want('bad-draw')) {
    console.log('a failing call (draw into a texture without RENDER_ATTACHMENT), then a good one');
    p.setImage(image(96, 72));
    await p.predict({ points: [[40, 30]], labels: [1] });
    const before = inUse(ctx);
    const tex = ctx.device.createTexture({ size: [96, 72], format: 'rgba8unorm', usage: 0x04 /* TEXTURE_BINDING */ });
    await attempt('predict with draw', () => p.predict({ points: [[40, 30]], labels: [1], draw: { target: tex } }));
    await attempt('next call', () => p.predict({ points: [[40, 30]], labels: [1] }));
    console.log(`  GPU bytes in use: ${mb(before)} -> ${mb(inUse(ctx))} MB`);
    tex.destroy();
    console.log('a failing call (draw into a destroyed texture), then a good one');
    const gone = ctx.device.createTexture({ size: [96, 72], format: 'rgba8unorm', usage: 0x10 /* RENDER_ATTACHMENT */ });
    gone.destroy();
    const before2 = inUse(ctx);
    await attempt('predict with draw', () => p.predict({ points: [[40, 30]], labels: [1], draw: { target: gone } }));
    await attempt('next call', async () => { const r = await p.predict({ points: [[40, 30]], labels: [1] }); return `IoU ${r.ious[0]}`; });
    console.log(`  GPU bytes in use: ${mb(before2)} -> ${mb(inUse(ctx))} MB`);
  }
  ctx.destroy();
}

await main();
process.exit(0);
