import { describe, expect, it } from 'vitest';
import { softmax } from '../src/kernels/softmax.js';
import { gpu, maxAbsDiff, randn } from './helpers.js';

/** float64 reference: softmax over the last axis of [rows, n]. */
function softmaxRef(x: Float32Array, n: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let m = -Infinity;
    for (let i = 0; i < n; i++) m = Math.max(m, x[r * n + i]!);
    let s = 0;
    for (let i = 0; i < n; i++) s += Math.exp(x[r * n + i]! - m);
    for (let i = 0; i < n; i++) out[r * n + i] = Math.exp(x[r * n + i]! - m) / s;
  }
  return out;
}

describe('softmax', () => {
  for (const [rows, n, scale] of [[3, 1, 1], [17, 5, 3], [9, 37, 3], [2, 5000, 4], [3, 4096, 1]] as const) {
    it(`rows ${rows}, N ${n}`, async () => {
      const ctx = await gpu();
      const x = randn(rows * n, n, scale);
      const out = await softmax(ctx, ctx.upload(x, [rows, n])).read();
      const ref = softmaxRef(x, n);
      expect(maxAbsDiff(out, ref)).toBeLessThan(2e-6);
      if (n === 1) expect([...out]).toEqual([1, 1, 1]);
    });
  }
  it('large logits (±100) do not overflow', async () => {
    const ctx = await gpu();
    const x = randn(4 * 300, 3, 40);   // reaches about ±150
    const out = await softmax(ctx, ctx.upload(x, [4, 300])).read();
    expect(out.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(out, softmaxRef(x, 300))).toBeLessThan(1e-5);
  });
  it('many rows (more than 65535 workgroups), leading axes kept', async () => {
    const ctx = await gpu();
    const x = randn(2 * 35000 * 3, 5, 2);
    const o = softmax(ctx, ctx.upload(x, [2, 35000, 3]));
    expect(o.shape).toEqual([2, 35000, 3]);
    expect(maxAbsDiff(await o.read(), softmaxRef(x, 3))).toBeLessThan(2e-6);
  });
  it('rejects a mismatched output', async () => {
    const ctx = await gpu();
    expect(() => softmax(ctx, ctx.empty([4, 8]), ctx.empty([4, 7]))).toThrow(/out/);
  });
});
