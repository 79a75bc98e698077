import { describe, expect, it } from 'vitest';
import { windowPartition, windowUnpartition } from '../src/kernels/window.js';
import { gpu, maxAbsDiff, randn } from './helpers.js';

/** The reference's pad + view + permute(0, 1, 3, 2, 4, 5), written out with loops. */
function partitionRef(x: Float32Array, B: number, H: number, W: number, C: number, ws: number): Float32Array {
  const Hp = Math.ceil(H / ws) * ws, Wp = Math.ceil(W / ws) * ws;
  const nWh = Hp / ws, nWw = Wp / ws;
  const out = new Float32Array(B * Hp * Wp * C);
  let o = 0;
  for (let b = 0; b < B; b++) for (let wh = 0; wh < nWh; wh++) for (let ww = 0; ww < nWw; ww++)
    for (let py = 0; py < ws; py++) for (let px = 0; px < ws; px++) for (let c = 0; c < C; c++) {
      const y = wh * ws + py, xx = ww * ws + px;
      out[o++] = y < H && xx < W ? x[((b * H + y) * W + xx) * C + c]! : 0;
    }
  return out;
}

describe('window partition / unpartition', () => {
  for (const [B, H, W, C, ws] of [[1, 32, 32, 8, 14], [2, 7, 10, 5, 6], [1, 12, 12, 3, 6]] as const) {
    it(`B=${B} H=${H} W=${W} C=${C} ws=${ws}`, async () => {
      const ctx = await gpu();
      const x = randn(B * H * W * C, 7);
      const xt = ctx.upload(x, [B, H, W, C]);
      const win = windowPartition(ctx, xt, ws);
      const nW = B * Math.ceil(H / ws) * Math.ceil(W / ws);
      expect(win.shape).toEqual([nW, ws * ws, C]);
      expect(maxAbsDiff(await win.read(), partitionRef(x, B, H, W, C, ws))).toBe(0);
      // round trip, then with a residual
      const back = windowUnpartition(ctx, win, ws, H, W);
      expect(back.shape).toEqual([B, H, W, C]);
      expect(maxAbsDiff(await back.read(), x)).toBe(0);
      const r = randn(B * H * W * C, 8);
      const withRes = windowUnpartition(ctx, win, ws, H, W, { residual: ctx.upload(r, [B, H, W, C]) });
      expect(maxAbsDiff(await withRes.read(), x.map((v, i) => v + r[i]!))).toBe(0);
    });
  }
  it('unpartition of arbitrary windows matches the reference permutation', async () => {
    const ctx = await gpu();
    const [B, H, W, C, ws] = [2, 7, 10, 3, 6];
    const nW = B * 2 * 2;
    const win = randn(nW * ws * ws * C, 9);
    const out = await windowUnpartition(ctx, ctx.upload(win, [nW, ws * ws, C]), ws, H, W).read();
    // the inverse of partitionRef on the padded grid, cropped
    const ref = new Float32Array(B * H * W * C);
    let o = 0;
    for (let b = 0; b < B; b++) for (let wh = 0; wh < 2; wh++) for (let ww = 0; ww < 2; ww++)
      for (let py = 0; py < ws; py++) for (let px = 0; px < ws; px++) for (let c = 0; c < C; c++, o++) {
        const y = wh * ws + py, xx = ww * ws + px;
        if (y < H && xx < W) ref[((b * H + y) * W + xx) * C + c] = win[o]!;
      }
    expect(maxAbsDiff(out, ref)).toBe(0);
  });
});
