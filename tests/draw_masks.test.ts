/**
 * drawMasks renders into an rgba8unorm / bgra8unorm texture in Node; the pixels are copied back
 * and compared with the overlay of the upsampled logits (no image) and a CPU blend (image).
 */
import { describe, expect, it } from 'vitest';
import type { GpuContext } from '../src/gpu/context.js';
import { drawMasks } from '../src/kernels/draw_masks.js';
import { resizeBilinear } from '../src/kernels/mask_ops.js';
import { upsampleTensor } from '../src/kernels/mask_upsample.js';
import { gpu, randn, rng } from './helpers.js';

const TEX = { COPY_SRC: 0x01, COPY_DST: 0x02, TEXTURE_BINDING: 0x04, RENDER_ATTACHMENT: 0x10 };

function target(ctx: GpuContext, W: number, H: number, format: GPUTextureFormat = 'rgba8unorm'): GPUTexture {
  return ctx.device.createTexture({ size: [W, H], format, usage: TEX.RENDER_ATTACHMENT | TEX.COPY_SRC });
}

/** The texture's bytes, H * W * 4, in its own channel order. */
async function readTexture(ctx: GpuContext, tex: GPUTexture): Promise<Uint8Array> {
  const W = tex.width, H = tex.height, row = Math.ceil((W * 4) / 256) * 256;
  const buf = ctx.device.createBuffer({ size: row * H, usage: 0x0001 /* MAP_READ */ | 0x0008 /* COPY_DST */ });
  const enc = ctx.device.createCommandEncoder();
  enc.copyTextureToBuffer({ texture: tex }, { buffer: buf, bytesPerRow: row }, [W, H]);
  ctx.device.queue.submit([enc.finish()]);
  await buf.mapAsync(1);
  const src = new Uint8Array(buf.getMappedRange());
  const out = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++) out.set(src.subarray(y * row, y * row + W * 4), y * W * 4);
  buf.unmap();
  buf.destroy();
  return out;
}

/** Smooth logits (box-filtered noise) so that masks have large regions. */
function smoothLogits(O: number, h: number, w: number, seed: number): Float32Array {
  const n = randn(O * h * w, seed);
  const out = new Float32Array(O * h * w);
  for (let o = 0; o < O; o++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    let s = 0;
    for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
      s += n[o * h * w + Math.min(h - 1, Math.max(0, y + dy)) * w + Math.min(w - 1, Math.max(0, x + dx))]!;
    }
    out[o * h * w + y * w + x] = s - 0.5;
  }
  return out;
}

const COLORS: [number, number, number][] = [[30, 144, 255], [255, 64, 64], [64, 200, 64]];
const O = 3, h = 20, w = 24, H = 37, W = 53;

describe('drawMasks', () => {
  it('without an image equals the overlay of the upsampled logits (straight alpha)', async () => {
    const ctx = await gpu();
    const logits = ctx.upload(smoothLogits(O, h, w, 1), [O, h, w]);
    const tex = target(ctx, W, H);
    drawMasks(ctx, { logits, target: tex, colors: COLORS, alpha: 128 / 255 });
    const drawn = await readTexture(ctx, tex);
    const overlay = new Uint8Array((await upsampleTensor(ctx, logits, { H, W, mode: 'overlay', colors: COLORS, alpha: 128 }).read()).buffer);
    let bad = 0, covered = 0;
    for (let i = 0; i < W * H * 4; i++) if (drawn[i] !== overlay[i]) bad++;
    for (let i = 0; i < W * H; i++) if (overlay[i * 4 + 3]) covered++;
    expect(bad).toBe(0);
    expect(covered).toBeGreaterThan(W * H * 0.2); // a real test: masks cover a good part
    expect(covered).toBeLessThan(W * H * 0.95);

    // premultiplied: rgb * alpha
    drawMasks(ctx, { logits, target: tex, colors: COLORS, alpha: 128 / 255, premultiplied: true });
    const pre = await readTexture(ctx, tex);
    let badPre = 0;
    for (let i = 0; i < W * H * 4; i++) {
      const expected = i % 4 === 3 ? overlay[i]! : Math.round((overlay[i]! / 255) * (128 / 255) * 255);
      if (Math.abs(pre[i]! - expected) > 1) badPre++;
    }
    expect(badPre).toBe(0);
    tex.destroy();
  });

  it('full-res logits (same size as the target) and a threshold', async () => {
    const ctx = await gpu();
    const logits = ctx.upload(smoothLogits(2, H, W, 2), [1, 2, H, W]);
    const tex = target(ctx, W, H);
    drawMasks(ctx, { logits, target: tex, colors: COLORS, alpha: 1, threshold: 0.3 });
    const drawn = await readTexture(ctx, tex);
    const overlay = new Uint8Array((await upsampleTensor(ctx, logits, { H, W, mode: 'overlay', colors: COLORS, alpha: 255, threshold: 0.3 }).read()).buffer);
    expect(Array.from(drawn)).toEqual(Array.from(overlay));
    tex.destroy();
  });

  it('over an image: blends the last covering object colour, leaves the rest of the image', async () => {
    const ctx = await gpu();
    const logitsData = smoothLogits(O, h, w, 3);
    const logits = ctx.upload(logitsData, [O, h, w]);
    const r = rng(5);
    const img = Uint8Array.from({ length: W * H * 4 }, (_, i) => (i % 4 === 3 ? 255 : Math.floor(r() * 256)));
    const image = ctx.device.createTexture({ size: [W, H], format: 'rgba8unorm', usage: TEX.TEXTURE_BINDING | TEX.COPY_DST });
    ctx.device.queue.writeTexture({ texture: image }, img, { bytesPerRow: W * 4 }, [W, H]);
    const alpha = 0.4;
    const overlay = new Uint8Array((await upsampleTensor(ctx, logits, { H, W, mode: 'overlay', colors: COLORS, alpha: 255 }).read()).buffer);
    for (const format of ['rgba8unorm', 'bgra8unorm'] as const) {
      const tex = target(ctx, W, H, format);
      drawMasks(ctx, { logits, target: tex, image, colors: COLORS, alpha });
      const drawn = await readTexture(ctx, tex);
      let bad = 0;
      for (let i = 0; i < W * H; i++) {
        const cov = overlay[i * 4 + 3] !== 0;
        for (let c = 0; c < 4; c++) {
          const base = img[i * 4 + c]! / 255, col = overlay[i * 4 + c]! / 255;
          const expected = Math.round(255 * (cov && c < 3 ? base * (1 - alpha) + col * alpha : base));
          const at = format === 'bgra8unorm' && c < 3 ? 2 - c : c; // bgra stores b, g, r, a
          if (Math.abs(drawn[i * 4 + at]! - expected) > 1) bad++;
        }
      }
      expect(bad).toBe(0);
      tex.destroy();
    }
    image.destroy();
  });

  it('an image of another size is sampled; draws go in order with compute work', async () => {
    const ctx = await gpu();
    // a constant-colour image at half the size samples to the same colour everywhere
    const image = ctx.device.createTexture({ size: [13, 9], format: 'rgba8unorm', usage: TEX.TEXTURE_BINDING | TEX.COPY_DST });
    ctx.device.queue.writeTexture({ texture: image }, new Uint8Array(13 * 9 * 4).fill(200), { bytesPerRow: 13 * 4 }, [13, 9]);
    // logits computed on the GPU right before the draw (recorded, not yet submitted): all covered.
    // Its pooled buffer held -5 (nothing covered) before, so a draw that ran first would show that.
    const stale = ctx.upload(new Float32Array(h * w).fill(-5), [1, h, w]);
    const stale2 = ctx.empty([1, h, w]);
    stale.release();
    stale2.release();
    const src = ctx.upload(new Float32Array(h * w).fill(5), [1, h, w]); // takes stale2's buffer
    const covered = resizeBilinear(ctx, src, h, w); // takes the stale buffer from the pool
    expect(covered.buffer).toBe(stale.buffer);
    const tex = target(ctx, W, H);
    drawMasks(ctx, { logits: covered, target: tex, image, colors: [[0, 0, 0]], alpha: 0.5 });
    const drawn = await readTexture(ctx, tex);
    for (let i = 0; i < W * H; i++) {
      expect(Math.abs(drawn[i * 4]! - 100)).toBeLessThanOrEqual(1);
      expect(drawn[i * 4 + 3]).toBe(200);
    }
    covered.release(); src.release();
    tex.destroy(); image.destroy();
  });

  it('rejects bad options', async () => {
    const ctx = await gpu();
    const logits = ctx.upload(new Float32Array(4), [1, 2, 2]);
    const tex = target(ctx, 4, 4);
    expect(() => drawMasks(ctx, { logits, target: tex, alpha: 2 })).toThrow(/alpha/);
    expect(() => drawMasks(ctx, { logits, target: tex, colors: [] })).toThrow(/colours/);
    tex.destroy();
  });
});
