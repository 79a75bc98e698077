/** maxPool2x2: MaxPool2d(2, 2, ceil_mode=False) on channels-last maps, of all channels or a slice (Hiera's queries). */
import { describe, expect, it } from 'vitest';
import { maxPool2x2 } from '../src/kernels/pool2d.js';
import { gpu, maxAbsDiff, randn } from './helpers.js';

function ref(x: Float32Array, B: number, H: number, W: number, Cs: number, off: number, C: number): Float32Array {
  const Ho = Math.floor(H / 2), Wo = Math.floor(W / 2);
  const out = new Float32Array(B * Ho * Wo * C);
  for (let b = 0; b < B; b++) for (let y = 0; y < Ho; y++) for (let xx = 0; xx < Wo; xx++) for (let c = 0; c < C; c++) {
    let m = -Infinity;
    for (const [dy, dx] of [[0, 0], [0, 1], [1, 0], [1, 1]]) m = Math.max(m, x[((b * H + 2 * y + dy!) * W + 2 * xx + dx!) * Cs + off + c]!);
    out[((b * Ho + y) * Wo + xx) * C + c] = m;
  }
  return out;
}

describe('maxPool2x2', () => {
  for (const [B, H, W, Cs, off, C] of [[1, 8, 6, 5, 0, 5], [3, 7, 9, 12, 0, 4], [4, 6, 6, 24, 8, 8]] as const) {
    it(`[${B}, ${H}, ${W}, ${Cs}] channels ${off}..${off + C} (odd sides dropped)`, async () => {
      const ctx = await gpu();
      const x = randn(B * H * W * Cs, 51 + H);
      const t = maxPool2x2(ctx, ctx.upload(x, [B, H, W, Cs]), { offset: off, channels: C });
      expect(t.shape).toEqual([B, Math.floor(H / 2), Math.floor(W / 2), C]);
      expect(maxAbsDiff(await t.read(), ref(x, B, H, W, Cs, off, C))).toBe(0);
    });
  }
  it('rejects channels outside the map and maps smaller than the window', async () => {
    const ctx = await gpu();
    expect(() => maxPool2x2(ctx, ctx.empty([1, 4, 4, 6]), { offset: 4, channels: 4 })).toThrow(/channels \[4, 8\) are not within the 6/);
    expect(() => maxPool2x2(ctx, ctx.empty([1, 1, 4, 6]))).toThrow(/smaller than the 2x2 window/);
  });
});
