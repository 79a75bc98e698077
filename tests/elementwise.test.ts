import { describe, expect, it } from 'vitest';
import { add, binary } from '../src/kernels/elementwise.js';
import { gpu, maxAbsDiff, randn } from './helpers.js';

describe('elementwise', () => {
  it('adds with broadcasting over leading axes', async () => {
    const ctx = await gpu();
    const a = randn(7 * 13, 1), b = randn(13, 2);
    const out = await add(ctx, ctx.upload(a, [7, 13]), ctx.upload(b, [13])).read();
    const ref = a.map((v, i) => v + b[i % 13]!);
    expect(maxAbsDiff(out, ref)).toBe(0);
  });
  it('multiplies', async () => {
    const ctx = await gpu();
    const a = randn(1000, 3), b = randn(1000, 4);
    const out = await binary(ctx, 'mul', ctx.upload(a, [1000]), ctx.upload(b, [1000])).read();
    expect(maxAbsDiff(out, a.map((v, i) => Math.fround(v * b[i]!)))).toBe(0);
  });
  it('rejects shapes that do not broadcast', async () => {
    const ctx = await gpu();
    expect(() => add(ctx, ctx.empty([5, 3]), ctx.empty([4]))).toThrow(/broadcast/);
  });
});
