import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { positionEmbeddingSine, positionEmbeddingSineData } from '../src/kernels/posenc.js';
import { parseSafetensors } from '../src/io/safetensors.js';
import { gpu, maxAbsDiff } from './helpers.js';

const GOLDEN = fileURLToPath(new URL('../../shared/golden', import.meta.url));

/** PositionEmbeddingSine._pe in float64, channels-last [H, W, npf], written from the formula. */
function posencRef(H: number, W: number, npf: number, temperature = 10000, scale = 2 * Math.PI): Float64Array {
  const F = npf / 2;
  const out = new Float64Array(H * W * npf);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let k = 0; k < npf; k++) {
    const isY = k < F, i = isY ? k : k - F;
    const e = isY ? ((y + 1) / (H + 1e-6)) * scale : ((x + 1) / (W + 1e-6)) * scale;
    const v = e / Math.pow(temperature, (2 * Math.floor(i / 2)) / F);
    out[(y * W + x) * npf + k] = i % 2 === 0 ? Math.sin(v) : Math.cos(v);
  }
  return out;
}

describe('positionEmbeddingSine', () => {
  for (const [H, W, npf] of [[8, 8, 64], [32, 32, 256], [5, 7, 16]] as const) {
    it(`${H}x${W}, ${npf} features`, async () => {
      const ctx = await gpu();
      const t = positionEmbeddingSine(ctx, H, W, npf);
      expect(t.shape).toEqual([H, W, npf]);
      // f32 rounding of the argument (|arg| <= 2*pi) moves sin/cos by a few 1e-7
      expect(maxAbsDiff(await t.read(), posencRef(H, W, npf))).toBeLessThan(2e-6);
    });
  }
  it('rejects an odd feature count', () => {
    expect(() => positionEmbeddingSineData(4, 4, 7)).toThrow(/even/);
  });
  for (const [name, g, npf] of [['tiny', 8, 64], ['ti512', 32, 256]] as const) {
    const file = `${GOLDEN}/${name}/tensors.safetensors`;
    it.skipIf(!existsSync(file))(`matches the golden image.vision_pos_enc (${name})`, () => {
      const ref = parseSafetensors(readFileSync(file), file).getF32('image.vision_pos_enc'); // [1, npf, g, g]
      const ours = positionEmbeddingSineData(g, g, npf); // [g, g, npf]
      const nchw = new Float32Array(ours.length);
      for (let p = 0; p < g * g; p++) for (let c = 0; c < npf; c++) nchw[c * g * g + p] = ours[p * npf + c]!;
      expect(maxAbsDiff(nchw, ref)).toBeLessThan(1e-6);
    });
  }
});
