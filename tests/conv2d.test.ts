import { describe, expect, it } from 'vitest';
import { f16ToF32Array, f32ToF16Array } from '../src/gpu/half.js';
import { conv2d, CONV2D } from '../src/kernels/conv2d.js';
import { convRef, gpu, maxAbs, maxAbsDiff, randn } from './helpers.js';

interface Case { name: string; B: number; H: number; W: number; Cin: number; Cout: number; k: number; stride: number; pad: number; groups: number; bias: boolean }
const cases: Case[] = [
  { name: 'patch embed 16x16 stride 16 (3->40)', B: 1, H: 48, W: 64, Cin: 3, Cout: 40, k: 16, stride: 16, pad: 0, groups: 1, bias: true },
  { name: '1x1 (37->70, odd sizes)', B: 2, H: 5, W: 7, Cin: 37, Cout: 70, k: 1, stride: 1, pad: 0, groups: 1, bias: true },
  { name: '3x3 pad 1 (24->67)', B: 1, H: 9, W: 11, Cin: 24, Cout: 67, k: 3, stride: 1, pad: 1, groups: 1, bias: false },
  { name: '3x3 stride 2 pad 1 (1->4)', B: 1, H: 17, W: 15, Cin: 1, Cout: 4, k: 3, stride: 2, pad: 1, groups: 1, bias: true },
  { name: '3x3 stride 2 pad 1 (4->16)', B: 1, H: 9, W: 8, Cin: 4, Cout: 16, k: 3, stride: 2, pad: 1, groups: 1, bias: true },
  { name: 'depthwise 7x7 pad 3 (C=20)', B: 2, H: 10, W: 9, Cin: 20, Cout: 20, k: 7, stride: 1, pad: 3, groups: 20, bias: true },
  { name: 'depthwise 3x3 stride 2 pad 1 (C=6, W=13)', B: 1, H: 9, W: 13, Cin: 6, Cout: 6, k: 3, stride: 2, pad: 1, groups: 6, bias: false },
  { name: 'grouped 3x3 (12->8, groups 4)', B: 1, H: 6, W: 5, Cin: 12, Cout: 8, k: 3, stride: 1, pad: 1, groups: 4, bias: false },
];

describe('conv2d', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const ctx = await gpu();
      const xs = [c.B, c.H, c.W, c.Cin], ws = [c.Cout, c.Cin / c.groups, c.k, c.k];
      const x = randn(xs.reduce((a, b) => a * b), 11), w = randn(ws.reduce((a, b) => a * b), 12, 0.2);
      const bias = c.bias ? randn(c.Cout, 13) : undefined;
      const ref = convRef(x, xs, w, ws, bias, c.stride, c.pad, c.groups);
      const out = conv2d(ctx, ctx.upload(x, xs), ctx.upload(w, ws), bias && ctx.upload(bias, [c.Cout]),
        { stride: c.stride, padding: c.pad, groups: c.groups });
      expect(out.shape).toEqual(ref.shape);
      const got = await out.read();
      // f32 accumulation over K terms of size ~0.2..1
      expect(maxAbsDiff(got, ref.out)).toBeLessThan(2e-5 * Math.max(1, maxAbs(ref.out)));
    });
  }
  it('rejects mismatched groups', async () => {
    const ctx = await gpu();
    expect(() => conv2d(ctx, ctx.empty([1, 4, 4, 6]), ctx.empty([4, 4, 3, 3]), undefined, { groups: 2 })).toThrow(/groups/);
  });
});

/**
 * Every candidate of the dense conv's family (the implicit GEMM) against the float64 reference:
 * the unpadded patch embedding (3 channels: scalar loads), a padded 3x3 (channels a multiple of 4:
 * vec4 loads) with an f16 weight and, at precision f16, the input rounded to f16 too, and an odd
 * 1x1 over a batch of 2.
 */
describe.each(CONV2D.candidates)('conv2d candidate %s', (kernel) => {
  const round16 = (a: Float32Array): Float32Array => f16ToF32Array(f32ToF16Array(a));
  for (const c of [cases[0]!, { ...cases[2]!, Cin: 28, f16: true }, cases[1]!]) {
    it(`${c.name}${'f16' in c ? ', Cin 28, f16 weight and input' : ''}`, async () => {
      const ctx = await gpu();
      const f16 = 'f16' in c;
      const xs = [c.B, c.H, c.W, c.Cin], ws = [c.Cout, c.Cin, c.k, c.k];
      const x = randn(xs.reduce((a, b) => a * b), 21), w = round16(randn(ws.reduce((a, b) => a * b), 22, 0.2));
      const bias = c.bias ? randn(c.Cout, 23) : undefined;
      const ref = convRef(f16 ? round16(x) : x, xs, w, ws, bias, c.stride, c.pad, 1);
      ctx.kernels.f16.matmul = f16;
      try {
        const out = conv2d(ctx, ctx.upload(x, xs), f16 ? ctx.upload(f32ToF16Array(w), ws) : ctx.upload(w, ws), bias && ctx.upload(bias, [c.Cout]),
          { stride: c.stride, padding: c.pad, kernel });
        expect(out.shape).toEqual(ref.shape);
        expect(maxAbsDiff(await out.read(), ref.out)).toBeLessThan(2e-5 * Math.max(1, maxAbs(ref.out)));
      } finally {
        ctx.kernels.f16.matmul = false;
      }
    });
  }
});
