import { describe, expect, it } from 'vitest';
import { ERF_WGSL, erfF32, linear, matmul, type Activation } from '../src/kernels/matmul.js';
import { gpu, maxAbs, maxAbsDiff, randn } from './helpers.js';

// ---------------------------------------------------------------- float64 references

/** erf in float64 to ~1e-13: Maclaurin series for |x| < 3, Laplace continued fraction beyond. */
function erf64(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    // erf x = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    let term = ax, sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= -(ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * sum * 2 / Math.sqrt(Math.PI);
  }
  // erfc x = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + (n / 2) / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

const act64 = (v: number, a: Activation): number =>
  a === 'relu' ? Math.max(v, 0) : a === 'gelu' ? 0.5 * v * (1 + erf64(v / Math.SQRT2)) : v;

/** out[b] = alpha * a[b] · op(b[b]) in float64; bT: b stored [N, K]; bBatched: one B per batch. */
function matmulRef(a: Float32Array, b: Float32Array, batch: number, M: number, K: number, N: number,
                   bT: boolean, bBatched: boolean, alpha = 1): Float64Array {
  const out = new Float64Array(batch * M * N);
  for (let p = 0; p < batch; p++) {
    const ao = p * M * K, bo = bBatched ? p * K * N : 0, oo = p * M * N;
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[ao + m * K + k]! * b[bo + (bT ? n * K + k : k * N + n)]!;
      out[oo + m * N + n] = alpha * s;
    }
  }
  return out;
}

/** Tolerance for a K-long f32 dot product whose results are about `scale`. */
const tol = (K: number, scale: number): number => 1e-5 * Math.sqrt(K) * Math.max(scale, 1e-3) + 1e-6;

// ---------------------------------------------------------------- erf

describe('erf for GELU', () => {
  const xs: number[] = [];
  for (let x = -6; x <= 6; x += 1 / 1024) xs.push(x);
  xs.push(1e-8, -1e-8, 0.999999, 1.000001, 3.999, 4.001, 30, -30);

  it('the reference erf64 matches known values', () => {
    expect(Math.abs(erf64(0.5) - 0.5204998778130465)).toBeLessThan(1e-14);
    expect(Math.abs(erf64(1) - 0.8427007929497149)).toBeLessThan(1e-14);
    expect(Math.abs(erf64(2.5) - 0.9995930479825550)).toBeLessThan(1e-13);
    expect(Math.abs(erf64(3.5) - 0.9999992569016276)).toBeLessThan(1e-13);
    expect(Math.abs(erf64(-2) + 0.9953222650189527)).toBeLessThan(1e-14);
  });

  it('the coefficients give |error| < 1e-6 in f32 arithmetic (CPU)', () => {
    let worst = 0;
    for (const x of xs) worst = Math.max(worst, Math.abs(erfF32(Math.fround(x)) - erf64(Math.fround(x))));
    expect(worst).toBeLessThan(3e-7);
  });

  it('the WGSL erf has |error| < 1e-6 on the GPU', async () => {
    const ctx = await gpu();
    const x = Float32Array.from(xs);
    const t = ctx.upload(x, [x.length]);
    const o = ctx.empty([x.length]);
    ctx.run({
      pipeline: ctx.pipeline('erf_test', `${ERF_WGSL}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < ${x.length}u) { o[id.x] = erf_f32(x[id.x]); }
}`),
      bindings: [t, o],
      workgroups: [Math.ceil(x.length / 64)],
    });
    const got = await o.read();
    let worst = 0;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(got[i]! - erf64(x[i]!)));
    expect(worst).toBeLessThan(1e-6);
  });
});

// ---------------------------------------------------------------- linear

describe('linear', () => {
  const M = 37, K = 29, N = 53;

  for (const activation of ['none', 'relu', 'gelu'] as const) {
    for (const withBias of [false, true]) {
      for (const withResidual of [false, true]) {
        it(`[${M}, ${K}] x [${N}, ${K}]ᵀ act=${activation} bias=${withBias} residual=${withResidual}`, async () => {
          const ctx = await gpu();
          const x = randn(M * K, 11), w = randn(N * K, 12, 0.3), bias = randn(N, 13), res = randn(M * N, 14);
          const out = await linear(ctx, ctx.upload(x, [M, K]), ctx.upload(w, [N, K]), {
            activation,
            bias: withBias ? ctx.upload(bias, [N]) : undefined,
            residual: withResidual ? ctx.upload(res, [M, N]) : undefined,
          }).read();
          const mm = matmulRef(x, w, 1, M, K, N, true, false);
          const ref = mm.map((v, i) => {
            const n = i % N;
            return act64(v + (withBias ? bias[n]! : 0), activation) + (withResidual ? res[i]! : 0);
          });
          expect(maxAbsDiff(out, ref)).toBeLessThan(tol(K, maxAbs(ref)));
        });
      }
    }
  }

  it('keeps leading axes: [2, 5, 7, K] -> [2, 5, 7, N]', async () => {
    const ctx = await gpu();
    const K2 = 24, N2 = 19;
    const x = randn(70 * K2, 21), w = randn(N2 * K2, 22, 0.3), bias = randn(N2, 23);
    const t = linear(ctx, ctx.upload(x, [2, 5, 7, K2]), ctx.upload(w, [N2, K2]), { bias: ctx.upload(bias, [N2]), activation: 'gelu' });
    expect(t.shape).toEqual([2, 5, 7, N2]);
    const ref = matmulRef(x, w, 1, 70, K2, N2, true, false).map((v, i) => act64(v + bias[i % N2]!, 'gelu'));
    expect(maxAbsDiff(await t.read(), ref)).toBeLessThan(tol(K2, maxAbs(ref)));
  });

  it('covers several tiles in both directions and writes into `out`', async () => {
    const ctx = await gpu();
    const M2 = 70, K2 = 40, N2 = 150;
    const x = randn(M2 * K2, 31), w = randn(N2 * K2, 32, 0.2);
    const out = ctx.empty([M2, N2]);
    const r = linear(ctx, ctx.upload(x, [M2, K2]), ctx.upload(w, [N2, K2]), { out });
    expect(r).toBe(out);
    const ref = matmulRef(x, w, 1, M2, K2, N2, true, false);
    expect(maxAbsDiff(await out.read(), ref)).toBeLessThan(tol(K2, maxAbs(ref)));
  });

  it('throws a clear error on shape mismatches', async () => {
    const ctx = await gpu();
    const x = ctx.empty([4, 29]);
    expect(() => linear(ctx, x, ctx.empty([53, 30]))).toThrow(/\[4, 29\].*K=29.*\[53, 30\]/);
    expect(() => linear(ctx, x, ctx.empty([53, 29]), { bias: ctx.empty([52]) })).toThrow(/bias \[52\]/);
    expect(() => linear(ctx, x, ctx.empty([53, 29]), { residual: ctx.empty([4, 52]) })).toThrow(/residual \[4, 52\]/);
    expect(() => linear(ctx, x, ctx.empty([53, 29]), { out: ctx.empty([53, 4]) })).toThrow(/out has shape \[53, 4\]/);
  });
});

// ---------------------------------------------------------------- matmul

describe('matmul', () => {
  const B = 3, M = 37, K = 29, N = 53;

  it(`batched [${B}, ${M}, ${K}] x [${B}, ${K}, ${N}]`, async () => {
    const ctx = await gpu();
    const a = randn(B * M * K, 41), b = randn(B * K * N, 42);
    const t = matmul(ctx, ctx.upload(a, [B, M, K]), ctx.upload(b, [B, K, N]));
    expect(t.shape).toEqual([B, M, N]);
    const ref = matmulRef(a, b, B, M, K, N, false, true);
    expect(maxAbsDiff(await t.read(), ref)).toBeLessThan(tol(K, maxAbs(ref)));
  });

  it(`batched [${B}, ${M}, ${K}] x [${B}, ${N}, ${K}]ᵀ with alpha (attention scores)`, async () => {
    const ctx = await gpu();
    const a = randn(B * M * K, 43), b = randn(B * N * K, 44);
    const alpha = 1 / Math.sqrt(K);
    const t = matmul(ctx, ctx.upload(a, [B, M, K]), ctx.upload(b, [B, N, K]), { transposeB: true, alpha });
    const ref = matmulRef(a, b, B, M, K, N, true, true, alpha);
    expect(maxAbsDiff(await t.read(), ref)).toBeLessThan(tol(K, maxAbs(ref)));
  });

  it('2-D operands, and a 2-D b shared by a batched a, both layouts', async () => {
    const ctx = await gpu();
    const a = randn(B * M * K, 45), bn = randn(K * N, 46), bt = randn(N * K, 47);
    const t2 = matmul(ctx, ctx.upload(a.subarray(0, M * K), [M, K]), ctx.upload(bn, [K, N]));
    expect(t2.shape).toEqual([M, N]);
    const ref2 = matmulRef(a.subarray(0, M * K), bn, 1, M, K, N, false, false);
    expect(maxAbsDiff(await t2.read(), ref2)).toBeLessThan(tol(K, maxAbs(ref2)));
    const t3 = matmul(ctx, ctx.upload(a, [B, M, K]), ctx.upload(bt, [N, K]), { transposeB: true });
    expect(t3.shape).toEqual([B, M, N]);
    const ref3 = matmulRef(a, bt, B, M, K, N, true, false);
    expect(maxAbsDiff(await t3.read(), ref3)).toBeLessThan(tol(K, maxAbs(ref3)));
  });

  it('handles tiny and single-row/column shapes', async () => {
    const ctx = await gpu();
    for (const [m, k, n] of [[1, 1, 1], [1, 7, 3], [9, 2, 1], [2, 65, 66]] as const) {
      const a = randn(m * k, 50 + m), b = randn(k * n, 60 + n);
      const t = matmul(ctx, ctx.upload(a, [m, k]), ctx.upload(b, [k, n]));
      const ref = matmulRef(a, b, 1, m, k, n, false, false);
      expect(maxAbsDiff(await t.read(), ref)).toBeLessThan(tol(k, maxAbs(ref)));
    }
  });

  it('uses a 2-D grid past 65535 workgroups', async () => {
    const ctx = await gpu();
    // 70000 batches of [8, 1] x [1, 1]: 70000 tiles, one per batch
    const batch = 70000;
    const a = randn(batch * 8, 71), b = randn(batch, 72);
    const t = matmul(ctx, ctx.upload(a, [batch, 8, 1]), ctx.upload(b, [batch, 1, 1]));
    const got = await t.read();
    const ref = a.map((v, i) => v * b[Math.floor(i / 8)]!);
    expect(maxAbsDiff(got, ref)).toBeLessThan(1e-6);
  });

  it('throws a clear error on shape mismatches', async () => {
    const ctx = await gpu();
    expect(() => matmul(ctx, ctx.empty([3, 4, 5]), ctx.empty([3, 6, 7]))).toThrow(/\[3, 4, 5\].*K=5.*\[3, 6, 7\].*K=6/);
    expect(() => matmul(ctx, ctx.empty([3, 4, 5]), ctx.empty([3, 7, 6]), { transposeB: true })).toThrow(/transposed/);
    expect(() => matmul(ctx, ctx.empty([3, 4, 5]), ctx.empty([2, 5, 7]))).toThrow(/batch/);
    expect(() => matmul(ctx, ctx.empty([5]), ctx.empty([5, 7]))).toThrow(/\[5\]/);
  });
});
