/**
 * Pillow's `Image.resize((w, h))` of an 8-bit RGB image with its default filter (BICUBIC), to the
 * byte: the official video loader (utils/misc.py, load_video_frames) resizes frames this way.
 *
 * Pillow resamples separably, horizontal pass first (into 8-bit), then vertical. Per axis, with
 * scale = in / out and filterscale = max(scale, 1):
 *   support = 2 * filterscale (the bicubic kernel's half-width, stretched when shrinking)
 *   centre  = (i + 0.5) * scale
 *   xmin = max(trunc(centre - support + 0.5), 0), xmax = min(trunc(centre + support + 0.5), in)
 *   w_j  = cubic((xmin + j - centre + 0.5) / filterscale), normalised to sum 1 (in doubles),
 *   cubic: Keys' kernel with a = -0.5
 * and the weights become fixed point with 22 fraction bits (rounded half away from zero). An
 * output byte is clamp((2^21 + sum_j byte_j * w_j) >> 22, 0, 255).
 */
import type { ImageSource } from '../kernels/preprocess.js';

const PRECISION_BITS = 22;

function cubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** One axis: per output index its first input index, tap count and fixed-point weights [out, k]. */
export interface PilCoeffs {
  k: number;
  xmin: Int32Array;
  xsize: Int32Array;
  w: Int32Array;
}

export function pilBicubicCoeffs(inSize: number, outSize: number): PilCoeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const k = Math.ceil(support) * 2 + 1;
  const xmin = new Int32Array(outSize), xsize = new Int32Array(outSize), w = new Int32Array(outSize * k);
  const ws = new Float64Array(k);
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(Math.trunc(centre - support + 0.5), 0);
    const n = Math.min(Math.trunc(centre + support + 0.5), inSize) - lo;
    let total = 0;
    for (let j = 0; j < n; j++) {
      ws[j] = cubic((j + lo - centre + 0.5) / filterscale);
      total += ws[j]!;
    }
    for (let j = 0; j < n; j++) {
      const v = total !== 0 ? ws[j]! / total : ws[j]!;
      w[i * k + j] = Math.trunc(v < 0 ? v * (1 << PRECISION_BITS) - 0.5 : v * (1 << PRECISION_BITS) + 0.5);
    }
    xmin[i] = lo;
    xsize[i] = n;
  }
  return { k, xmin, xsize, w };
}

const clip8 = (v: number): number => {
  const s = Math.floor(v / (1 << PRECISION_BITS));
  return s < 0 ? 0 : s > 255 ? 255 : s;
};

/** Pillow's bicubic resize of RGB(A) bytes to outW x outH -> RGB bytes [outH, outW, 3] (alpha dropped). */
export function pilResizeRGB(src: ImageSource, outW: number, outH: number): Uint8Array {
  const { data, width: W, height: H, channels: ch } = src;
  if (data.length !== W * H * ch) throw new Error(`pilResizeRGB: ${data.length} bytes for ${W}x${H}x${ch}`);
  const needH = outW !== W, needV = outH !== H;
  const cx = pilBicubicCoeffs(W, outW), cy = pilBicubicCoeffs(H, outH);
  const half = 1 << (PRECISION_BITS - 1);
  // horizontal pass over the rows the vertical pass reads: [rows, outW, 3] bytes
  let rows = H, first = 0, tmp: Uint8Array;
  if (needH) {
    if (needV) {
      first = cy.xmin[0]!;
      rows = cy.xmin[outH - 1]! + cy.xsize[outH - 1]! - first;
    }
    tmp = new Uint8Array(rows * outW * 3);
    for (let y = 0; y < rows; y++) {
      const rowOff = (y + first) * W * ch;
      for (let x = 0; x < outW; x++) {
        const lo = cx.xmin[x]!, n = cx.xsize[x]!, wb = x * cx.k;
        let s0 = half, s1 = half, s2 = half;
        for (let j = 0; j < n; j++) {
          const p = rowOff + (lo + j) * ch, wj = cx.w[wb + j]!;
          s0 += data[p]! * wj;
          s1 += data[p + 1]! * wj;
          s2 += data[p + 2]! * wj;
        }
        const o = (y * outW + x) * 3;
        tmp[o] = clip8(s0);
        tmp[o + 1] = clip8(s1);
        tmp[o + 2] = clip8(s2);
      }
    }
  } else {
    tmp = new Uint8Array(H * W * 3);
    for (let i = 0; i < H * W; i++) for (let c = 0; c < 3; c++) tmp[i * 3 + c] = data[i * ch + c]!;
  }
  if (!needV) return tmp;
  const out = new Uint8Array(outH * outW * 3);
  for (let y = 0; y < outH; y++) {
    const lo = cy.xmin[y]! - first, n = cy.xsize[y]!, wb = y * cy.k;
    for (let x = 0; x < outW; x++) {
      let s0 = half, s1 = half, s2 = half;
      for (let j = 0; j < n; j++) {
        const p = ((lo + j) * outW + x) * 3, wj = cy.w[wb + j]!;
        s0 += tmp[p]! * wj;
        s1 += tmp[p + 1]! * wj;
        s2 += tmp[p + 2]! * wj;
      }
      const o = (y * outW + x) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return out;
}
