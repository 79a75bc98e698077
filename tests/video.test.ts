/**
 * The video predictor: parity with the official EfficientTAMVideoPredictor on the tiny golden
 * cases (the whole script: prompts, three propagations, a correction kept as a conditioning
 * frame, reverse tracking), the tracking kernels against CPU references, Pillow's bicubic frame
 * preprocessing, and the errors (which leave the state as it was).
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareWithReference, loadCase, type CaseData } from '../src/golden/case.js';
import { formatTable, type GoldenRow } from '../src/golden/compare.js';
import { caseModel, hwcToChw } from '../src/golden/stages.js';
import { caseFrames, replayScript, videoHW } from '../src/golden/stages_video.js';
import { decodeImageFile } from '../src/io/image.js';
import { bf16RoundCpu, memoryFinish, NO_OBJ_SCORE, objPtrGate, pickBestMask } from '../src/kernels/track_ops.js';
import type { ImageSource } from '../src/kernels/preprocess.js';
import { preprocessVideoFrame, VideoPredictor } from '../src/model/video_predictor.js';
import { gpu, maxAbsDiff, randn } from './helpers.js';

const GOLDEN = resolve(__dirname, '../../shared/golden');
const CASES = ['tiny', 'tiny_pool1', 'tiny_pool2'];

describe('tracking kernels', () => {
  it('pickBestMask: first largest IoU, its token, the object-score gate', async () => {
    const ctx = await gpu();
    const B = 3, M = 3, h = 5, w = 7, C = 10;
    const masks = randn(B * M * h * w, 1);
    const iou = Float32Array.from([0.2, 0.9, 0.9, 0.5, 0.1, 0.3, 0.1, 0.2, 0.7]); // ties -> first
    const tokens = randn(B * M * C, 2);
    const score = Float32Array.from([1.5, -0.5, 0]);
    const T = (x: Float32Array, s: number[]) => ctx.upload(x, s);
    const out = pickBestMask(ctx, T(masks, [B, M, h, w]), T(iou, [B, M]), T(tokens, [B, M, C]), T(score, [B, 1]), { gateOnScore: true });
    const low = await out.lowRes.read(), tok = await out.token.read();
    const best = [1, 0, 2];
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < h * w; i++) {
        const want = score[b]! > 0 ? masks[(b * M + best[b]!) * h * w + i]! : NO_OBJ_SCORE;
        expect(low[b * h * w + i]).toBe(want);
      }
      expect(Array.from(tok.subarray(b * C, (b + 1) * C))).toEqual(Array.from(tokens.subarray((b * M + best[b]!) * C, (b * M + best[b]! + 1) * C)));
    }
    // one token (use_multimask_token_for_obj_ptr off): token 0 whatever the best mask
    const one = pickBestMask(ctx, T(masks, [B, M, h, w]), T(iou, [B, M]), T(tokens.subarray(0, B * C), [B, 1, C]), T(score, [B, 1]), { gateOnScore: false });
    expect(Array.from(await one.token.read())).toEqual(Array.from(tokens.subarray(0, B * C)));
    expect((await one.lowRes.read())[h * w]).toBe(masks[(1 * M + 0) * h * w]);
  });

  it('objPtrGate: fixed and additive no_obj_ptr, hard and soft', async () => {
    const ctx = await gpu();
    const B = 2, C = 37;
    const ptr = randn(B * C, 3), no = randn(C, 4), score = Float32Array.from([0.7, -2]);
    for (const fixed of [true, false]) for (const soft of [false, true]) {
      const out = await objPtrGate(ctx, ctx.upload(ptr, [B, C]), ctx.upload(score, [B, 1]), ctx.upload(no, [C]), { fixed, soft }).read();
      const want = new Float32Array(B * C);
      for (let b = 0; b < B; b++) {
        const l = soft ? 1 / (1 + Math.exp(-score[b]!)) : score[b]! > 0 ? 1 : 0;
        for (let c = 0; c < C; c++) want[b * C + c] = (fixed ? l * ptr[b * C + c]! : ptr[b * C + c]!) + (1 - l) * no[c]!;
      }
      expect(maxAbsDiff(out, want)).toBeLessThan(1e-6);
    }
  });

  it('memoryFinish: bfloat16 rounding (ties to even), no-object embedding', async () => {
    const ctx = await gpu();
    const D = 16, N = 50;
    const x = randn(N * D, 5, 3);
    // exact ties and edge values
    x.set([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 0, -0, 65504.7, 1e-40], 0);
    const emb = randn(D, 6);
    const plain = await memoryFinish(ctx, ctx.upload(x, [N, D]), ctx.upload(Float32Array.of(1), [1, 1]), null, { bf16: true }).read();
    expect(Array.from(plain)).toEqual(Array.from(bf16RoundCpu(x)));
    expect(plain[0]).toBe(1); // tie -> even
    expect(plain[1]).toBe(1 + 2 ** -6);
    const absent = await memoryFinish(ctx, ctx.upload(x, [N, D]), ctx.upload(Float32Array.of(-1), [1, 1]), ctx.upload(emb, [D]), { bf16: true }).read();
    const want = bf16RoundCpu(x.map((v, i) => v + emb[i % D]!));
    expect(Array.from(absent)).toEqual(Array.from(want));
    const present = await memoryFinish(ctx, ctx.upload(x, [N, D]), ctx.upload(Float32Array.of(0.5), [1, 1]), ctx.upload(emb, [D]), { bf16: false }).read();
    expect(Array.from(present)).toEqual(Array.from(x));
  });
});

describe('video frame preprocessing', () => {
  it("matches the reference's video.frames (Pillow bicubic resize, /255, normalise) exactly", async () => {
    const ctx = await gpu();
    const c = await loadCase(resolve(GOLDEN, 'tiny'));
    const [N, , S] = c.tensors.info('video.frames').shape as [number, number, number, number];
    const ref = c.tensors.getF32('video.frames');
    const names = JSON.parse(c.tensors.metadata.frames!) as string[];
    for (const i of [0, N - 1]) {
      const img = await decodeImageFile(resolve(GOLDEN, '../data/bedroom', names[i]!));
      const x = preprocessVideoFrame(ctx, img, S);
      const ours = hwcToChw(await x.read(), S, S, 3);
      x.release();
      expect(maxAbsDiff(ours, ref.subarray(i * 3 * S * S, (i + 1) * 3 * S * S))).toBeLessThan(1e-6);
    }
  });
});

/** Runs the case's script; every reference row compared, present/absent checked per object and frame. */
async function parity(c: CaseData): Promise<{ rows: GoldenRow[]; presence: string[]; msPerFrame: number }> {
  const ctx = await gpu();
  const rows: GoldenRow[] = [];
  const presence: string[] = [];
  const times: number[] = [];
  for await (const [name, v] of replayScript(ctx, c, { onFrame: (_t, _f, ms) => times.push(ms) })) {
    if (!c.tensors.names().includes(name)) throw new Error(`output ${name} has no reference`);
    rows.push(compareWithReference(c, name, v));
    if (name.endsWith('object_score_logits')) {
      const ref = c.tensors.getF32(name)[0]!;
      if ((ref > 0) !== (v[0]! > 0)) presence.push(`${name}: ours ${v[0]}, reference ${ref}`);
    }
  }
  times.sort((a, b) => a - b);
  return { rows, presence, msPerFrame: times[Math.floor(times.length / 2)]! };
}

describe.each(CASES)('golden %s: video predictor', (name) => {
  it('replays the script: every video.* reference matches, object presence agrees on every frame', async () => {
    const c = await loadCase(resolve(GOLDEN, name));
    const { rows, presence, msPerFrame } = await parity(c);
    console.log(`${name} (median ${msPerFrame.toFixed(0)} ms per tracked frame, 2 objects)\n${formatTable(rows)}`);
    const expected = c.tensors.names().filter((n) => /^video\.(click\d+|pass\d+)\./.test(n)).sort();
    expect(rows.map((r) => r.name).sort()).toEqual(expected);
    for (const row of rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
    expect(presence).toEqual([]);
  }, 900_000);
});

describe('video predictor: errors leave the state unchanged', () => {
  /** small pixel frames of the video's size, one of another size */
  const frame = (w: number, h: number, seed: number): ImageSource => {
    const data = new Uint8Array(w * h * 3);
    let s = seed;
    for (let i = 0; i < data.length; i++) { s = (s * 1103515245 + 12345) >>> 0; data[i] = (s >>> 16) & 255; }
    return { data, width: w, height: h, channels: 3 };
  };

  it('rejects bad frames, object ids and prompts with clear messages', async () => {
    const ctx = await gpu();
    const c = await loadCase(resolve(GOLDEN, 'tiny'));
    const model = caseModel(ctx, c);
    const W = 40, H = 30;
    const frames = [frame(W, H, 1), frame(W, H, 2), frame(W + 2, H, 3), frame(W, H, 4)];
    const vp = new VideoPredictor(model, { frames });
    expect(vp.videoSize).toEqual([H, W]);

    await expect(vp.propagate().next()).rejects.toThrow(/no object has a prompt/);
    const first = await vp.addPoints(0, 1, [[10, 12]], [1]);
    expect(first.objIds).toEqual([1]);
    const m0 = (await first.masks()) as Uint8Array;
    expect(m0.length).toBe(H * W);
    const scores0 = await first.objectScores();
    expect(await first.present()).toEqual([scores0[0]! > 0]);
    await expect(first.masks({ objId: 7 })).rejects.toThrow(/unknown object id 7/);
    first.release();
    const state0 = await vp.readFrameState(0, 1);

    await expect(vp.addPoints(4, 2, [[1, 1]], [1])).rejects.toThrow(/frame 4 does not exist \(the video has 4 frames\)/);
    await expect(vp.addPoints(-1, 2, [[1, 1]], [1])).rejects.toThrow(/frame index -1/);
    await expect(vp.addPoints(2, 2, [[1, 1]], [1])).rejects.toThrow(/frame 2 is 42x30, but the video is 40x30/);
    await expect(vp.addPoints(1, 2, [[1, 1]], [1, 0])).rejects.toThrow(/1 points but 2 labels/);
    await expect(vp.addPoints(1, 2, [[1, 1]], [5])).rejects.toThrow(/label 5/);
    await expect(vp.addPoints(1, 2, [], [])).rejects.toThrow(/at least one point or a box/);
    expect(() => vp.removeObject(2)).toThrow(/unknown object id 2; objects: \[1\]/);
    await expect(vp.readFrameState(0, 2)).rejects.toThrow(/unknown object id 2/);
    // nothing of the failed calls stayed behind
    expect(vp.objIds).toEqual([1]);
    const state1 = await vp.readFrameState(0, 1);
    expect(state1!.predMasks).toEqual(state0!.predMasks);
    expect(await vp.readFrameState(1, 1)).toBeNull();

    // tracking reaches the bad frame and stops there with the same message
    const seen: number[] = [];
    await expect((async () => {
      for await (const fm of vp.propagate()) { seen.push(fm.frameIndex); fm.release(); }
    })()).rejects.toThrow(/frame 2 is 42x30/);
    expect(seen).toEqual([0, 1]);
    // the predictor is usable afterwards
    const again = await vp.addBox(1, 3, [2, 3, 20, 25]);
    expect(again.objIds).toEqual([1, 3]);
    again.release();
    // a change of prompts while a propagation is suspended ends that propagation
    const run = vp.propagate({ start: 0, maxFrames: 1 });
    const r0 = await run.next();
    expect((r0.value as { frameIndex: number }).frameIndex).toBe(0);
    (await vp.addPoints(0, 3, [[5, 5]], [1])).release();
    await expect(run.next()).rejects.toThrow(/changed during this propagation/);
    vp.removeObject(1);
    expect(vp.objIds).toEqual([3]);
    vp.reset();
    expect(vp.objIds).toEqual([]);
    vp.dispose();
  });

  it('checks the frame source and the preprocessed frames', async () => {
    const ctx = await gpu();
    const c = await loadCase(resolve(GOLDEN, 'tiny'));
    const model = caseModel(ctx, c);
    expect(() => new VideoPredictor(model, { frames: (i: number) => frame(8, 8, i) })).toThrow(/needs numFrames/);
    expect(() => new VideoPredictor(model, { frames: [] })).toThrow(/no frames/);
    const bad = ctx.upload(new Float32Array(64 * 64 * 3), [1, 64, 64, 3]);
    const vp = new VideoPredictor(model, { frames: [bad], videoHeight: 10, videoWidth: 10 });
    await expect(vp.addPoints(0, 1, [[1, 1]], [1])).rejects.toThrow(/frame 0 is a tensor \[1,64,64,3\], expected a preprocessed \[1, 128, 128, 3\]/);
    expect(vp.objIds).toEqual([]);
    bad.release();
    const junk = new VideoPredictor(model, { frames: [null as never, 7 as never, {} as never], videoHeight: 10, videoWidth: 10 });
    await expect(junk.addPoints(0, 1, [[1, 1]], [1])).rejects.toThrow(/frame 0 is null, not a tensor or an image/);
    await expect(junk.addPoints(1, 1, [[1, 1]], [1])).rejects.toThrow(/frame 1 is number, not a tensor or an image/);
    await expect(junk.addPoints(2, 1, [[1, 1]], [1])).rejects.toThrow(/frame 2 is neither a tensor nor an image/);
    expect(junk.objIds).toEqual([]);

    // an async iterator source: frames are read as needed; its length is found at the end
    const [H, W] = videoHW(c);
    const frames = caseFrames(ctx, c).slice(0, 3);
    async function* gen() { for (const f of frames) yield f; }
    const it = new VideoPredictor(model, { frames: gen(), videoHeight: H, videoWidth: W });
    const fm = await it.addPoints(0, 5, [[W * 0.5, H * 0.5]], [1]);
    fm.release();
    expect(await it.numFrames()).toBe(3);
    const got: number[] = [];
    const reads = ctx.stats.readbacks;
    for await (const f of it.propagate({ maxFrames: 1 })) { got.push(f.frameIndex); f.release(); }
    expect(got).toEqual([0, 1]);
    expect(ctx.stats.readbacks).toBe(reads); // nothing read back unless asked
    it.dispose();
    for (const f of frames) f.release();
  });
});

describe('video predictor: mask prompts', () => {
  it('uses a mask prompt as the output (present), an empty one as absent, and tracks from it', async () => {
    const ctx = await gpu();
    const c = await loadCase(resolve(GOLDEN, 'tiny'));
    const model = caseModel(ctx, c);
    const [H, W] = videoHW(c);
    const frames = caseFrames(ctx, c).slice(0, 3);
    const vp = new VideoPredictor(model, { frames, videoHeight: H, videoWidth: W });
    const data = new Uint8Array(H * W);
    const [y0, y1, x0, x1] = [Math.round(H * 0.2), Math.round(H * 0.7), Math.round(W * 0.3), Math.round(W * 0.6)];
    for (let y = y0; y < y1; y++) data.fill(1, y * W + x0, y * W + x1);
    const fm = await vp.addMask(0, 1, { data, height: H, width: W });
    const got = (await fm.masks()) as Uint8Array;
    let same = 0;
    for (let i = 0; i < got.length; i++) if (got[i] === data[i]) same++;
    expect(same / got.length).toBeGreaterThan(0.99);
    expect(Array.from(await fm.objectScores())).toEqual([10]);
    fm.release();
    const empty = await vp.addMask(0, 2, { data: new Uint8Array(16 * 16), height: 16, width: 16 });
    expect(await empty.present()).toEqual([true, false]);
    empty.release();
    const seen: number[] = [];
    for await (const f of vp.propagate()) {
      seen.push(f.frameIndex);
      const sc = await f.objectScores();
      expect(sc.every(Number.isFinite)).toBe(true);
      f.release();
    }
    expect(seen).toEqual([0, 1, 2]);
    vp.dispose();
    for (const f of frames) f.release();
  });
});
