/**
 * What the predictors do with wrong input and with GPU work the GPU refuses (tiny golden model):
 *   - one set of prompt checks for the image and the video predictor (PromptError), made before
 *     any state changes;
 *   - a mask prompt as any array of numbers, its length checked;
 *   - sizes that are not whole numbers, or too large, and options that cannot make a kernel
 *     (NaN threshold, image_size 0) are refused before any WGSL is generated;
 *   - a call the GPU refuses is a GpuError naming it and its sizes; nothing leaks (GPU bytes in
 *     use unchanged) and the next call works and gives what it gave before.
 */
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { GpuError } from '../src/gpu/context.js';
import { loadCase, type CaseData } from '../src/golden/case.js';
import { ImageSizeError } from '../src/io/image_size.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { ImagePredictor } from '../src/model/image_predictor.js';
import { PromptError } from '../src/model/prompts.js';
import { preprocessVideoFrame, VideoPredictor } from '../src/model/video_predictor.js';
import { gpu, randomImage } from './helpers.js';

const DIR = resolve(__dirname, '../../shared/golden/tiny');
const W = 96, H = 72;

let model: EfficientTAM;
let c: CaseData;
beforeAll(async () => {
  const ctx = await gpu();
  c = await loadCase(DIR);
  model = EfficientTAM.load(ctx, c.weights, c.config);
});

const inUse = () => model.ctx.bytesHeld - model.ctx.bytesPooled;

async function rejection(p: Promise<unknown>): Promise<Error> {
  return p.then(() => { throw new Error('expected a rejection'); }, (e: Error) => e);
}

describe('prompts', () => {
  // [what, image predictor options, video predictor call]
  const BAD: [string, RegExp, object, (v: VideoPredictor) => Promise<unknown>][] = [
    ['a point off the frame', /point 0 \(200, 10\) is outside the 96x72 image/, { points: [[200, 10]], labels: [1] }, (v) => v.addPoints(0, 1, [[200, 10]], [1])],
    ['a point above it', /point 0 \(10, -1\) is outside/, { points: [[10, -1]], labels: [1] }, (v) => v.addPoints(0, 1, [[10, -1]], [1])],
    ['a NaN point', /point 0 \(NaN, 10\) is not finite/, { points: [[NaN, 10]], labels: [1] }, (v) => v.addPoints(0, 1, [[NaN, 10]], [1])],
    ['a point of three numbers', /point 0 is not \[x, y\]/, { points: [[1, 2, 3]], labels: [1] }, (v) => v.addPoints(0, 1, [[1, 2, 3]], [1])],
    ['a label 2', /label 2 of point 0 is not 0 or 1/, { points: [[10, 10]], labels: [2] }, (v) => v.addPoints(0, 1, [[10, 10]], [2])],
    ['a reversed box', /box 0 \[50, 40, 10, 10\] has x1 < x0/, { box: [50, 40, 10, 10] }, (v) => v.addBox(0, 1, [50, 40, 10, 10])],
    ['an empty box', /box 0 \[10, 10, 10, 40\] is empty/, { box: [10, 10, 10, 40] }, (v) => v.addBox(0, 1, [10, 10, 10, 40])],
    ['a box off the frame', /box 0 corner \(10, 80\) is outside/, { box: [5, 5, 10, 80] }, (v) => v.addBox(0, 1, [5, 5, 10, 80])],
  ];

  it('the image and the video predictor refuse the same prompts with the same PromptError, state unchanged', async () => {
    const ip = new ImagePredictor(model);
    ip.setImage(randomImage(W, H, 1));
    const vp = new VideoPredictor(model, { frames: [randomImage(W, H, 1), randomImage(W, H, 2)] });
    (await vp.addPoints(0, 7, [[40, 30]], [1])).release();
    for (const [what, message, prompt, call] of BAD) {
      const a = await rejection(ip.predict(prompt));
      expect(a, `image predictor: ${what}`).toBeInstanceOf(PromptError);
      expect(a.message, `image predictor: ${what}`).toMatch(message);
      const b = await rejection(call(vp));
      expect(b, `video predictor: ${what}`).toBeInstanceOf(PromptError);
      expect(b.message, `video predictor: ${what}`).toMatch(message);
      expect(b.message.replace('VideoPredictor', 'ImagePredictor')).toBe(a.message);
    }
    const id = await rejection(vp.addPoints(0, 1.5, [[10, 10]], [1]));
    expect(id).toBeInstanceOf(PromptError);
    expect(id.message).toMatch(/object id 1.5 is not an integer/);
    expect(vp.objIds).toEqual([7]); // no object made by a refused prompt
    // edges are on the frame; both predictors still work
    expect((await ip.predict({ points: [[W, H]], labels: [1] })).numMasks).toBe(3);
    const fm = await vp.addBox(0, 8, [0, 0, W, H]);
    expect(fm.objIds).toEqual([7, 8]);
    fm.release();
    vp.dispose();
    ip.reset();
  });

  it('takes a mask prompt as number[], Float64Array or Float32Array alike, and checks its length and values', async () => {
    const ip = new ImagePredictor(model);
    ip.setImage(randomImage(W, H, 3));
    const m = model.promptEncoder.maskInputSize;
    const first = await ip.predict({ points: [[40, 30]], labels: [1], multimask: false });
    const plane = first.lowResLogits!;
    const f32 = await ip.predict({ points: [[40, 30]], labels: [1], multimask: false, maskInput: plane });
    const list = await ip.predict({ points: [[40, 30]], labels: [1], multimask: false, maskInput: Array.from(plane) });
    const f64 = await ip.predict({ points: [[40, 30]], labels: [1], multimask: false, maskInput: Float64Array.from(plane) });
    expect(Array.from(f32.ious)).not.toEqual(Array.from(first.ious)); // the mask prompt counts
    expect(Array.from(list.ious)).toEqual(Array.from(f32.ious));
    expect(Array.from(list.lowResLogits!)).toEqual(Array.from(f32.lowResLogits!));
    expect(Array.from(f64.lowResLogits!)).toEqual(Array.from(f32.lowResLogits!));
    for (const [bad, message] of [
      [[1, 2, 3], /maskInput has 3 values; expected 1 or B planes of 32x32/],
      [new Float64Array(m * m + 1), /maskInput has 1025 values/],
      [Array(m * m).fill(NaN), /maskInput value 0 \(NaN\) is not a finite/],
      [new Float64Array(m * m).fill(1e39), /maskInput value 0 \(1e\+39\) is not a finite f32/],
      ['abc', /maskInput is not an array of numbers/],
    ] as const) {
      const e = await rejection(ip.predict({ points: [[40, 30]], labels: [1], maskInput: bad as unknown as number[] }));
      expect(e).toBeInstanceOf(PromptError);
      expect(e.message).toMatch(message);
    }
    ip.reset();
  });
});

describe('sizes and options, checked before any WGSL', () => {
  it('refuses sizes that are not whole numbers, too large an image, a NaN threshold, image_size 0', async () => {
    const ctx = model.ctx;
    const ip = new ImagePredictor(model);
    const compiled = ctx.stats.pipelinesCompiled, held = ctx.bytesHeld;
    expect(() => ip.setImage({ data: new Uint8Array(84), width: 10.5, height: 2, channels: 4 })).toThrow(ImageSizeError);
    expect(() => ip.setImage({ data: new Uint8Array(84), width: 10.5, height: 2, channels: 4 })).toThrow(/10.5x2 is not two positive integers/);
    // 20000 x 20000 is refused before anything of that size exists
    expect(() => ip.setImage({ data: new Uint8Array(4), width: 20000, height: 20000, channels: 4 })).toThrow(/400.0 megapixels, more than the 134.2 megapixels/);
    const small = new ImagePredictor(model, { maxImagePixels: 1000 });
    expect(() => small.setImage(randomImage(40, 30, 1))).toThrow(ImageSizeError);
    const side = ctx.device.limits.maxTextureDimension2D;
    expect(() => ip.setImage({ data: new Uint8Array(4), width: side + 1, height: 1, channels: 4 })).toThrow(/largest texture/);
    expect(() => ip.setEmbedding(ip.model.noMemEmbed, 10.5, 3)).toThrow(/not \[1, 8, 8/);
    expect(() => new ImagePredictor(model, { maskThreshold: NaN })).toThrow(/maskThreshold NaN is not a finite number/);
    expect(() => new VideoPredictor(model, { frames: [randomImage(W, H, 1)], videoWidth: 10.5, videoHeight: 4 })).toThrow(ImageSizeError);
    expect(() => EfficientTAM.load(ctx, c.weights, { ...(c.config as object), image_size: 0 }, { checkManifest: false }))
      .toThrow(/image_size must be a positive integer multiple of the patch size/);
    expect(() => EfficientTAM.load(ctx, c.weights, { ...(c.config as object), image_size: 127.5 }, { checkManifest: false }))
      .toThrow(/image_size must be a positive integer/);
    expect(ctx.stats.pipelinesCompiled).toBe(compiled);
    expect(ctx.bytesHeld).toBe(held);
    // the predictor is fine
    ip.setImage(randomImage(W, H, 1));
    expect((await ip.predict({ points: [[40, 30]], labels: [1] })).masks!.length).toBe(3 * W * H);
    ip.reset();
  });
});

describe('GPU refusals', () => {
  it('image predictor: a refused predict is a GpuError naming it; nothing leaks; the next predict gives the same masks', async () => {
    const ctx = model.ctx;
    const ip = new ImagePredictor(model);
    ip.setImage(randomImage(W, H, 5));
    const prompt = { points: [[40, 30]], labels: [1] };
    const before = await ip.predict(prompt);
    await ctx.sync();
    const used = inUse();
    const gone = ctx.device.createTexture({ size: [W, H], format: 'rgba8unorm', usage: 0x10 /* RENDER_ATTACHMENT */ });
    gone.destroy(); // drawing into it is refused at the submit
    for (let k = 0; k < 3; k++) {
      const e = await rejection(ip.predict({ ...prompt, draw: { target: gone } }));
      expect(e).toBeInstanceOf(GpuError);
      expect(e.message).toMatch(/^ImagePredictor\.predict \(96x72 image, 1 object x 3 masks\): the GPU refused the work \(validation error\): Destroyed texture/);
      expect(inUse()).toBe(used);
    }
    const after = await ip.predict(prompt);
    expect(Array.from(after.ious)).toEqual(Array.from(before.ious));
    expect(Array.from(after.masks!)).toEqual(Array.from(before.masks!));
    expect(inUse()).toBe(used);
    ip.reset();
  });

  it('video predictor: a frame the GPU cannot encode is a GpuError; nothing leaks, the state is unchanged, tracking goes on', async () => {
    const ctx = model.ctx;
    const S = model.imageSize;
    const tensors = [0, 1, 2, 3].map((i) => preprocessVideoFrame(ctx, randomImage(W, H, 10 + i), S));
    const kept = preprocessVideoFrame(ctx, randomImage(W, H, 12), S); // frame 2 again, later
    const source = { frames: (i: number) => tensors[i]!, numFrames: 4, videoWidth: W, videoHeight: H };
    const ref = new VideoPredictor(model, source);
    (await ref.addPoints(0, 1, [[40, 30]], [1])).release();
    const want: Float32Array[] = [];
    for await (const fm of ref.propagate()) { want.push(await fm.lowResLogits()); fm.release(); }
    ref.dispose();
    await ctx.sync();
    const start = inUse();

    const vp = new VideoPredictor(model, source);
    (await vp.addPoints(0, 1, [[40, 30]], [1])).release();
    tensors[2]!.buffer.destroy(); // by its owner: encoding frame 2 is refused
    let beforeFrame2 = -1;
    const e = await rejection((async () => {
      for await (const fm of vp.propagate()) {
        expect(Array.from(await fm.lowResLogits())).toEqual(Array.from(want[fm.frameIndex]!));
        fm.release();
        await ctx.sync();
        beforeFrame2 = inUse();
      }
    })());
    expect(e).toBeInstanceOf(GpuError);
    expect(e.message).toMatch(/^VideoPredictor: encoding frame 2 \(96x72\): the GPU refused the work \(validation error\)/);
    await ctx.sync();
    expect(inUse()).toBe(beforeFrame2); // nothing of the refused step is held
    expect(await vp.readFrameState(2, 1)).toBeNull(); // nor filed
    expect(await vp.readFrameState(1, 1)).not.toBeNull();
    // with the frame given again, tracking resumes and gives what the reference gave
    tensors[2] = kept;
    const rest: Float32Array[] = [];
    for await (const fm of vp.propagate({ start: 2 })) { rest.push(await fm.lowResLogits()); fm.release(); }
    expect(rest.length).toBe(2);
    expect(Array.from(rest[0]!)).toEqual(Array.from(want[2]!));
    expect(Array.from(rest[1]!)).toEqual(Array.from(want[3]!));
    vp.dispose();
    await ctx.sync();
    expect(inUse()).toBe(start);
    for (const t of tensors) t.release();
  });

  it('a draw the GPU refuses is reported by the next call, once, naming the draw', async () => {
    const ctx = model.ctx;
    const vp = new VideoPredictor(model, { frames: [randomImage(W, H, 1)] });
    const fm = await vp.addPoints(0, 1, [[40, 30]], [1]);
    const gone = ctx.device.createTexture({ size: [W, H], format: 'rgba8unorm', usage: 0x10 });
    gone.destroy();
    fm.draw(gone);
    await new Promise((r) => setTimeout(r, 20));
    const e = await rejection(fm.objectScores());
    expect(e).toBeInstanceOf(GpuError);
    expect(e.message).toMatch(/^drawMasks \(1 object into a 96x72 rgba8unorm texture\): the GPU refused the work/);
    expect((await fm.present()).length).toBe(1);
    expect(() => fm.draw(ctx.device.createTexture({ size: [W, H], format: 'rgba8unorm', usage: 0x04 }))).toThrow(/RENDER_ATTACHMENT/);
    fm.release();
    vp.dispose();
  });
});
