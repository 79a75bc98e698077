/**
 * Tiles and bands: masks at an image's size are computed and read back in tiles, the input is
 * preprocessed in bands of rows, so nothing binds more than one storage binding may hold. Here
 * the tile size is made tiny, so small images take the tiled paths (odd sizes: tiles and packed
 * words straddle planes) and must give what one piece gives, and what the CPU reference gives.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { GpuContext } from '../src/gpu/context.js';
import { resizeBilinear, resizeBilinearCpu } from '../src/kernels/mask_ops.js';
import { upsampleByteLength, upsampleInto, type UpsampleOptions } from '../src/kernels/mask_upsample.js';
import { planBands, preprocessImage } from '../src/kernels/preprocess.js';
import type { Tensor } from '../src/gpu/tensor.js';
import { gpu, randn, randomImage } from './helpers.js';

let saved: number | null = null;
afterEach(async () => {
  const ctx = await gpu();
  if (saved !== null) ctx.tileBytes = saved;
  saved = null;
});
async function tiles(bytes: number): Promise<GpuContext> {
  const ctx = await gpu();
  saved ??= ctx.tileBytes;
  ctx.tileBytes = bytes;
  return ctx;
}

async function readUpsampled(ctx: GpuContext, low: Tensor, o: UpsampleOptions): Promise<ArrayBuffer> {
  const rb = ctx.readback(upsampleByteLength(low, o));
  upsampleInto(ctx, low, o, rb);
  return (await rb.read())[0]!;
}

/** CPU: planes [start, end) upsampled, with the non-overlap constraint over all planes if asked. */
function reference(x: Float32Array, P: number, h: number, w: number, H: number, W: number, nonOverlap: boolean, start = 0, end = P): Float32Array {
  const up = resizeBilinearCpu(x, P, h, w, H, W);
  const n = H * W;
  if (nonOverlap) {
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let p = 1; p < P; p++) if (up[p * n + i]! > up[best * n + i]!) best = p;
      for (let p = 0; p < P; p++) if (p !== best) up[p * n + i] = Math.min(up[p * n + i]!, -10);
    }
  }
  return up.slice(start * n, end * n);
}

describe('upsampling in tiles', () => {
  const P = 3, h = 8, w = 6, H = 13, W = 11; // H * W = 143: words and tiles straddle planes
  const x = randn(P * h * w, 21, 3);

  it('gives the CPU reference as logits, bytes and an overlay, whatever the tile size', async () => {
    for (const tileBytes of [64, 100 * 4, 1 << 20]) {
      const ctx = await tiles(tileBytes);
      const low = ctx.upload(x, [P, h, w]);
      const ref = reference(x, P, h, w, H, W, false);
      const logits = new Float32Array(await readUpsampled(ctx, low, { H, W, mode: 'logits' }));
      expect(logits.length).toBe(P * H * W);
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(logits[i]! - ref[i]!));
      expect(worst).toBeLessThan(1e-5);
      // bytes are the logits' signs (exactly: the same kernel arithmetic)
      const bytes = new Uint8Array(await readUpsampled(ctx, low, { H, W, mode: 'bytes', threshold: 0.25 }));
      expect(bytes.length).toBe(Math.ceil((P * H * W) / 4) * 4);
      expect(Array.from(bytes.subarray(0, P * H * W))).toEqual(Array.from(logits, (v) => (v > 0.25 ? 1 : 0)));
      expect(Array.from(bytes.subarray(P * H * W))).toEqual(Array(bytes.length - P * H * W).fill(0));
      // overlay: the last plane covering a pixel
      const colors: [number, number, number][] = [[10, 20, 30], [40, 50, 60]];
      const ov = new Uint8Array(await readUpsampled(ctx, low, { H, W, mode: 'overlay', colors, alpha: 200 }));
      for (let i = 0; i < H * W; i++) {
        let c = [0, 0, 0, 0];
        for (let p = 0; p < P; p++) if (logits[p * H * W + i]! > 0) c = [...colors[p % 2]!, 200];
        expect(Array.from(ov.subarray(i * 4, i * 4 + 4)), `pixel ${i}`).toEqual(c);
      }
      low.release();
    }
  });

  it('reads one plane, or all under the non-overlap constraint, in tiles', async () => {
    const ctx = await tiles(48);
    const low = ctx.upload(x, [P, h, w]);
    const whole = new Float32Array(await readUpsampled(ctx, low, { H, W, mode: 'logits' }));
    const one = new Float32Array(await readUpsampled(ctx, low, { H, W, mode: 'logits', planes: [1, 2] }));
    expect(Array.from(one)).toEqual(Array.from(whole.subarray(H * W, 2 * H * W)));
    const oneBytes = new Uint8Array(await readUpsampled(ctx, low, { H, W, mode: 'bytes', planes: [2, 3] }));
    expect(Array.from(oneBytes.subarray(0, H * W))).toEqual(Array.from(whole.subarray(2 * H * W), (v) => (v > 0 ? 1 : 0)));
    const ref = reference(x, P, h, w, H, W, true);
    const constrained = new Float32Array(await readUpsampled(ctx, low, { H, W, mode: 'logits', nonOverlap: true }));
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(constrained[i]! - ref[i]!));
    expect(worst).toBeLessThan(1e-5);
    const constrainedOne = new Uint8Array(await readUpsampled(ctx, low, { H, W, mode: 'bytes', nonOverlap: true, planes: [1, 2] }));
    expect(Array.from(constrainedOne.subarray(0, H * W))).toEqual(Array.from(constrained.subarray(H * W, 2 * H * W), (v) => (v > 0 ? 1 : 0)));
    low.release();
  });

  it('resizeBilinear (one tensor) equals the tiles, and refuses what one binding cannot hold', async () => {
    const ctx = await tiles(64);
    const low = ctx.upload(x, [P, h, w]);
    const t = resizeBilinear(ctx, low, H, W);
    expect(t.shape).toEqual([P, H, W]);
    expect(Array.from(await t.read())).toEqual(Array.from(new Float32Array(await readUpsampled(ctx, low, { H, W, mode: 'logits' }))));
    t.release();
    // 3 planes of 4096 x 4096 f32: 201 MB > any 128 MiB..200 MB binding; refused before any allocation
    const held = ctx.bytesHeld;
    expect(() => resizeBilinear(ctx, low, 8192, 8192)).toThrow(/exceed one GPU binding/);
    expect(ctx.bytesHeld).toBe(held);
    expect(() => resizeBilinear(ctx, low, 10.5, 4)).toThrow(/not an integer/);
    low.release();
  });
});

describe('preprocessing in bands', () => {
  it('splits the output rows so that each band fits, covering every row once', () => {
    // 1000 source rows -> 16 output rows: about 63 source rows each (plus the filter's support)
    const ymin = new Int32Array(16), ysize = new Int32Array(16);
    for (let i = 0; i < 16; i++) {
      const c = (i + 0.5) * 62.5;
      ymin[i] = Math.max(0, Math.trunc(c - 62.5 + 0.5));
      ysize[i] = Math.min(1000, Math.trunc(c + 62.5 + 0.5)) - ymin[i]!;
    }
    const bands = planBands(ymin, ysize, 40, 12, 300 * 40);
    expect(bands.length).toBeGreaterThan(3);
    expect(bands[0]!.oy0).toBe(0);
    expect(bands.at(-1)!.oy1).toBe(16);
    for (let k = 1; k < bands.length; k++) expect(bands[k]!.oy0).toBe(bands[k - 1]!.oy1);
    for (const b of bands) {
      expect((b.y1 - b.y0) * 40).toBeLessThanOrEqual(300 * 40);
      for (let oy = b.oy0; oy < b.oy1; oy++) {
        expect(ymin[oy]).toBeGreaterThanOrEqual(b.y0);
        expect(ymin[oy]! + ysize[oy]!).toBeLessThanOrEqual(b.y1);
      }
    }
  });

  it('gives bit-identical input in bands and in one piece (RGB and RGBA, down- and upscaling)', async () => {
    for (const [W, H, ch, S, aa] of [[97, 203, 3, 32, true], [61, 45, 4, 48, true], [150, 77, 4, 40, false]] as const) {
      const img = randomImage(W, H, W + H);
      const src = ch === 4 ? img : { data: Uint8Array.from({ length: W * H * 3 }, (_, i) => img.data[Math.floor(i / 3) * 4 + (i % 3)]!), width: W, height: H, channels: 3 as const };
      let ctx = await tiles(1 << 26);
      const one = await preprocessImage(ctx, src, S, { antialias: aa }).read();
      ctx = await tiles(W * ch * 9); // a band of ~9 source rows
      const before = ctx.stats.dispatches;
      const banded = await preprocessImage(ctx, src, S, { antialias: aa }).read();
      expect(ctx.stats.dispatches - before, `${W}x${H}x${ch}: bands`).toBeGreaterThan(4);
      expect(Array.from(banded), `${W}x${H}x${ch} -> ${S}`).toEqual(Array.from(one));
    }
  });
});
