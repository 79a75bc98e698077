/**
 * No pipeline compile on a per-frame path: while a video's memory bank fills up (the first 16
 * tracked frames, one more memory frame or object pointer each), the kernels whose sizes follow
 * the memory size (elementwise add, rope, the composed attention's gather/scatter, softmax) read
 * those sizes from uniforms, so after the first two tracked frames nothing compiles.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GpuContext } from '../src/gpu/context.js';
import { loadCase } from '../src/golden/case.js';
import { caseModel } from '../src/golden/stages.js';
import type { ImageSource } from '../src/kernels/preprocess.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { ImagePredictor } from '../src/model/image_predictor.js';
import { VideoPredictor } from '../src/model/video_predictor.js';
import { gpu } from './helpers.js';

const GOLDEN = resolve(__dirname, '../../shared/golden');
const W = 96, H = 64;

/** Frame i of a generated video: a textured background and two discs moving across it. */
function frame(i: number): ImageSource {
  const data = new Uint8Array(W * H * 3);
  const ax = 20 + 50 * (0.5 + 0.5 * Math.sin(i / 15)), ay = 32 + 12 * Math.cos(i / 11);
  const bx = 70 - 30 * (0.5 + 0.5 * Math.sin(i / 9)), by = 16 + 4 * Math.sin(i / 7);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const o = (y * W + x) * 3;
    const inA = (x - ax) ** 2 + (y - ay) ** 2 < 12 ** 2;
    const inB = (x - bx) ** 2 + (y - by) ** 2 < 8 ** 2;
    data[o] = inA ? 230 : inB ? 30 : (x * 7 + y * 3 + i) & 127;
    data[o + 1] = inA ? 40 : inB ? 200 : (x * 2 + y * 5) & 127;
    data[o + 2] = inA ? 60 : inB ? 50 : 90;
  }
  return { data, width: W, height: H, channels: 3 };
}

describe('pipeline compiles per tracked frame', () => {
  it('tracking two objects over 20 frames compiles nothing after the second tracked frame', async () => {
    const ctx = await gpu();
    const m = caseModel(ctx, await loadCase(resolve(GOLDEN, 'tiny')));
    const n = 20;
    const vp = new VideoPredictor(m, { frames: Array.from({ length: n }, (_, i) => frame(i)) });
    (await vp.addPoints(0, 1, [[45, 32]], [1])).release();
    (await vp.addPoints(0, 2, [[60, 16]], [1])).release();
    const compiled: number[] = [];   // pipelinesCompiled after each tracked frame
    for await (const fm of vp.propagate()) {
      await fm.lowResLogits();   // the frame's work has been recorded and run
      fm.release();
      compiled.push(ctx.stats.pipelinesCompiled);
    }
    vp.dispose();
    expect(compiled.length).toBe(n);
    // tracked frames 2..19 (the memory bank grows through frame 16) compile nothing
    expect(compiled.slice(2), `pipelines compiled after each frame: ${compiled.join(', ')}`).toEqual(
      new Array(n - 2).fill(compiled[1]));
  }, 300_000);

  // create() compiles the model's pipelines ahead (its workload): the predictors' own small
  // kernels too, so neither a first image nor a first tracked frame compiles anything, whatever
  // the prompts (clicks, boxes batched in any number, a mask input)
  for (const name of ['tiny', 'sam2_tiny']) {
    it(`${name}: after create, a first image's prompts and a first video with two objects compile nothing`, async () => {
      const ctx = await GpuContext.create(); // its own: no pipeline from another test
      const c = await loadCase(resolve(GOLDEN, name));
      const m = await EfficientTAM.create(ctx, c.weights, c.config, { tuning: 'off', store: null });
      expect(m.kernelReport?.compiled).toBeGreaterThan(0);
      const steps: string[] = [];
      let before = ctx.stats.pipelinesCompiled;
      const note = (what: string) => {
        steps.push(`${what}: ${ctx.stats.pipelinesCompiled - before}`);
        before = ctx.stats.pipelinesCompiled;
      };

      const ip = new ImagePredictor(m);
      ip.setImage(frame(0));
      await ip.predict({ points: [[45, 32]], labels: [1] });
      note('image, one click');
      const one = await ip.predict({ points: [[45, 32]], labels: [1], multimask: false, overlay: true });
      note('image, one mask and an overlay');
      await ip.predict({ box: [[10, 10, 50, 40], [40, 20, 90, 60]], multimask: false });
      note('image, two boxes');
      await ip.predict({ box: [[10, 10, 50, 40], [40, 20, 90, 60], [1, 1, 9, 9]] });
      note('image, three boxes, three masks each');
      await ip.predict({ points: [[45, 32], [3, 3]], labels: [1, 0], maskInput: one.lowResLogits!, multimask: false });
      note('image, two points and a mask input');

      const vp = new VideoPredictor(m, { frames: Array.from({ length: 3 }, (_, i) => frame(i)) });
      (await vp.addPoints(0, 1, [[45, 32]], [1])).release();
      (await vp.addBox(0, 2, [60, 8, 80, 26])).release();
      note('video, a click and a box');
      for await (const fm of vp.propagate()) {
        await fm.masks({ objId: 1 });
        fm.release();
        note(`frame ${fm.frameIndex}`);
      }
      vp.dispose();
      m.release();
      ctx.destroy();
      expect(steps.join(', '), 'pipelines compiled at each step').toBe(steps.map((st) => `${st.split(':')[0]}: 0`).join(', '));
    }, 300_000);
  }
});
