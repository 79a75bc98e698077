import { describe, expect, it } from 'vitest';
import { softmax, SOFTMAX } from '../src/kernels/softmax.js';
import { gpu, maxAbsDiff, randn } from './helpers.js';

/** float64 reference: softmax over the last axis of [rows, n], with `bias` added to the first `cols` columns. */
function softmaxRef(x: Float32Array, n: number, cols = 0, bias = 0): Float64Array {
  const out = new Float64Array(x.length);
  const xb = (r: number, i: number): number => x[r * n + i]! + (i < cols ? bias : 0);
  for (let r = 0; r < x.length / n; r++) {
    let m = -Infinity;
    for (let i = 0; i < n; i++) m = Math.max(m, xb(r, i));
    let s = 0;
    for (let i = 0; i < n; i++) s += Math.exp(xb(r, i) - m);
    for (let i = 0; i < n; i++) out[r * n + i] = Math.exp(xb(r, i) - m) / s;
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

describe('softmax with a bias on the first columns', () => {
  // [rows, N, biased columns, bias]
  for (const [rows, n, cols, bias] of [
    [17, 5, 0, 2], [9, 37, 13, 2 * Math.LN2], [9, 37, 1, -3], [70, 37, 37, 5], [3, 1, 1, 7], [5, 1100, 513, 1.5],
  ] as const) {
    it(`rows ${rows}, N ${n}: +${bias.toFixed(3)} on ${cols} columns`, async () => {
      const ctx = await gpu();
      const x = randn(rows * n, n + cols, 3);
      const out = await softmax(ctx, ctx.upload(x, [rows, n]), undefined, { bias: { columns: cols, value: bias } }).read();
      expect(maxAbsDiff(out, softmaxRef(x, n, cols, bias))).toBeLessThan(2e-6);
      // not vacuous: the bias changes the result unless it covers no or all columns
      if (cols > 0 && cols < n) expect(maxAbsDiff(out, softmaxRef(x, n))).toBeGreaterThan(1e-3);
    });
  }
  it('a bias that makes the logits large (±100 + 80) does not overflow', async () => {
    const ctx = await gpu();
    const x = randn(4 * 300, 3, 40);
    const out = await softmax(ctx, ctx.upload(x, [4, 300]), undefined, { bias: { columns: 150, value: 80 } }).read();
    expect(out.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(out, softmaxRef(x, 300, 150, 80))).toBeLessThan(1e-5);
  });
  it('writes into a given output; rejects bad biases', async () => {
    const ctx = await gpu();
    const x = randn(6 * 9, 4);
    const o = ctx.empty([6, 9]);
    expect(softmax(ctx, ctx.upload(x, [6, 9]), o, { bias: { columns: 4, value: 1 } })).toBe(o);
    expect(maxAbsDiff(await o.read(), softmaxRef(x, 9, 4, 1))).toBeLessThan(2e-6);
    const t = ctx.empty([4, 8]);
    expect(() => softmax(ctx, t, undefined, { bias: { columns: 9, value: 1 } })).toThrow(/bias/);
    expect(() => softmax(ctx, t, undefined, { bias: { columns: -1, value: 1 } })).toThrow(/bias/);
    expect(() => softmax(ctx, t, undefined, { bias: { columns: 2, value: NaN } })).toThrow(/bias/);
  });
});

/** Every candidate of the softmax family: rows of odd lengths short and long, a bias, rows past 65535 workgroups. */
describe.each(SOFTMAX.candidates)('softmax candidate %s', (kernel) => {
  it('odd rows and lengths (1, 37, 300 with a bias, 5000), large logits', async () => {
    const ctx = await gpu();
    for (const [rows, n, cols, bias, scale] of [[3, 1, 0, 0, 1], [9, 37, 0, 0, 3], [7, 300, 131, 80, 40], [2, 5000, 0, 0, 4]] as const) {
      const x = randn(rows * n, n + 1, scale);
      const out = await softmax(ctx, ctx.upload(x, [rows, n]), undefined, { kernel, bias: cols ? { columns: cols, value: bias } : undefined }).read();
      expect(out.every(Number.isFinite)).toBe(true);
      expect(maxAbsDiff(out, softmaxRef(x, n, cols, bias)), `rows ${rows} N ${n}`).toBeLessThan(scale > 10 ? 1e-5 : 2e-6);
    }
  });
  it('70000 rows (a 2-D grid of workgroups)', async () => {
    const ctx = await gpu();
    const x = randn(70000 * 3, 5, 2);
    const out = await softmax(ctx, ctx.upload(x, [70000, 3]), undefined, { kernel }).read();
    expect(maxAbsDiff(out, softmaxRef(x, 3))).toBeLessThan(2e-6);
  });
});
