import { describe, expect, it } from 'vitest';
import { erfF32 } from '../src/kernels/matmul.js';
import {
  broadcastAdd, copyRows, resizeBilinear, resizeBilinearCpu, selectMasks, selectToken, unary,
} from '../src/kernels/mask_ops.js';
import { gpu, maxAbsDiff, randn } from './helpers.js';

describe('mask ops', () => {
  it('unary gelu / sigmoid / clamp', async () => {
    const ctx = await gpu();
    const x = randn(1001, 1, 3);
    const t = ctx.upload(x, [1001]);
    expect(maxAbsDiff(await unary(ctx, t, 'gelu').read(), x.map((v) => 0.5 * v * (1 + erfF32(v / Math.SQRT2))))).toBeLessThan(1e-6 * 10);
    expect(maxAbsDiff(await unary(ctx, t, 'sigmoid').read(), x.map((v) => 1 / (1 + Math.exp(-v))))).toBeLessThan(1e-6);
    expect(maxAbsDiff(await unary(ctx, t, { clamp: [-1, 2] }).read(), x.map((v) => Math.min(2, Math.max(-1, v))))).toBe(0);
  });

  it('copyRows and selectToken', async () => {
    const ctx = await gpu();
    const B = 3, N = 7, C = 5;
    const x = randn(B * N * C, 2);
    const tok = await selectToken(ctx, ctx.upload(x, [B, N, C]), 4).read();
    const ref = new Float32Array(B * C);
    for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) ref[b * C + c] = x[(b * N + 4) * C + c]!;
    expect(maxAbsDiff(tok, ref)).toBe(0);
    const dst = ctx.upload(new Float32Array(B * 2 * C), [B, 2, C]);
    copyRows(ctx, ctx.upload(ref, [B, C]), dst, { rows: B, rowLen: C, srcStride: C, dstStride: 2 * C, dstOffset: C });
    const d = await dst.read();
    for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) {
      expect(d[b * 2 * C + c]).toBe(0);
      expect(d[b * 2 * C + C + c]).toBe(ref[b * C + c]);
    }
    expect(() => copyRows(ctx, dst, dst, { rows: 4, rowLen: C, srcStride: 2 * C, dstStride: 2 * C })).toThrow(/out of bounds/);
  });

  it('broadcastAdd repeats both operands into the output shape', async () => {
    const ctx = await gpu();
    const a = randn(6 * 4, 3), b = randn(4, 4);
    const out = await broadcastAdd(ctx, ctx.upload(a, [6, 4]), ctx.upload(b, [4]), [3, 6, 4]).read();
    expect(maxAbsDiff(out, Float32Array.from({ length: 72 }, (_, i) => a[i % 24]! + b[i % 4]!))).toBe(0);
  });

  it('selectMasks: multimask, single and the dynamic stability fallback', async () => {
    const ctx = await gpu();
    const B = 2, T = 4, h = 9, w = 11, hw = h * w;
    const m = randn(B * T * hw, 5, 2);
    // batch 0: token 0 is stable (all far from 0); batch 1: token 0 is unstable (near 0)
    for (let i = 0; i < hw; i++) { m[i] = i % 2 ? 5 : -5; m[T * hw + i] = (i % 3 - 1) * 0.01; }
    const iou = Float32Array.from([0.1, 0.2, 0.9, 0.3, 0.5, 0.4, 0.1, 0.8]);
    const mt = ctx.upload(m, [B, T, h, w]), it_ = ctx.upload(iou, [B, T]);
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    const multi = selectMasks(ctx, mt, it_, { mode: 'multimask', sigmoid: true });
    expect(maxAbsDiff(await multi.masks.read(), [...m.subarray(hw, 4 * hw), ...m.subarray(5 * hw, 8 * hw)])).toBe(0);
    expect(maxAbsDiff(await multi.iou.read(), [0.2, 0.9, 0.3, 0.4, 0.1, 0.8].map(sig))).toBeLessThan(1e-6);
    const dyn = selectMasks(ctx, mt, it_, { mode: 'dynamic', sigmoid: false, stabilityDelta: 0.05, stabilityThresh: 0.98 });
    expect(maxAbsDiff(await dyn.masks.read(), [...m.subarray(0, hw), ...m.subarray(7 * hw, 8 * hw)])).toBe(0);
    expect(maxAbsDiff(await dyn.iou.read(), Float32Array.from([0.1, 0.8]))).toBe(0);
    const single = selectMasks(ctx, mt, it_, { mode: 'single', sigmoid: false });
    expect(maxAbsDiff(await single.iou.read(), Float32Array.from([0.1, 0.5]))).toBe(0);
  });

  it('resizeBilinear matches F.interpolate(bilinear, align_corners=False) semantics (CPU reference)', async () => {
    const ctx = await gpu();
    for (const [P, h, w, H, W] of [[2, 8, 8, 27, 45], [1, 5, 7, 3, 4], [3, 6, 6, 6, 6]] as const) {
      const x = randn(P * h * w, 6, 4);
      const out = await resizeBilinear(ctx, ctx.upload(x, [P, h, w]), H, W).read();
      expect(maxAbsDiff(out, resizeBilinearCpu(x, P, h, w, H, W))).toBeLessThan(1e-5);
    }
    // hand-checked values: 2 -> 4 upsampling of [0, 1]: 0, 0.25, 0.75, 1
    const o = await resizeBilinear(ctx, ctx.upload(Float32Array.from([0, 1]), [1, 2]), 1, 4).read();
    expect(maxAbsDiff(o, [0, 0.25, 0.75, 1])).toBeLessThan(1e-7);
  });
});
