/**
 * Every candidate of the matmul family against a float64 reference, at sizes that are multiples of
 * no tile (and, for the vec4 loads, at row lengths that are multiples of 4 but of no tile), with
 * each epilogue, both layouts of B, a batch, f16 weights and f16-rounded inputs.
 */
import { describe, expect, it } from 'vitest';
import { f16ToF32Array, f32ToF16Array } from '../src/gpu/half.js';
import { linear, matmul, MATMUL, ROUND16_WGSL } from '../src/kernels/matmul.js';
import { KernelChoiceError } from '../src/kernels/choice.js';
import { gpu, maxAbs, maxAbsDiff, randn } from './helpers.js';

const gelu = (v: number): number => 0.5 * v * (1 + erf(v / Math.SQRT2));
/** erf to ~1e-12 (series / continued fraction), enough for a 1e-5 test */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax, sum = ax;
    for (let n = 1; n < 100; n++) { term *= -(ax * ax) / n; sum += term / (2 * n + 1); }
    return Math.sign(x) * sum * 2 / Math.sqrt(Math.PI);
  }
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + (n / 2) / f;
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f);
}

function ref(a: Float32Array, b: Float32Array, batch: number, M: number, K: number, N: number, transB: boolean,
  bBatched: boolean, alpha = 1): Float64Array {
  const out = new Float64Array(batch * M * N);
  for (let p = 0; p < batch; p++) {
    const bo = bBatched ? p * K * N : 0;
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[(p * M + m) * K + k]! * b[bo + (transB ? n * K + k : k * N + n)]!;
      out[(p * M + m) * N + n] = alpha * s;
    }
  }
  return out;
}

const tol = (K: number, scale: number): number => 1e-5 * Math.sqrt(K) * Math.max(scale, 1e-3) + 1e-6;
const round16 = (x: Float32Array): Float32Array => f16ToF32Array(f32ToF16Array(x));

// Five pipelines per candidate (lavapipe takes seconds to compile each GPU-shaped one): scalar and
// vec4 loads of A and of B in both layouts, each epilogue, an f16 weight, f16-rounded inputs.
describe.each(MATMUL.candidates)('matmul candidate %s', (kernel) => {
  it('linear at odd sizes (37x29 · 53x29ᵀ) with bias, GELU and residual', async () => {
    const ctx = await gpu();
    const M = 37, K = 29, N = 53;
    const x = randn(M * K, 1), w = randn(N * K, 2, 0.3), bias = randn(N, 3), res = randn(M * N, 4);
    const out = await linear(ctx, ctx.upload(x, [M, K]), ctx.upload(w, [N, K]), {
      bias: ctx.upload(bias, [N]), activation: 'gelu', residual: ctx.upload(res, [M, N]), kernel,
    }).read();
    const r = ref(x, w, 1, M, K, N, true, false).map((v, i) => gelu(v + bias[i % N]!) + res[i]!);
    expect(maxAbsDiff(out, r)).toBeLessThan(tol(K, maxAbs(r)));
  });

  it('batched with alpha: A·B with N a multiple of 4 (3x37x29 · 3x29x36), A·Bᵀ with K a multiple of 4 (3x37x36 · 3x53x36ᵀ)', async () => {
    const ctx = await gpu();
    const B = 3, M = 37;
    for (const [transB, K, N] of [[false, 29, 36], [true, 36, 53]] as const) {
      const a = randn(B * M * K, 7 + N), b = randn(B * N * K, 8 + N);
      const out = await matmul(ctx, ctx.upload(a, [B, M, K]), ctx.upload(b, transB ? [B, N, K] : [B, K, N]),
        { transposeB: transB, alpha: 0.7, kernel }).read();
      const r = ref(a, b, B, M, K, N, transB, true, 0.7);
      expect(maxAbsDiff(out, r), `transB ${transB}`).toBeLessThan(tol(K, maxAbs(r)));
    }
  });

  it('an f16 weight (33x44 · 21x44ᵀ), and f16-rounded inputs of a batched A·B (f32 sums)', async () => {
    const ctx = await gpu();
    const M = 33, K = 44, N = 21;
    const x = randn(M * K, 9), w = round16(randn(N * K, 10, 0.3));
    const out = await linear(ctx, ctx.upload(x, [M, K]), ctx.upload(f32ToF16Array(w), [N, K]), { kernel }).read();
    const r = ref(x, w, 1, M, K, N, true, false);
    expect(maxAbsDiff(out, r)).toBeLessThan(tol(K, maxAbs(r)));

    const a = randn(2 * M * K, 11), b = randn(2 * K * N, 12);
    const half = await matmul(ctx, ctx.upload(a, [2, M, K]), ctx.upload(b, [2, K, N]), { halfA: true, halfB: true, kernel }).read();
    const rh = ref(round16(a), round16(b), 2, M, K, N, false, true);
    expect(maxAbsDiff(half, rh)).toBeLessThan(tol(K, maxAbs(rh)));
    // and the rounding happened: the f32 result differs by more than the f32 tolerance
    expect(maxAbsDiff(half, ref(a, b, 2, M, K, N, false, true))).toBeGreaterThan(3 * tol(K, maxAbs(rh)));
  });
});

describe('round16 (f16 rounding in WGSL, for kernels that read f32 and compute at precision f16)', () => {
  it('equals the CPU f32 -> f16 -> f32 round trip: normals, ties, subnormals, overflow', async () => {
    const ctx = await gpu();
    const xs: number[] = [0, -0, 1, -1, 65504, 65519, 65520, -70000, 6.1e-5, 6.2e-5, 3e-8, -2.98e-8, 1e-9, 0.1, 1 / 3];
    for (let e = -26; e <= 16; e++) for (const m of [1, 1.0004882, 1.00048828125, 1.0009765625 + 2 ** -12, 1.5, 1.99951171875]) xs.push(m * 2 ** e, -m * 2 ** e);
    const r = randn(2000, 99, 100);
    xs.push(...r);
    const x = Float32Array.from(xs);
    const t = ctx.upload(x, [x.length]), o = ctx.empty([x.length]);
    ctx.run({
      pipeline: ctx.pipeline('round16_test', `${ROUND16_WGSL}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < ${x.length}u) { o[id.x] = round16(x[id.x]); }
}`),
      bindings: [t, o],
      workgroups: [Math.ceil(x.length / 64)],
    });
    const got = await o.read();
    const want = round16(x);
    const bad = [...got].map((g, i) => [x[i], g, want[i]]).filter(([, g, w]) => !Object.is(g, w) && !(g === 0 && w === 0));
    expect(bad).toEqual([]);
  });
});

describe('matmul family', () => {
  it('a forced candidate must exist and fit', async () => {
    const ctx = await gpu();
    const x = ctx.empty([4, 8]), w = ctx.empty([8, 8]);
    expect(() => linear(ctx, x, w, { kernel: 'nope' })).toThrow(KernelChoiceError);
    expect(() => linear(ctx, x, w, { kernel: 'nope' })).toThrow(/no candidate 'nope'.*direct, tiled32/);
  });
});
