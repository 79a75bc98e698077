import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { aaWeights, IMAGENET_MEAN, IMAGENET_STD, preprocessImage } from '../src/kernels/preprocess.js';
import { decodeImageFile } from '../src/io/image.js';
import { parseSafetensors } from '../src/io/safetensors.js';
import { gpu, maxAbsDiff, rng } from './helpers.js';

const SHARED = fileURLToPath(new URL('../../shared', import.meta.url));

/**
 * torchvision Resize(antialias=True) on ToTensor's output, then Normalize, in float64, written from
 * PyTorch's _upsample_bilinear2d_aa: separable (horizontal, then vertical), each output averaging
 * the inputs under a triangle filter centred at scale * (i + 0.5), stretched by the scale when
 * shrinking, with the weights normalised to sum 1. Returns [size, size, 3].
 */
function preprocessRef(data: ArrayLike<number>, W: number, H: number, ch: number, size: number): Float64Array {
  const axis = (inSize: number, outSize: number) => {
    const scale = inSize / outSize;
    const support = scale >= 1 ? scale : 1;
    const inv = scale >= 1 ? 1 / scale : 1;
    return Array.from({ length: outSize }, (_, i) => {
      const centre = scale * (i + 0.5);
      const lo = Math.max(Math.trunc(centre - support + 0.5), 0);
      const hi = Math.min(Math.trunc(centre + support + 0.5), inSize);
      const taps: [number, number][] = [];
      for (let s = lo; s < hi; s++) taps.push([s, Math.max(0, 1 - Math.abs((s - centre + 0.5) * inv))]);
      const total = taps.reduce((a, [, w]) => a + w, 0);
      return taps.map(([s, w]) => [s, total !== 0 ? w / total : w] as [number, number]);
    });
  };
  const ax = axis(W, size), ay = axis(H, size);
  const tmp = new Float64Array(H * size * 3);
  for (let y = 0; y < H; y++) for (let o = 0; o < size; o++) for (let c = 0; c < 3; c++) {
    let a = 0;
    for (const [s, w] of ax[o]!) a += w * (data[(y * W + s) * ch + c]! / 255);
    tmp[(y * size + o) * 3 + c] = a;
  }
  const out = new Float64Array(size * size * 3);
  for (let o = 0; o < size; o++) for (let x = 0; x < size; x++) for (let c = 0; c < 3; c++) {
    let a = 0;
    for (const [s, w] of ay[o]!) a += w * tmp[(s * size + x) * 3 + c]!;
    out[(o * size + x) * 3 + c] = (a - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!;
  }
  return out;
}

/** [1, 3, S, S] (the golden's layout) -> [S, S, 3]. */
function nchwToHwc(x: Float32Array, S: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let c = 0; c < 3; c++) for (let p = 0; p < S * S; p++) out[p * 3 + c] = x[c * S * S + p]!;
  return out;
}

describe('preprocessImage', () => {
  it('aaWeights are normalised and cover the input', () => {
    for (const [inS, outS] of [[960, 128], [540, 128], [1440, 512], [100, 1024], [7, 7], [33, 10]] as const) {
      const t = aaWeights(inS, outS);
      for (let i = 0; i < outS; i++) {
        let s = 0;
        for (let j = 0; j < t.k; j++) s += t.w[i * t.k + j]!;
        expect(Math.abs(s - 1)).toBeLessThan(1e-6);
        expect(t.xsize[i]!).toBeLessThanOrEqual(t.k);
        expect(t.xmin[i]! + t.xsize[i]!).toBeLessThanOrEqual(inS);
      }
    }
  });

  for (const [W, H, ch, size] of [[37, 23, 3, 16], [19, 29, 4, 16], [10, 7, 3, 24], [64, 9, 4, 20]] as const) {
    it(`${W}x${H}x${ch} -> ${size}`, async () => {
      const ctx = await gpu();
      const r = rng(W * 131 + H);
      const data = new Uint8Array(W * H * ch).map(() => Math.floor(r() * 256));
      const out = preprocessImage(ctx, { data, width: W, height: H, channels: ch }, size);
      expect(out.shape).toEqual([1, size, size, 3]);
      expect(maxAbsDiff(await out.read(), preprocessRef(data, W, H, ch, size))).toBeLessThan(2e-5);
    });
  }

  for (const [name, S] of [['tiny', 128], ['ti512', 512]] as const) {
    const file = `${SHARED}/golden/${name}/tensors.safetensors`;
    it.skipIf(!existsSync(file))(`reproduces the golden image.input from the JPEG (${name})`, async () => {
      const ctx = await gpu();
      const st = parseSafetensors(readFileSync(file), file);
      const image = st.metadata.image!;
      const path = [`${SHARED}/data/images/${image}`, `${SHARED}/data/bedroom/${image}`].find((p) => existsSync(p))!;
      const img = await decodeImageFile(path); // sharp: byte-identical to Pillow's decode
      const golden = nchwToHwc(st.getF32('image.input'), S);
      const ours = await preprocessImage(ctx, img, S).read();
      const err = maxAbsDiff(ours, golden);
      expect(err).toBeLessThan(1e-4);
      // the float64 reference from the same pixels agrees with the golden too
      expect(maxAbsDiff(preprocessRef(img.data, img.width, img.height, 3, S), golden)).toBeLessThan(1e-4);
    });
  }
});

describe('preprocessImage without antialiasing', () => {
  it('is PyTorch bilinear (align_corners=False) then normalisation, down- and upscaling', async () => {
    const { resizeBilinearCpu } = await import('../src/kernels/mask_ops.js');
    const ctx = await gpu();
    const r = rng(77);
    for (const [W, H, S] of [[53, 31, 16], [7, 5, 12]] as const) {
      const data = new Uint8Array(W * H * 4).map(() => Math.floor(r() * 256));
      const out = await preprocessImage(ctx, { data, width: W, height: H, channels: 4 }, S, { antialias: false }).read();
      const planes = new Float32Array(3 * H * W);
      for (let k = 0; k < 3; k++) for (let i = 0; i < H * W; i++) planes[k * H * W + i] = data[i * 4 + k]! / 255;
      const res = resizeBilinearCpu(planes, 3, H, W, S, S);
      const ref = new Float32Array(S * S * 3);
      for (let k = 0; k < 3; k++) for (let i = 0; i < S * S; i++) ref[i * 3 + k] = (res[k * S * S + i]! - IMAGENET_MEAN[k]!) / IMAGENET_STD[k]!;
      expect(maxAbsDiff(out, ref)).toBeLessThan(2e-6);
    }
  });
});
