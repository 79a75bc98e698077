import { describe, expect, it } from 'vitest';
import { layerNorm, layerNorm2d, LAYERNORM } from '../src/kernels/layernorm.js';
import { gpu, maxAbsDiff, randn } from './helpers.js';

/** float64 reference of torch.nn.LayerNorm over the last axis of [rows, C]. */
function layerNormRef(x: Float32Array, w: Float32Array, b: Float32Array, c: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / c; r++) {
    let mean = 0;
    for (let i = 0; i < c; i++) mean += x[r * c + i]!;
    mean /= c;
    let v = 0;
    for (let i = 0; i < c; i++) v += (x[r * c + i]! - mean) ** 2;
    v /= c;
    const rstd = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < c; i++) out[r * c + i] = (x[r * c + i]! - mean) * rstd * w[i]! + b[i]!;
  }
  return out;
}

/**
 * float64 reference of SAM's LayerNorm2d the way the PyTorch module computes it, on an NCHW
 * array: u = mean over dim 1, s = mean over dim 1 of (x - u)², y = w[c] * (x - u) / sqrt(s + eps) + b[c].
 */
function layerNorm2dNchwRef(x: Float32Array, w: Float32Array, b: Float32Array,
  n: number, c: number, h: number, wd: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  const at = (ni: number, ci: number, y: number, xi: number): number => ((ni * c + ci) * h + y) * wd + xi;
  for (let ni = 0; ni < n; ni++) for (let y = 0; y < h; y++) for (let xi = 0; xi < wd; xi++) {
    let u = 0;
    for (let ci = 0; ci < c; ci++) u += x[at(ni, ci, y, xi)]!;
    u /= c;
    let s = 0;
    for (let ci = 0; ci < c; ci++) s += (x[at(ni, ci, y, xi)]! - u) ** 2;
    s /= c;
    for (let ci = 0; ci < c; ci++) {
      out[at(ni, ci, y, xi)] = w[ci]! * ((x[at(ni, ci, y, xi)]! - u) / Math.sqrt(s + eps)) + b[ci]!;
    }
  }
  return out;
}

describe('layerNorm', () => {
  for (const [rows, c] of [[37, 48], [5, 257], [3, 768], [1, 1]] as const) {
    it(`rows ${rows}, C ${c}`, async () => {
      const ctx = await gpu();
      const x = randn(rows * c, c, 2), w = randn(c, c + 1), b = randn(c, c + 2);
      const out = await layerNorm(ctx, ctx.upload(x, [rows, c]), ctx.upload(w, [c]), ctx.upload(b, [c]), 1e-5).read();
      expect(maxAbsDiff(out, layerNormRef(x, w, b, c, 1e-5))).toBeLessThan(2e-5);
    });
  }
  it('a row offset by 1e4 (no catastrophic cancellation)', async () => {
    const ctx = await gpu();
    const rows = 4, c = 257;
    const x = randn(rows * c, 7).map((v, i) => (i < 2 * c ? v + 1e4 : v));   // first two rows offset
    const w = new Float32Array(c).fill(1), b = new Float32Array(c);
    const out = await layerNorm(ctx, ctx.upload(x, [rows, c]), ctx.upload(w, [c]), ctx.upload(b, [c]), 1e-6).read();
    // E[x²] - E[x]² in f32 would be off by ~1e8 * 6e-8 in the variance here
    expect(maxAbsDiff(out, layerNormRef(x, w, b, c, 1e-6))).toBeLessThan(1e-4);
  });
  it('many rows (more than 65535 workgroups)', async () => {
    const ctx = await gpu();
    const rows = 70000, c = 4;
    const x = randn(rows * c, 8), w = randn(c, 9), b = randn(c, 10);
    const out = await layerNorm(ctx, ctx.upload(x, [rows, c]), ctx.upload(w, [c]), ctx.upload(b, [c]), 1e-5).read();
    expect(maxAbsDiff(out, layerNormRef(x, w, b, c, 1e-5))).toBeLessThan(2e-4);
  });
  it('writes into a given output', async () => {
    const ctx = await gpu();
    const x = randn(6 * 48, 11), w = randn(48, 12), b = randn(48, 13);
    const o = ctx.empty([2, 3, 48]);
    const r = layerNorm(ctx, ctx.upload(x, [2, 3, 48]), ctx.upload(w, [48]), ctx.upload(b, [48]), 1e-5, o);
    expect(r).toBe(o);
    expect(maxAbsDiff(await o.read(), layerNormRef(x, w, b, 48, 1e-5))).toBeLessThan(2e-5);
  });
  it('rejects mismatched weight, bias or output', async () => {
    const ctx = await gpu();
    const x = ctx.empty([4, 48]);
    expect(() => layerNorm(ctx, x, ctx.empty([47]), ctx.empty([48]), 1e-5)).toThrow(/weight/);
    expect(() => layerNorm(ctx, x, ctx.empty([48]), ctx.empty([4, 48]), 1e-5)).toThrow(/bias/);
    expect(() => layerNorm(ctx, x, ctx.empty([48]), ctx.empty([48]), 1e-5, ctx.empty([3, 48]))).toThrow(/out/);
    expect(() => layerNorm2d(ctx, ctx.empty([4, 48]), ctx.empty([48]), ctx.empty([48]))).toThrow(/\[B, H, W, C\]/);
  });
});

describe('layerNorm2d', () => {
  it('channels-last last-axis norm equals the NCHW module (mean over dim 1)', async () => {
    const ctx = await gpu();
    const n = 2, c = 37, h = 5, wd = 7;
    const nchw = randn(n * c * h * wd, 21, 3);
    const w = randn(c, 22), b = randn(c, 23);
    // NCHW -> NHWC, the layout our feature maps use
    const nhwc = new Float32Array(nchw.length);
    for (let ni = 0; ni < n; ni++) for (let ci = 0; ci < c; ci++) for (let y = 0; y < h; y++) for (let xi = 0; xi < wd; xi++) {
      nhwc[((ni * h + y) * wd + xi) * c + ci] = nchw[((ni * c + ci) * h + y) * wd + xi]!;
    }
    const got = await layerNorm2d(ctx, ctx.upload(nhwc, [n, h, wd, c]), ctx.upload(w, [c]), ctx.upload(b, [c])).read();
    const ref = layerNorm2dNchwRef(nchw, w, b, n, c, h, wd, 1e-6);
    // compare in NCHW order
    const gotNchw = new Float32Array(got.length);
    for (let ni = 0; ni < n; ni++) for (let ci = 0; ci < c; ci++) for (let y = 0; y < h; y++) for (let xi = 0; xi < wd; xi++) {
      gotNchw[((ni * c + ci) * h + y) * wd + xi] = got[((ni * h + y) * wd + xi) * c + ci]!;
    }
    expect(maxAbsDiff(gotNchw, ref)).toBeLessThan(2e-5);
  });
});

/** Every candidate of the layernorm family: odd widths below and above the workgroup, an offset row, rows past 65535 workgroups. */
describe.each(LAYERNORM.candidates)('layerNorm candidate %s', (kernel) => {
  it('rows 37 x C 48, 5 x 257, 3 x 768 (+1e4 on one row), 1 x 1', async () => {
    const ctx = await gpu();
    for (const [rows, c] of [[37, 48], [5, 257], [3, 768], [1, 1]] as const) {
      const x = randn(rows * c, c, 2).map((v, i) => (i < c && c === 768 ? v + 1e4 : v)), w = randn(c, c + 1), b = randn(c, c + 2);
      const out = await layerNorm(ctx, ctx.upload(x, [rows, c]), ctx.upload(w, [c]), ctx.upload(b, [c]), 1e-5, undefined, kernel).read();
      expect(maxAbsDiff(out, layerNormRef(x, w, b, c, 1e-5)), `rows ${rows} C ${c}`).toBeLessThan(c === 768 ? 1e-4 : 2e-5);
    }
  });
  it('70000 rows (a 2-D grid of workgroups)', async () => {
    const ctx = await gpu();
    const rows = 70000, c = 4;
    const x = randn(rows * c, 8), w = randn(c, 9), b = randn(c, 10);
    const out = await layerNorm(ctx, ctx.upload(x, [rows, c]), ctx.upload(w, [c]), ctx.upload(b, [c]), 1e-5, undefined, kernel).read();
    expect(maxAbsDiff(out, layerNormRef(x, w, b, c, 1e-5))).toBeLessThan(2e-4);
  });
});
