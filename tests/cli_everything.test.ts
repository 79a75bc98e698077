/**
 * `etam everything` on the tiny golden case with the settings of its `amg.grid` run: the PNGs, the
 * COCO RLEs of masks.json and its records equal the reference's (the same masks in the same
 * order), the overlay is written; parameter mistakes are usage errors.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './helpers.js';
import { readMaskPng, rleDecode } from '../src/cli/outputs.js';
import { unpackBits } from '../src/golden/compare.js';
import { readSafetensorsFile, type SafetensorsFile } from '../src/io/safetensors.js';

const ROOT = resolve(__dirname, '..');
const TINY = resolve(ROOT, '../shared/golden/tiny');
const IMAGE = resolve(ROOT, '../shared/data/bedroom/00000.jpg');
const W = 960, H = 540;

let tmp: string;
let ref: SafetensorsFile;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'etam-everything-'));
  ref = await readSafetensorsFile(join(TINY, 'tensors.safetensors'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('etam everything', () => {
  it('writes the reference\'s masks, in its order, as PNGs and COCO RLE with the official record fields', async () => {
    const kw = JSON.parse(ref.metadata.amg!).grid as Record<string, number>;
    const dir = join(tmp, 'grid');
    const r = await cli('everything', IMAGE, '--weights', TINY, '--out', dir, '--quiet', '--no-antialias',
      '--points-per-side', String(kw.points_per_side), '--points-per-batch', String(kw.points_per_batch),
      '--pred-iou-thresh', String(kw.pred_iou_thresh), '--stability-score-thresh', String(kw.stability_score_thresh),
      '--box-nms-thresh', String(kw.box_nms_thresh));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const n = ref.getF32('amg.grid.count')[0]!;
    expect(r.stdout).toContain(`${n} masks`);
    const refMasks = unpackBits(ref.getRaw('amg.grid.masks_bits') as Uint8Array, [n, H, W]);
    const coco = JSON.parse(readFileSync(join(dir, 'masks.json'), 'utf8'));
    expect(coco.annotations.length).toBe(n);
    expect(readdirSync(dir).filter((f) => f.endsWith('.png')).sort()).toEqual(
      [...Array.from({ length: n }, (_, k) => `mask_${String(k + 1).padStart(4, '0')}.png`), 'overlay.png'].sort());
    const bbox = ref.getF32('amg.grid.bbox'), iou = ref.getF32('amg.grid.predicted_iou'), pts = ref.getF32('amg.grid.point_coords');
    for (let k = 0; k < n; k++) {
      const a = coco.annotations[k];
      const want = refMasks.subarray(k * H * W, (k + 1) * H * W);
      const png = await readMaskPng(join(dir, a.file));
      expect([png.width, png.height]).toEqual([W, H]);
      let diff = 0, diffRle = 0;
      const fromRle = rleDecode(a.segmentation);
      for (let i = 0; i < H * W; i++) { if (png.mask[i] !== want[i]) diff++; if (fromRle[i] !== want[i]) diffRle++; }
      expect(diff / (H * W)).toBeLessThan(1e-3); // the binary-mask rule (the golden test checks the logits too)
      expect(diffRle).toBe(diff);
      expect(a.bbox).toEqual(Array.from(bbox.subarray(4 * k, 4 * k + 4)));
      expect(Math.abs(a.predicted_iou - iou[k]!)).toBeLessThan(1e-3);
      expect(a.point_coords).toEqual([Array.from(pts.subarray(2 * k, 2 * k + 2))]);
      expect(a.crop_box).toEqual([0, 0, W, H]);
    }
  });

  it('parameter mistakes are usage errors that name the parameter', async () => {
    for (const [args, re] of [
      [['--points-per-side', '0'], /pointsPerSide 0/],
      [['--crop-n-layers', '2', '--crop-n-points-downscale-factor', '8', '--points-per-side', '16'], /crop layer 2 would have 0 points/],
      [['--box-nms-thresh', 'x'], /box-nms-thresh/],
    ] as [string[], RegExp][]) {
      const r = await cli('everything', IMAGE, '--weights', TINY, '--out', join(tmp, 'bad'), '--quiet', ...args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(re);
    }
  });
});
