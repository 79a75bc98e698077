/**
 * Connected components on the GPU against a CPU flood fill with the reference's labelling, and the
 * mask postprocessing against a CPU transcription of the official semantics.
 */
import { describe, expect, it } from 'vitest';
import { connectedComponents, type Connectivity } from '../src/kernels/connected_components.js';
import { fillHoles, fillHolesInMaskScores, postprocessLowRes, removeSprinkles } from '../src/kernels/mask_postprocess.js';
import { gpu, rng } from './helpers.js';

// ------------------------------------------------------------------------------------------------
// CPU references

/**
 * Flood fill per plane. Labels as the CUDA extension gives them: 1 + the smallest top-left pixel
 * index of the 2x2 blocks the component touches (8-connectivity), or 1 + its smallest pixel
 * index (4-connectivity); 0 on background. Areas: the component's pixel count, 0 on background.
 */
function connectedComponentsCpu(x: Float32Array, H: number, W: number,
  o: { threshold?: number; below?: boolean; connectivity?: Connectivity } = {}): { labels: Float32Array; areas: Float32Array } {
  const thr = o.threshold ?? 0, conn = o.connectivity ?? 8;
  const fg = (v: number) => (o.below ? v <= thr : v > thr);
  const planes = x.length / (H * W);
  const labels = new Float32Array(x.length), areas = new Float32Array(x.length);
  const seen = new Uint8Array(x.length);
  const nb = conn === 8 ? [[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]] : [[-1, 0], [0, -1], [0, 1], [1, 0]];
  const stack: number[] = [];
  for (let p = 0; p < planes; p++) {
    const base = p * H * W;
    for (let s = 0; s < H * W; s++) {
      if (seen[base + s] || !fg(x[base + s]!)) continue;
      const comp: number[] = [];
      seen[base + s] = 1;
      stack.push(s);
      while (stack.length) {
        const q = stack.pop()!;
        comp.push(q);
        const r = Math.floor(q / W), c = q % W;
        for (const [dr, dc] of nb) {
          const rr = r + dr!, cc = c + dc!;
          if (rr < 0 || cc < 0 || rr >= H || cc >= W) continue;
          const k = rr * W + cc;
          if (!seen[base + k] && fg(x[base + k]!)) { seen[base + k] = 1; stack.push(k); }
        }
      }
      let rep = Infinity;
      for (const q of comp) {
        const r = Math.floor(q / W), c = q % W;
        rep = Math.min(rep, conn === 8 ? (r & ~1) * W + (c & ~1) : q);
      }
      for (const q of comp) { labels[base + q] = rep + 1; areas[base + q] = comp.length; }
    }
  }
  return { labels, areas };
}

/** EfficientTAMTransforms.postprocess_masks before the resize, step by step as the official code. */
function postprocessCpu(x: Float32Array, H: number, W: number, maxHole: number, maxSprinkle: number, thr = 0): Float32Array {
  const input = x; // the flattened copy both steps label
  let masks = x.slice();
  if (maxHole > 0) {
    const { labels, areas } = connectedComponentsCpu(input, H, W, { threshold: thr, below: true });
    masks = masks.map((v, i) => (labels[i]! > 0 && areas[i]! <= maxHole ? thr + 10 : v));
  }
  if (maxSprinkle > 0) {
    const { labels, areas } = connectedComponentsCpu(input, H, W, { threshold: thr });
    masks = masks.map((v, i) => (labels[i]! > 0 && areas[i]! <= maxSprinkle ? thr - 10 : v));
  }
  return masks;
}

/** fill_holes_in_mask_scores. */
function fillHolesInMaskScoresCpu(x: Float32Array, H: number, W: number, maxArea: number): Float32Array {
  const { labels, areas } = connectedComponentsCpu(x, H, W, { threshold: 0, below: true });
  return x.map((v, i) => (labels[i]! > 0 && areas[i]! <= maxArea ? 0.1 : v));
}

// ------------------------------------------------------------------------------------------------
// test images (as logits: +1 foreground, -1 background unless said otherwise)

/** Smooth random blobs: box-filtered noise, with some values exactly 0 (background: not > 0). */
function blobs(H: number, W: number, seed: number, radius = 2): Float32Array {
  const r = rng(seed);
  const noise = Float32Array.from({ length: H * W }, () => r() - 0.5);
  const out = new Float32Array(H * W);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    let s = 0;
    for (let dy = -radius; dy <= radius; dy++) for (let dx = -radius; dx <= radius; dx++) {
      const yy = Math.min(H - 1, Math.max(0, y + dy)), xx = Math.min(W - 1, Math.max(0, x + dx));
      s += noise[yy * W + xx]!;
    }
    out[y * W + x] = Math.round(s * 8) / 8; // coarse steps: exact zeros and ties occur
  }
  return out;
}

/** Independent random pixels, foreground with probability p. */
function speckle(H: number, W: number, seed: number, p = 0.5): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: H * W }, () => (r() < p ? 1 : -1));
}

/** A square spiral one pixel wide with a one-pixel corridor: one long component (and the corridor another). */
function spiral(H: number, W: number): Float32Array {
  const m = new Float32Array(H * W).fill(-1);
  const inside = (r: number, c: number) => r >= 0 && c >= 0 && r < H && c < W;
  const set = (r: number, c: number) => inside(r, c) && m[r * W + c]! > 0;
  const dirs = [[0, 1], [1, 0], [0, -1], [-1, 0]] as const;
  let r = 0, c = 0, d = 0, turns = 0;
  m[0] = 1;
  while (turns < 2) {
    const [dr, dc] = dirs[d]!;
    const r1 = r + dr, c1 = c + dc, r2 = r + 2 * dr, c2 = c + 2 * dc;
    if (inside(r1, c1) && !set(r1, c1) && !set(r2, c2)) {
      r = r1; c = c1; m[r * W + c] = 1; turns = 0;
    } else {
      d = (d + 1) % 4; turns++;
    }
  }
  return m;
}

/** Full rows every other row, joined alternately at the right and left ends: one snake. */
function snake(H: number, W: number): Float32Array {
  const m = new Float32Array(H * W).fill(-1);
  for (let y = 0; y < H; y++) {
    if (y % 2 === 0) for (let x = 0; x < W; x++) m[y * W + x] = 1;
    else m[y * W + ((y >> 1) % 2 === 0 ? W - 1 : 0)] = 1;
  }
  return m;
}

/** A checkerboard: 8-connected it is one component, 4-connected every pixel is its own. */
function checker(H: number, W: number): Float32Array {
  return Float32Array.from({ length: H * W }, (_, i) => ((Math.floor(i / W) + (i % W)) % 2 ? 1 : -1));
}

async function expectCC(H: number, W: number, x: Float32Array, o: { threshold?: number; below?: boolean; connectivity?: Connectivity } = {}) {
  const ctx = await gpu();
  const planes = x.length / (H * W);
  const t = ctx.upload(x, [planes, H, W]);
  const cc = connectedComponents(ctx, t, o);
  const [labels, areas] = [await cc.labels.read(), await cc.areas.read()];
  const ref = connectedComponentsCpu(x, H, W, o);
  let badL = 0, badA = 0;
  for (let i = 0; i < x.length; i++) {
    if (labels[i] !== ref.labels[i]) badL++;
    if (areas[i] !== ref.areas[i]) badA++;
  }
  expect({ badL, badA }).toEqual({ badL: 0, badA: 0 });
  t.release(); cc.labels.release(); cc.areas.release();
  return ref;
}

// ------------------------------------------------------------------------------------------------

describe('connectedComponents', () => {
  it('random blobs, foreground and background, odd sizes, a batch', async () => {
    const H = 37, W = 53;
    const x = new Float32Array(3 * H * W);
    for (let p = 0; p < 3; p++) x.set(blobs(H, W, 10 + p, p), p * H * W);
    const ref = await expectCC(H, W, x);
    expect(new Set(ref.labels).size).toBeGreaterThan(10); // many components
    await expectCC(H, W, x, { below: true });
    await expectCC(H, W, x, { threshold: 0.25 });
    await expectCC(H, W, x, { connectivity: 4, below: true });
  });

  it('random speckle (many tiny components), even and odd sizes', async () => {
    await expectCC(32, 32, speckle(32, 32, 3));
    await expectCC(33, 17, speckle(33, 17, 4, 0.3), { connectivity: 4 });
    await expectCC(33, 17, speckle(33, 17, 5, 0.6));
  });

  it('a long spiral and a snake are one component each (and so is the corridor)', async () => {
    for (const [H, W] of [[64, 64], [61, 47]] as const) {
      const s = spiral(H, W);
      const ref = await expectCC(H, W, s);
      const fgLabels = new Set(ref.labels.filter((v) => v > 0));
      expect(fgLabels.size).toBe(1);
      await expectCC(H, W, s, { below: true });
      await expectCC(H, W, s, { connectivity: 4 });
      const sn = snake(H, W);
      const r2 = await expectCC(H, W, sn);
      expect(new Set(r2.labels.filter((v) => v > 0)).size).toBe(1);
      await expectCC(H, W, sn, { below: true, connectivity: 4 });
    }
  });

  it('a 256x256 spiral (worst case for label propagation)', async () => {
    await expectCC(256, 256, spiral(256, 256));
  });

  it('8- vs 4-connectivity at corners', async () => {
    const H = 9, W = 11;
    const c = checker(H, W);
    const r8 = await expectCC(H, W, c);
    expect(new Set(r8.labels.filter((v) => v > 0)).size).toBe(1);
    expect(r8.areas.filter((v) => v > 0).every((v) => v === 49)).toBe(true);
    const r4 = await expectCC(H, W, c, { connectivity: 4 });
    expect(r4.areas.filter((v) => v > 0).every((v) => v === 1)).toBe(true);
    // two pixels touching only at a corner, across a 2x2 block boundary, in every direction
    for (const [a, b] of [[[1, 1], [2, 2]], [[1, 2], [2, 1]], [[2, 2], [3, 3]], [[2, 3], [3, 2]]] as const) {
      const m = new Float32Array(5 * 5).fill(-1);
      m[a[0] * 5 + a[1]] = 1; m[b[0] * 5 + b[1]] = 1;
      const r = await expectCC(5, 5, m);
      expect(r.areas[a[0] * 5 + a[1]]).toBe(2);
      const q = await expectCC(5, 5, m, { connectivity: 4 });
      expect(q.areas[a[0] * 5 + a[1]]).toBe(1);
    }
  });

  it('degenerate sizes: one row, one column, one pixel, all foreground, all background', async () => {
    await expectCC(1, 40, speckle(1, 40, 6));
    await expectCC(40, 1, speckle(40, 1, 7));
    await expectCC(1, 1, Float32Array.of(1));
    await expectCC(7, 9, new Float32Array(63).fill(1));
    await expectCC(7, 9, new Float32Array(63).fill(-1));
  });
});

describe('mask postprocessing', () => {
  const H = 40, W = 44, planes = 3;
  const x = new Float32Array(planes * H * W);
  for (let p = 0; p < planes; p++) x.set(blobs(H, W, 20 + p, 1 + p), p * H * W);
  x.set(spiral(H, W).map((v) => v * 3), 0); // a plane with one big foreground and one big hole

  it('holes, sprinkles and both, with thresholds', async () => {
    const ctx = await gpu();
    const t = ctx.upload(x, [1, planes, H, W]);
    for (const [hole, spr, thr] of [[8, 0, 0], [0, 6, 0], [8, 6, 0], [30, 30, 0.25], [1e9, 0, 0], [0, 0, 0]] as const) {
      const out = await postprocessLowRes(ctx, t, { maxHoleArea: hole, maxSprinkleArea: spr, threshold: thr }).read();
      const ref = postprocessCpu(x, H, W, hole, spr, thr);
      expect(Array.from(out)).toEqual(Array.from(ref));
    }
    expect(Array.from(await fillHoles(ctx, t, 5).read())).toEqual(Array.from(postprocessCpu(x, H, W, 5, 0)));
    expect(Array.from(await removeSprinkles(ctx, t, 5, -0.125).read())).toEqual(Array.from(postprocessCpu(x, H, W, 0, 5, -0.125)));
  });

  it('sprinkles are found on the input, not on the hole-filled logits (as the official code)', async () => {
    const ctx = await gpu();
    // a 3x3 foreground ring (area 8) around a one-pixel hole: with max hole 1 and max sprinkle 8
    // the hole is filled (+10) and the ring still removed (-10), since the ring alone has area 8
    const m = new Float32Array(7 * 8).fill(-1);
    for (let y = 2; y <= 4; y++) for (let xx = 2; xx <= 4; xx++) m[y * 8 + xx] = 1;
    m[3 * 8 + 3] = -1;
    const out = await postprocessLowRes(ctx, ctx.upload(m, [7, 8]), { maxHoleArea: 1, maxSprinkleArea: 8 }).read();
    expect(out[3 * 8 + 3]).toBe(10);
    expect(out[2 * 8 + 2]).toBe(-10);
    expect(Array.from(out)).toEqual(Array.from(postprocessCpu(m, 7, 8, 1, 8)));
  });

  it('fillHolesInMaskScores (video predictor)', async () => {
    const ctx = await gpu();
    const t = ctx.upload(x, [planes, 1, H, W]);
    for (const area of [1, 8, 100]) {
      const out = await fillHolesInMaskScores(ctx, t, area).read();
      expect(Array.from(out)).toEqual(Array.from(fillHolesInMaskScoresCpu(x, H, W, area)));
    }
    expect(() => fillHolesInMaskScores(ctx, t, 0)).toThrow(/positive/);
  });
});
