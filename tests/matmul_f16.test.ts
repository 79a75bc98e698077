/**
 * f16 weights: linear, matmul (B) and conv2d reading a half-precision weight, computing in f32,
 * against float64 references on the f16-rounded weights; and the weight loader keeping F16
 * tensors as f16 only for the consumers that allow it.
 */
import { describe, expect, it } from 'vitest';
import { f16ToF32Array, f32ToF16Array } from '../src/gpu/half.js';
import { conv2d } from '../src/kernels/conv2d.js';
import { linear, matmul } from '../src/kernels/matmul.js';
import { writeSafetensors, parseSafetensors } from '../src/io/safetensors.js';
import { WeightLoader } from '../src/io/weights.js';
import { Linear } from '../src/layers/linear.js';
import { Conv2d } from '../src/layers/conv.js';
import { convRef, gpu, maxAbs, maxAbsDiff, randn } from './helpers.js';

/** The f16 words of `w` and the f32 values they stand for. */
function half(w: Float32Array): { bits: Uint16Array; value: Float32Array } {
  const bits = f32ToF16Array(w);
  return { bits, value: f16ToF32Array(bits) };
}

function linearRef(x: Float32Array, w: Float32Array, bias: Float32Array | undefined, M: number, K: number, N: number, relu: boolean): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let acc = bias ? bias[n]! : 0;
    for (let k = 0; k < K; k++) acc += x[m * K + k]! * w[n * K + k]!;
    out[m * N + n] = relu ? Math.max(acc, 0) : acc;
  }
  return out;
}

describe('f16 weights', () => {
  it('the device has shader-f16 (lavapipe does)', async () => {
    const ctx = await gpu();
    expect(ctx.hasF16).toBe(true);
  });

  for (const [M, K, N, relu] of [[37, 70, 50, true], [9, 192, 17, false], [64, 33, 129, false]] as const) {
    it(`linear M=${M} K=${K} N=${N} with an f16 weight`, async () => {
      const ctx = await gpu();
      const x = randn(M * K, 1), { bits, value } = half(randn(N * K, 2, 0.3)), bias = randn(N, 3);
      const ref = linearRef(x, value, bias, M, K, N, relu);
      const w16 = ctx.upload(bits, [N, K]);
      expect(w16.dtype).toBe('f16');
      expect(w16.byteLength).toBe(N * K * 2);
      const out = linear(ctx, ctx.upload(x, [M, K]), w16, { bias: ctx.upload(bias, [N]), activation: relu ? 'relu' : 'none' });
      const got = await out.read();
      // exact f16 values, f32 accumulation: as tight as the f32 kernel's test
      expect(maxAbsDiff(got, ref)).toBeLessThan(2e-5 * Math.max(1, maxAbs(ref)));
      // and it really is reading f16: the f32 weight it stands for gives the same result
      const out32 = await linear(ctx, ctx.upload(x, [M, K]), ctx.upload(value, [N, K]), { bias: ctx.upload(bias, [N]), activation: relu ? 'relu' : 'none' }).read();
      expect(maxAbsDiff(got, out32)).toBeLessThan(1e-5 * Math.max(1, maxAbs(ref)));
    });
  }

  it('batched matmul with an f16 B (transposed and not)', async () => {
    const ctx = await gpu();
    const batch = 2, M = 11, K = 21, N = 13;
    const a = randn(batch * M * K, 4), { bits, value } = half(randn(batch * N * K, 5));
    for (const transB of [true, false]) {
      const out = await matmul(ctx, ctx.upload(a, [batch, M, K]), ctx.upload(bits, transB ? [batch, N, K] : [batch, K, N]),
        { transposeB: transB }).read();
      const ref = new Float64Array(batch * M * N);
      for (let b = 0; b < batch; b++) for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          acc += a[(b * M + m) * K + k]! * value[b * N * K + (transB ? n * K + k : k * N + n)]!;
        }
        ref[(b * M + m) * N + n] = acc;
      }
      expect(maxAbsDiff(out, ref)).toBeLessThan(2e-5 * Math.max(1, maxAbs(ref)));
    }
  });

  const convCases = [
    { name: 'gemm, unpadded (patch embed 8x8 stride 8, 3->24)', B: 1, H: 24, W: 32, Cin: 3, Cout: 24, k: 8, stride: 8, pad: 0, groups: 1, bias: true },
    { name: 'gemm, padded 3x3 (13->35)', B: 1, H: 7, W: 9, Cin: 13, Cout: 35, k: 3, stride: 1, pad: 1, groups: 1, bias: false },
    { name: 'depthwise 7x7 (C=10)', B: 1, H: 8, W: 9, Cin: 10, Cout: 10, k: 7, stride: 1, pad: 3, groups: 10, bias: true },
    { name: 'direct 3x3 stride 2 (1->4)', B: 1, H: 11, W: 9, Cin: 1, Cout: 4, k: 3, stride: 2, pad: 1, groups: 1, bias: true },
  ];
  for (const c of convCases) {
    it(`conv2d ${c.name} with an f16 weight`, async () => {
      const ctx = await gpu();
      const xs = [c.B, c.H, c.W, c.Cin], ws = [c.Cout, c.Cin / c.groups, c.k, c.k];
      const x = randn(xs.reduce((a, b) => a * b), 6);
      const { bits, value } = half(randn(ws.reduce((a, b) => a * b), 7, 0.2));
      const bias = c.bias ? randn(c.Cout, 8) : undefined;
      const ref = convRef(x, xs, value, ws, bias, c.stride, c.pad, c.groups).out;
      const out = await conv2d(ctx, ctx.upload(x, xs), ctx.upload(bits, ws), bias && ctx.upload(bias, [c.Cout]),
        { stride: c.stride, padding: c.pad, groups: c.groups }).read();
      expect(maxAbsDiff(out, ref)).toBeLessThan(2e-5 * Math.max(1, maxAbs(ref)));
    });
  }

  it('WeightLoader keeps F16 linear/conv weights f16 and everything else f32', async () => {
    const ctx = await gpu();
    const lw = half(randn(6 * 5, 9)), lb = half(randn(6, 10)), cw = half(randn(4 * 3 * 2 * 2, 11)), table = half(randn(7 * 3, 12));
    const bytes = writeSafetensors({
      'fc.weight': { dtype: 'F16', shape: [6, 5], data: lw.bits },
      'fc.bias': { dtype: 'F16', shape: [6], data: lb.bits },
      'conv.weight': { dtype: 'F16', shape: [4, 3, 2, 2], data: cw.bits },
      'conv.bias': { dtype: 'F32', shape: [4], data: randn(4, 13) },
      'table': { dtype: 'F16', shape: [7, 3], data: table.bits },
    });
    const file = parseSafetensors(bytes, 'f16.safetensors');

    const w = new WeightLoader(file, ctx);
    expect(w.keepsF16).toBe(true);
    const fc = Linear.load(ctx, w, 'fc', 5, 6);
    const conv = Conv2d.load(ctx, w, 'conv', 3, 4, 2);
    const t = w.tensor('table', [7, 3]); // taken without allowF16: f32
    w.finish();
    expect(fc.weight.dtype).toBe('f16');
    expect(fc.bias!.dtype).toBe('f32');
    expect(conv.weight.dtype).toBe('f16');
    expect(t.dtype).toBe('f32');
    expect([...await fc.weight.read()]).toEqual([...lw.value]);
    expect([...await t.read()]).toEqual([...table.value]);
    const keptBytes = w.uploadedBytes;
    expect(keptBytes).toBe(30 * 2 + 6 * 4 + 48 * 2 + 4 * 4 + 21 * 4);

    const w32 = new WeightLoader(file, ctx, { keepF16: false });
    const fc32 = Linear.load(ctx, w32, 'fc', 5, 6);
    Conv2d.load(ctx, w32, 'conv', 3, 4, 2);
    w32.tensor('table', [7, 3]);
    w32.finish();
    expect(fc32.weight.dtype).toBe('f32');
    expect(w32.uploadedBytes).toBe((30 + 6 + 48 + 4 + 21) * 4);
    // the same numbers either way
    const x = ctx.upload(randn(3 * 5, 14), [3, 5]);
    expect(maxAbsDiff(await fc.forward(x).read(), await fc32.forward(x).read())).toBeLessThan(1e-6);

    // one name taken both ways gets two tensors of the right dtypes
    const w2 = new WeightLoader(file, ctx, { allowUnused: true });
    const a = w2.tensor('fc.weight', [6, 5], { allowF16: true });
    const b = w2.tensor('fc.weight', [6, 5]);
    expect([a.dtype, b.dtype]).toEqual(['f16', 'f32']);
  });
});
