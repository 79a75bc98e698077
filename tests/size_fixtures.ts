/**
 * Large generated pictures, and checking masks at an image's size against their low-res logits
 * at sampled pixels on the CPU (shared by tests/sizes.test.ts and the browser page
 * tests/browser/sizes.ts).
 */
import { rng } from './helpers.js';

/**
 * An RGB(A) picture: grey, a bright rectangle [x0, x1) x [y0, y1), a dark band at the top; made
 * with fills, so 12 megapixels take milliseconds.
 */
export function picture(W: number, H: number, channels: 3 | 4, rect: [number, number, number, number], shade = 0): { data: Uint8Array; width: number; height: number; channels: 3 | 4 } {
  const data = new Uint8Array(W * H * channels).fill(90 + shade);
  const row = new Uint8Array(W * channels).fill(90 + shade);
  row.fill(230, Math.floor(rect[0]) * channels, Math.floor(rect[1]) * channels);
  for (let y = Math.floor(rect[2]); y < rect[3]; y++) data.set(row, y * W * channels);
  data.fill(30, 0, Math.floor(H / 10) * W * channels);
  return { data, width: W, height: H, channels };
}

/** The upsampled logit of plane p at (oy, ox), as resizeBilinear computes it (f32 steps), and the largest |logit| it reads. */
export function upsampledAt(low: Float32Array, p: number, m: number, H: number, W: number, oy: number, ox: number): { v: number; max: number } {
  const f = Math.fround;
  const sh = f(m / H), sw = f(m / W);
  const ry = Math.max(f(f(sh * f(oy + 0.5)) - 0.5), 0), rx = Math.max(f(f(sw * f(ox + 0.5)) - 0.5), 0);
  const y0 = Math.floor(ry), x0 = Math.floor(rx), y1 = Math.min(y0 + 1, m - 1), x1 = Math.min(x0 + 1, m - 1);
  const ly1 = f(ry - y0), lx1 = f(rx - x0), ly0 = f(1 - ly1), lx0 = f(1 - lx1);
  const at = (y: number, x: number) => low[p * m * m + y * m + x]!;
  const v = ly0 * (lx0 * at(y0, x0) + lx1 * at(y0, x1)) + ly1 * (lx0 * at(y1, x0) + lx1 * at(y1, x1));
  return { v, max: Math.max(...[at(y0, x0), at(y0, x1), at(y1, x0), at(y1, x1)].map(Math.abs)) };
}

export interface SampleCheck {
  /** pixels compared */
  checked: number;
  /** of them, where the mask byte is not (upsampled logit > 0) */
  mismatches: string[];
  /** of them, covered */
  covered: number;
}

/**
 * Compares masks [P, H, W] (0/1 bytes) with the low-res logits [P, m, m] at `n` pixels of each
 * plane (the four corners, then random ones), skipping pixels within 1e-3 of the threshold and,
 * for logits clamped to [-32, 32] (the image predictor's low-res output), pixels next to a clamped
 * value.
 */
export function checkMaskSamples(masks: Uint8Array, low: Float32Array, P: number, m: number, H: number, W: number, n: number, clamped: boolean): SampleCheck {
  const r = rng(P * H + W);
  const out: SampleCheck = { checked: 0, mismatches: [], covered: 0 };
  if (masks.length !== P * H * W) {
    out.mismatches.push(`${masks.length} mask bytes for ${P} x ${W}x${H}`);
    return out;
  }
  for (let p = 0; p < P; p++) {
    for (let k = 0; k < n; k++) {
      const oy = k < 4 ? (k & 1) * (H - 1) : Math.floor(r() * H), ox = k < 4 ? (k >> 1) * (W - 1) : Math.floor(r() * W);
      const { v, max } = upsampledAt(low, p, m, H, W, oy, ox);
      if (Math.abs(v) < 1e-3 || (clamped && max >= 32)) continue;
      const want = v > 0 ? 1 : 0;
      if (masks[(p * H + oy) * W + ox] !== want) out.mismatches.push(`plane ${p} pixel (${ox}, ${oy}): logit ${v}, mask ${masks[(p * H + oy) * W + ox]}`);
      out.covered += want;
      out.checked++;
    }
  }
  return out;
}
