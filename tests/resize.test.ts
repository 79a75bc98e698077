import { describe, expect, it } from 'vitest';
import { resizeBicubic, upsampleNearest2xAdd } from '../src/kernels/resize.js';
import { gpu, maxAbs, maxAbsDiff, randn } from './helpers.js';

/**
 * PyTorch's upsample_bicubic2d (align_corners=False) in float64 on x [B, H, W, C]: source
 * coordinate (dst + 0.5) * in/out - 0.5, not clamped; taps floor(src)-1 .. floor(src)+2 clamped to
 * the border; cubic convolution weights with A = -0.75.
 */
export function bicubicRef(x: ArrayLike<number>, B: number, H: number, W: number, C: number, oh: number, ow: number): Float64Array {
  const A = -0.75;
  const k1 = (d: number) => ((A + 2) * d - (A + 3)) * d * d + 1;
  const k2 = (d: number) => ((A * d - 5 * A) * d + 8 * A) * d - 4 * A;
  const axis = (dst: number, inSize: number, outSize: number) => {
    const src = (dst + 0.5) * (inSize / outSize) - 0.5;
    const i0 = Math.floor(src), t = src - i0;
    const w = [k2(t + 1), k1(t), k1(1 - t), k2(2 - t)];
    const idx = [-1, 0, 1, 2].map((d) => Math.min(Math.max(i0 + d, 0), inSize - 1));
    return { w, idx };
  };
  const out = new Float64Array(B * oh * ow * C);
  for (let b = 0; b < B; b++) for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) {
    const ay = axis(oy, H, oh), ax = axis(ox, W, ow);
    for (let c = 0; c < C; c++) {
      let acc = 0;
      for (let r = 0; r < 4; r++) for (let q = 0; q < 4; q++) {
        acc += ay.w[r]! * ax.w[q]! * x[((b * H + ay.idx[r]!) * W + ax.idx[q]!) * C + c]!;
      }
      out[((b * oh + oy) * ow + ox) * C + c] = acc;
    }
  }
  return out;
}

describe('resizeBicubic', () => {
  const cases = [
    [1, 14, 14, 16, 32, 32], // ViT table 14x14 -> 32x32 grid (512 input)
    [1, 14, 14, 8, 64, 64], // -> 64x64 (1024 input)
    [1, 14, 14, 24, 8, 8], // -> 8x8 (tiny config, downscale)
    [2, 6, 9, 3, 13, 4], // odd, mixed up/down
  ] as const;
  for (const [B, H, W, C, oh, ow] of cases) {
    it(`[${B},${H},${W},${C}] -> ${oh}x${ow}`, async () => {
      const ctx = await gpu();
      const x = randn(B * H * W * C, 21);
      const out = resizeBicubic(ctx, ctx.upload(x, [B, H, W, C]), oh, ow);
      expect(out.shape).toEqual([B, oh, ow, C]);
      const ref = bicubicRef(x, B, H, W, C, oh, ow);
      expect(maxAbsDiff(await out.read(), ref)).toBeLessThan(2e-6 * maxAbs(ref));
    });
  }
  it('is the identity at the same size', async () => {
    const ctx = await gpu();
    const x = randn(5 * 6 * 2, 22);
    const out = await resizeBicubic(ctx, ctx.upload(x, [1, 5, 6, 2]), 5, 6).read();
    expect(maxAbsDiff(out, x)).toBeLessThan(1e-6);
  });
});

describe('upsampleNearest2xAdd (the FPN top-down step)', () => {
  for (const avg of [false, true]) {
    it(`lateral + nearest 2x of prev${avg ? ', averaged' : ''}`, async () => {
      const ctx = await gpu();
      const [B, H, W, C] = [2, 3, 5, 7];
      const lat = randn(B * 2 * H * 2 * W * C, 41), prev = randn(B * H * W * C, 42);
      const out = await upsampleNearest2xAdd(ctx, ctx.upload(lat, [B, 2 * H, 2 * W, C]), ctx.upload(prev, [B, H, W, C]), { avg }).read();
      const ref = new Float32Array(lat.length);
      for (let b = 0; b < B; b++) for (let y = 0; y < 2 * H; y++) for (let x = 0; x < 2 * W; x++) for (let c = 0; c < C; c++) {
        const i = ((b * 2 * H + y) * 2 * W + x) * C + c;
        const v = Math.fround(lat[i]! + prev[((b * H + (y >> 1)) * W + (x >> 1)) * C + c]!);
        ref[i] = avg ? v * 0.5 : v;
      }
      expect(maxAbsDiff(out, ref)).toBe(0);
    });
  }
  it('rejects maps that are not 2x apart', async () => {
    const ctx = await gpu();
    expect(() => upsampleNearest2xAdd(ctx, ctx.empty([1, 6, 8, 4]), ctx.empty([1, 3, 3, 4]))).toThrow(/upsampled 2x does not match/);
  });
});
