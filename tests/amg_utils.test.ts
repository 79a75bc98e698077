/**
 * The generator's CPU helpers (src/model/amg.ts, src/kernels/ratio.ts) against the official
 * utils/amg.py, PyTorch's sort and torchvision's batched_nms, whose outputs are in
 * tests/fixtures/amg_reference.json (made by tools/make_amg_fixtures.py).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rleCounts, rleToString } from '../src/io/rle.js';
import { ratioPasses, ratioTest } from '../src/kernels/ratio.js';
import {
  areaFromRle, batchedNms, buildAllLayerPointGrids, buildPointGrid, cocoEncodeRle, generateCropBoxes, isBoxNearCropEdge,
  nmsSuppresses, rleToMask, runLengths, torchSortDescending, unpackBitStream, type BoxXYXY,
} from '../src/model/amg.js';
import { rng } from './helpers.js';

const REF = JSON.parse(readFileSync(resolve(__dirname, 'fixtures/amg_reference.json'), 'utf8'));

describe('utils/amg.py', () => {
  it('point grids are numpy linspace grids, x fastest; layers scale down', () => {
    for (const [n, pts] of Object.entries(REF.grids as Record<string, number[][]>)) {
      expect(Array.from(buildPointGrid(Number(n)))).toEqual(pts.flat()); // bit-exact float64
    }
    expect(buildAllLayerPointGrids(32, 3, 2).map((g) => g.length / 2)).toEqual(REF.layer_grids);
  });

  it('crop boxes (x-major), with their layers', () => {
    for (const [key, want] of Object.entries(REF.crop_boxes as Record<string, { boxes: number[][]; layers: number[] }>)) {
      const [h, w, n, r] = key.split('x').map(Number) as [number, number, number, number];
      const got = generateCropBoxes(h, w, n, r);
      expect(got.cropBoxes).toEqual(want.boxes);
      expect(got.layerIdxs).toEqual(want.layers);
    }
  });

  it('is_box_near_crop_edge', () => {
    const e = REF.near_edge;
    expect(e.boxes.map((b: number[]) => isBoxNearCropEdge(b, e.crop as BoxXYXY, e.orig as BoxXYXY))).toEqual(e.result);
  });

  it('uncompressed RLE (column-major, zeros first), area, back to a mask, COCO string', () => {
    const { masks, rles } = REF.rle as { masks: number[][][]; rles: { size: [number, number]; counts: number[] }[] };
    masks.forEach((m, i) => {
      const [h, w] = [m.length, m[0]!.length];
      const flat = Uint8Array.from(m.flat());
      expect(rleCounts(flat, h, w)).toEqual(rles[i]!.counts);
      expect(Array.from(rleToMask(rles[i]!))).toEqual(Array.from(flat));
      expect(areaFromRle(rles[i]!)).toBe(flat.reduce((a, v) => a + v, 0));
      expect(cocoEncodeRle(rles[i]!)).toEqual({ size: [h, w], counts: rleToString(rles[i]!.counts) });
    });
  });

  it('run lengths and masks from bit streams (whole words skipped) equal the per-pixel ones', () => {
    const r = rng(3);
    for (const [h, w] of [[5, 7], [64, 33], [40, 96], [1, 1]] as const) {
      for (const density of [0, 1, 0.5, 0.02, 0.98]) {
        // row-major mask -> column-major bit stream, as mask_bits writes it
        const mask = Uint8Array.from({ length: h * w }, () => (r() < density ? 1 : 0));
        // long runs too: a filled rectangle
        if (density === 0.5) for (let y = 2; y < h - 1; y++) for (let x = 1; x < w - 1; x++) mask[y * w + x] = 1;
        const words = new Uint32Array(Math.ceil((h * w) / 32) + 3);
        const rowWords = new Uint32Array(words.length);
        for (let x = 0; x < w; x++) for (let y = 0; y < h; y++) {
          const k = x * h + y;
          if (mask[y * w + x]) words[3 + (k >>> 5)]! |= 1 << (k & 31);
          const q = y * w + x;
          if (mask[q]) rowWords[3 + (q >>> 5)]! |= 1 << (q & 31);
        }
        expect(runLengths(words, 3, h * w)).toEqual(rleCounts(mask, h, w));
        expect(Array.from(unpackBitStream(rowWords, 3, h * w))).toEqual(Array.from(mask));
      }
    }
  });
});

describe('PyTorch / torchvision order', () => {
  it("torch.sort(descending=True) on the CPU: libstdc++'s introsort, ties included", () => {
    for (const c of REF.torch_sort as { values: number[]; order: number[] }[]) {
      expect(torchSortDescending(Array.from(Float32Array.from(c.values)))).toEqual(c.order);
    }
  });

  it('batched_nms: the kept boxes and their order (both of its paths: <= 1000 boxes and more)', () => {
    for (const c of REF.torchvision_batched_nms as { boxes: number[]; scores: number[]; threshold: number; keep: number[] }[]) {
      const boxes = Array.from({ length: c.boxes.length / 4 }, (_, i) => c.boxes.slice(4 * i, 4 * i + 4));
      expect(batchedNms(boxes, Float32Array.from(c.scores), c.threshold)).toEqual(c.keep);
    }
    // IoU exactly 19/20 is float32 0.949999988 < 0.95: kept; above it, suppressed
    expect(nmsSuppresses([0, 0, 10, 20], [0, 0, 10, 19], 0.95)).toBe(false);
    expect(nmsSuppresses([0, 0, 10, 20], [0, 0, 10, 19], 0.9499999)).toBe(true);
  });

  it('exact float32 ratio tests: float32(a / b) > t and >= t, as PyTorch rounds', () => {
    const r = rng(11);
    const f = Math.fround;
    for (const t of [0.95, 0.7, 0.5, 1 / 3, 0, 1, 0.8, 0.9999999, 1e-9, 2, -1, 0.95000001]) {
      for (const op of ['>', '>='] as const) {
        const test = ratioTest(t, op);
        const wrong: string[] = [];
        for (let k = 0; k < 4000; k++) {
          const b = k < 2000 ? 1 + Math.floor(r() * 200) : 1 + Math.floor(r() * 2 ** 31);
          const a = Math.min(b, k % 5 === 0 ? Math.round(b * t) : Math.floor(r() * (b + 1)));
          if (a < 0) continue;
          const q = f(f(a) / f(b)); // a double quotient rounded once to float32 is float32 division's result
          if (ratioPasses(test, f(a), f(b)) !== (op === '>' ? q > t : q >= t)) wrong.push(`${a}/${b} ${op} ${t}`);
        }
        expect(wrong).toEqual([]);
        expect(ratioPasses(test, 0, 0)).toBe(false); // 0/0 is NaN
      }
    }
  });
});
