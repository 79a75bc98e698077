import { describe, expect, it } from 'vitest';
import { convTranspose2d } from '../src/kernels/conv_transpose2d.js';
import { erfF32 } from '../src/kernels/matmul.js';
import { gpu, maxAbs, maxAbsDiff, randn } from './helpers.js';

/** ConvTranspose2d, kernel = stride = k, no padding; x [B, H, W, Cin], w [Cin, Cout, k, k]. */
function ref(x: Float32Array, w: Float32Array, bias: Float32Array | null, B: number, H: number, W: number, Cin: number, Cout: number, k: number, gelu: boolean,
  add?: { data: Float32Array; batch: number }): Float32Array {
  const Ho = H * k, Wo = W * k;
  const out = new Float32Array(B * Ho * Wo * Cout);
  for (let b = 0; b < B; b++) for (let oy = 0; oy < Ho; oy++) for (let ox = 0; ox < Wo; ox++) for (let co = 0; co < Cout; co++) {
    let s = bias ? bias[co]! : 0;
    const y = Math.floor(oy / k), xx = Math.floor(ox / k), ky = oy % k, kx = ox % k;
    for (let ci = 0; ci < Cin; ci++) s += x[((b * H + y) * W + xx) * Cin + ci]! * w[((ci * Cout + co) * k + ky) * k + kx]!;
    if (add) s += add.data[(((add.batch === 1 ? 0 : b) * Ho + oy) * Wo + ox) * Cout + co]!;
    if (gelu) s = 0.5 * s * (1 + erfF32(s / Math.SQRT2));
    out[((b * Ho + oy) * Wo + ox) * Cout + co] = s;
  }
  return out;
}

describe('convTranspose2d', () => {
  for (const [B, H, W, Cin, Cout, k, gelu, bias] of [
    [1, 5, 7, 13, 6, 2, false, true], [2, 4, 3, 16, 8, 2, true, true], [1, 3, 3, 5, 3, 3, false, false],
  ] as const) {
    it(`B=${B} ${H}x${W} ${Cin}->${Cout} k=${k} gelu=${gelu} bias=${bias}`, async () => {
      const ctx = await gpu();
      const x = randn(B * H * W * Cin, 1), w = randn(Cin * Cout * k * k, 2, 0.3), b = randn(Cout, 3);
      const out = await convTranspose2d(ctx, ctx.upload(x, [B, H, W, Cin]), ctx.upload(w, [Cin, Cout, k, k]),
        bias ? ctx.upload(b, [Cout]) : undefined, { activation: gelu ? 'gelu' : 'none' }).read();
      const r = ref(x, w, bias ? b : null, B, H, W, Cin, Cout, k, gelu);
      expect(maxAbsDiff(out, r)).toBeLessThan(1e-5 * Math.max(1, maxAbs(r)));
    });
  }
  for (const addBatch of [1, 2]) {
    it(`adds a map before the GELU (SAM 2's high-resolution features), the map's batch ${addBatch} of 2`, async () => {
      const ctx = await gpu();
      const [B, H, W, Cin, Cout, k] = [2, 4, 5, 12, 6, 2];
      const x = randn(B * H * W * Cin, 4), w = randn(Cin * Cout * k * k, 5, 0.3), b = randn(Cout, 6);
      const a = randn(addBatch * H * k * W * k * Cout, 7);
      const out = await convTranspose2d(ctx, ctx.upload(x, [B, H, W, Cin]), ctx.upload(w, [Cin, Cout, k, k]), ctx.upload(b, [Cout]),
        { activation: 'gelu', add: ctx.upload(a, [addBatch, H * k, W * k, Cout]) }).read();
      const r = ref(x, w, b, B, H, W, Cin, Cout, k, true, { data: a, batch: addBatch });
      expect(maxAbsDiff(out, r)).toBeLessThan(1e-5 * Math.max(1, maxAbs(r)));
      expect(maxAbsDiff(out, ref(x, w, b, B, H, W, Cin, Cout, k, true))).toBeGreaterThan(0.1);
      expect(() => convTranspose2d(ctx, ctx.empty([B, H, W, Cin]), ctx.upload(w, [Cin, Cout, k, k]), undefined, { add: ctx.empty([1, H, W, Cout]) }))
        .toThrow(/add \[1,4,5,6\] is not \[1 or 2, 8, 10, 6\]/);
    });
  }

  it('rejects a weight that does not match the input channels', async () => {
    const ctx = await gpu();
    expect(() => convTranspose2d(ctx, ctx.empty([1, 2, 2, 4]), ctx.empty([5, 2, 2, 2]), undefined)).toThrow(/weight/);
  });
});
