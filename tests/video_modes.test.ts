/**
 * Modes of the video predictor beyond the golden script. Streaming: frames read once from an
 * async iterator and dropped, the memory bank pruned to what tracking can still use; it must give
 * the same masks as the ordinary mode, and the GPU memory held must stop growing once the bank is
 * full (150 frames here; `npm run bench:streaming` runs 1,000 and reports time and memory). The
 * model's fill_hole_area on the stored masks.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCase } from '../src/golden/case.js';
import { fillHolesInMaskScores } from '../src/kernels/mask_postprocess.js';
import { EfficientTAM as Model } from '../src/model/efficienttam.js';
import { caseModel } from '../src/golden/stages.js';
import type { ImageSource } from '../src/kernels/preprocess.js';
import type { EfficientTAM } from '../src/model/efficienttam.js';
import { VideoPredictor } from '../src/model/video_predictor.js';
import type { GpuContext } from '../src/gpu/context.js';
import { gpu, maxAbsDiff, movingDiscFrame } from './helpers.js';

const GOLDEN = resolve(__dirname, '../../shared/golden');
const W = 96, H = 64;

/** Frame i of a generated video: a textured background and a disc moving across it. */
const frame = movingDiscFrame;

async function* frames(n: number): AsyncGenerator<ImageSource> {
  for (let i = 0; i < n; i++) yield frame(i);
}

let modelP: Promise<EfficientTAM> | null = null;
async function model(): Promise<EfficientTAM> {
  modelP ??= (async () => caseModel(await gpu(), await loadCase(resolve(GOLDEN, 'tiny'))))();
  return modelP;
}

describe('VideoPredictor streaming mode', () => {
  it('tracks like the ordinary mode (same low-res logits on every frame)', async () => {
    const m = await model();
    const n = 24;
    const run = async (streaming: boolean): Promise<Float32Array[]> => {
      const vp = streaming
        ? new VideoPredictor(m, { frames: frames(n), streaming: true })
        : new VideoPredictor(m, { frames: Array.from({ length: n }, (_, i) => frame(i)) });
      (await vp.addPoints(0, 1, [[45, 32]], [1])).release();
      (await vp.addBox(0, 2, [2, 2, 30, 20])).release();
      const out: Float32Array[] = [];
      for await (const fm of vp.propagate()) {
        out.push(await fm.lowResLogits());
        fm.release();
      }
      vp.dispose();
      return out;
    };
    const plain = await run(false), streamed = await run(true);
    expect(streamed.length).toBe(n);
    expect(plain.length).toBe(n);
    for (let i = 0; i < n; i++) expect(maxAbsDiff(streamed[i]!, plain[i]!), `frame ${i}`).toBe(0);
  });

  // the bank is full after max_obj_ptrs_in_encoder (16) frames; the samples start well after
  const n = 150, every = 10, fullBy = 40;
  // the limit follows the work: a second per frame (~0.03 s on a quiet machine, 0.15 s on a busy one)
  it('holds flat GPU memory once the memory bank is full (150 frames; bench/streaming.ts runs 1,000)', async () => {
    const m = await model();
    const ctx = m.ctx;
    const vp = new VideoPredictor(m, { frames: frames(n), streaming: true });
    (await vp.addPoints(0, 1, [[45, 32]], [1])).release();
    const held: number[] = [], inUse: number[] = [];
    let count = 0, present = 0;
    for await (const fm of vp.propagate()) {
      if (fm.frameIndex % 25 === 5) present += (await fm.present())[0] ? 1 : 0;
      fm.release();
      count++;
      if (count >= fullBy && count % every === 0) {
        ctx.flush();
        held.push(ctx.bytesHeld);
        inUse.push(ctx.bytesHeld - ctx.bytesPooled);
      }
    }
    expect(count).toBe(n);
    expect(present).toBeGreaterThan(0); // it tracked something
    expect(held.length).toBe((n - fullBy) / every + 1);
    // from frame 40 on nothing grows
    for (let k = 1; k < held.length; k++) {
      expect(held[k], `bytes held at frame ${fullBy + k * every}`).toBe(held[0]);
      expect(inUse[k], `bytes in use at frame ${fullBy + k * every}`).toBe(inUse[0]);
    }
    // and a prompt on a frame long dropped is refused, the state unchanged
    await expect(vp.addPoints(10, 1, [[45, 32]], [1])).rejects.toThrow(/no longer held/);
    await expect(vp.addPoints(n, 1, [[45, 32]], [1])).rejects.toThrow(/does not exist/);
    vp.dispose();
  }, 60_000 + n * 1_000);

  it('refuses reverse tracking', async () => {
    const m = await model();
    const vp = new VideoPredictor(m, { frames: frames(4), streaming: true });
    (await vp.addPoints(0, 1, [[45, 32]], [1])).release();
    const it = vp.propagate({ reverse: true, start: 2 });
    await expect(it.next()).rejects.toThrow(/forwards only/);
    vp.dispose();
  });
});

describe('VideoPredictor fill_hole_area', () => {
  it('fills the holes of the stored masks as fill_holes_in_mask_scores', async () => {
    const base = await model();
    const ctx = base.ctx;
    const c = await loadCase(resolve(GOLDEN, 'tiny'));
    const area = 40;
    const filledModel = Model.load(ctx, c.weights, { ...c.config, fill_hole_area: area });
    // a mask prompt (used as the output as it is): a ring around a small hole
    const ring = new Uint8Array(W * H);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const r2 = (x - 48) ** 2 + (y - 32) ** 2;
      ring[y * W + x] = r2 < 22 ** 2 && r2 >= 5 ** 2 ? 1 : 0;
    }
    const run = async (m: EfficientTAM): Promise<[Float32Array, number]> => {
      const vp = new VideoPredictor(m, { frames: Array.from({ length: 4 }, (_, i) => frame(i)) });
      const p = await vp.addMask(0, 1, { data: ring, width: W, height: H });
      const low = await p.lowResLogits();
      p.release();
      let tracked = 0;
      for await (const fm of vp.propagate()) {
        if ((await fm.lowResLogits()).every(Number.isFinite)) tracked++;
        fm.release();
      }
      vp.dispose();
      return [low, tracked];
    };
    const [plain] = await run(base);
    const [filled, tracked] = await run(filledModel);
    const g = Math.sqrt(plain.length);
    const want = await fillHolesInMaskScores(ctx, ctx.upload(plain, [1, g, g]), area).read();
    expect(maxAbsDiff(filled, want)).toBe(0);
    let changed = 0;
    for (let k = 0; k < plain.length; k++) if (filled[k] !== plain[k]) changed++;
    expect(changed).toBeGreaterThan(0); // the hole was there, and is filled
    expect(tracked).toBe(4);
  });
});

describe('VideoPredictor non_overlap_masks', () => {
  it('keeps only the highest-logit object at each pixel of the returned masks', async () => {
    const m = await model();
    const n = 3;
    const run = async (nonOverlapMasks: boolean) => {
      const vp = new VideoPredictor(m, { frames: Array.from({ length: n }, (_, i) => frame(i)), nonOverlapMasks });
      (await vp.addBox(0, 1, [10, 5, 80, 60])).release();
      (await vp.addBox(0, 2, [12, 7, 82, 61])).release(); // nearly the same box: overlapping masks
      const logits: Float32Array[] = [], bytes: Uint8Array[] = [], one: Uint8Array[] = [];
      for await (const fm of vp.propagate()) {
        logits.push(await fm.masks({ logits: true }) as Float32Array);
        bytes.push(await fm.masks() as Uint8Array);
        one.push(await fm.masks({ objId: 2 }) as Uint8Array);
        fm.release();
      }
      vp.dispose();
      return { logits, bytes, one };
    };
    const plain = await run(false), cons = await run(true);
    const P = W * H;
    let overlapBefore = 0;
    for (let f = 0; f < n; f++) {
      const a = plain.logits[f]!, b = cons.logits[f]!;
      const want = new Float32Array(2 * P);
      for (let p = 0; p < P; p++) {
        const best = a[P + p]! > a[p]! ? 1 : 0; // torch.argmax: the first on ties
        for (let o = 0; o < 2; o++) want[o * P + p] = o === best ? a[o * P + p]! : Math.min(a[o * P + p]!, -10);
        if (a[p]! > 0 && a[P + p]! > 0) overlapBefore++;
        expect(cons.bytes[f]![p]! + cons.bytes[f]![P + p]!).toBeLessThanOrEqual(1);
      }
      expect(maxAbsDiff(b, want)).toBe(0);
      expect(Array.from(cons.one[f]!)).toEqual(Array.from(cons.bytes[f]!.subarray(P)));
    }
    expect(overlapBefore).toBeGreaterThan(0); // the objects did overlap without the constraint
  });
});

describe('FrameMasks.draw', () => {
  it('draws every object where masks() says it is, without a readback of the masks', async () => {
    const m = await model();
    const ctx = m.ctx;
    const vp = new VideoPredictor(m, { frames: Array.from({ length: 2 }, (_, i) => frame(i)) });
    // mask prompts (used as the output as they are): two overlapping discs
    const disc = (cx: number, cy: number, r: number) => Uint8Array.from({ length: W * H }, (_, p) => ((p % W) - cx) ** 2 + (Math.floor(p / W) - cy) ** 2 < r * r ? 1 : 0);
    (await vp.addMask(0, 1, { data: disc(35, 30, 18), width: W, height: H })).release();
    const fm = await vp.addMask(0, 2, { data: disc(60, 34, 16), width: W, height: H });
    const tex = ctx.device.createTexture({ size: [W, H], format: 'rgba8unorm', usage: 0x10 /* RENDER_ATTACHMENT */ | 0x01 /* COPY_SRC */ });
    const reads = ctx.stats.readbacks;
    fm.draw(tex, { colors: [[255, 0, 0], [0, 0, 255]], alpha: 1 });
    expect(ctx.stats.readbacks).toBe(reads);
    const px = await readTextureBytes(ctx, tex);
    const masks = await fm.masks() as Uint8Array;
    const P = W * H;
    let covered = 0;
    for (let p = 0; p < P; p++) {
      // the last object covering a pixel gives its colour
      const want = masks[P + p] ? [0, 0, 255] : masks[p] ? [255, 0, 0] : null;
      if (want) { covered++; expect([px[4 * p], px[4 * p + 1], px[4 * p + 2]], `pixel ${p}`).toEqual(want); }
      else expect(px[4 * p + 3], `pixel ${p} alpha`).toBe(0);
    }
    expect(covered).toBeGreaterThan(0);
    fm.release();
    tex.destroy();
    vp.dispose();
  });
});

async function readTextureBytes(ctx: GpuContext, tex: GPUTexture): Promise<Uint8Array> {
  const row = Math.ceil((tex.width * 4) / 256) * 256;
  const buf = ctx.device.createBuffer({ size: row * tex.height, usage: 0x0001 | 0x0008 }); // MAP_READ | COPY_DST
  const enc = ctx.device.createCommandEncoder();
  enc.copyTextureToBuffer({ texture: tex }, { buffer: buf, bytesPerRow: row }, [tex.width, tex.height]);
  ctx.device.queue.submit([enc.finish()]);
  await buf.mapAsync(1);
  const src = new Uint8Array(buf.getMappedRange());
  const out = new Uint8Array(tex.width * tex.height * 4);
  for (let y = 0; y < tex.height; y++) out.set(src.subarray(y * row, y * row + tex.width * 4), y * tex.width * 4);
  buf.unmap();
  buf.destroy();
  return out;
}
