import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { checkImageSize, ImageSizeError } from '../io/image_size.js';
import { grid1d } from './util.js';

/**
 * The image predictor's input transform, on the GPU:
 *   ToTensor (uint8 / 255) -> torchvision Resize((size, size), antialias=True) -> Normalize(mean, std)
 * producing [1, size, size, 3] channels-last.
 *
 * The resize is PyTorch's antialiased bilinear (_upsample_bilinear2d_aa), which is separable: a
 * horizontal pass, then a vertical one. Per axis, with scale = in / out, output i gathers input
 * samples xmin .. xmin + xsize - 1 around centre = scale * (i + 0.5) with the triangle filter,
 * stretched by the scale when shrinking:
 *   support = scale >= 1 ? scale : 1          (the filter's half-width in input pixels)
 *   xmin = max(trunc(centre - support + 0.5), 0),  xmax = min(trunc(centre + support + 0.5), in)
 *   w_j = tri((xmin + j - centre + 0.5) / max(scale, 1)),  tri(d) = max(0, 1 - |d|)
 * and the weights are divided by their sum. Those tables are computed on the CPU (`aaWeights`).
 *
 * Pixels are uploaded once as their raw bytes packed into u32 words; the first pass reads bytes.
 * An image larger than one storage binding (a 12-megapixel RGBA photo is 48 MB, the intermediate
 * of a 16384-pixel-tall one 200 MB) is done in bands of output rows, each from its own source rows.
 */

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** 8-bit pixels, row-major, interleaved (RGB or RGBA; alpha is ignored). */
export interface ImageSource {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  channels: 3 | 4;
}

/** One axis of the antialiased bilinear resize: for each output index, its input span and weights. */
export interface AAWeights {
  /** taps per output (the table's row length) */
  k: number;
  xmin: Int32Array;
  xsize: Int32Array;
  /** [out, k], zero past xsize */
  w: Float32Array;
}

/** The per-axis weights of PyTorch's _upsample_bilinear2d_aa (align_corners=False). */
export function aaWeights(inSize: number, outSize: number): AAWeights {
  const scale = inSize / outSize;
  return resampleWeights(inSize, outSize, scale >= 1 ? scale : 1, scale >= 1 ? 1 / scale : 1);
}

/**
 * The taps of PyTorch's plain bilinear resize (F.interpolate, mode='bilinear', align_corners=False,
 * no antialiasing), in the same table form: source index (dst + 0.5) * in/out - 0.5, clamped at 0,
 * two taps (one at the last pixel). This is what torchvision's tensor `Resize` does by default
 * before version 0.17.
 */
export function bilinearWeights(inSize: number, outSize: number): AAWeights {
  const scale = Math.fround(inSize / outSize);
  const k = 2;
  const xmin = new Int32Array(outSize), xsize = new Int32Array(outSize), w = new Float32Array(outSize * k);
  for (let i = 0; i < outSize; i++) {
    const src = Math.max(0, Math.fround(Math.fround(scale * (i + 0.5)) - 0.5));
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const l1 = Math.fround(src - i0);
    xmin[i] = i0;
    xsize[i] = i0 < inSize - 1 ? 2 : 1;
    w[i * k] = xsize[i] === 2 ? Math.fround(1 - l1) : 1;
    w[i * k + 1] = xsize[i] === 2 ? l1 : 0;
  }
  return { k, xmin, xsize, w };
}

function resampleWeights(inSize: number, outSize: number, support: number, invscale: number): AAWeights {
  const scale = inSize / outSize;
  // support = (interp_size / 2) * scale with interp_size = 2 when downscaling, else 1
  const k = Math.ceil(support) * 2 + 1;
  const xmin = new Int32Array(outSize), xsize = new Int32Array(outSize), w = new Float32Array(outSize * k);
  const tri = (d: number) => Math.max(0, 1 - Math.abs(d));
  for (let i = 0; i < outSize; i++) {
    const centre = scale * (i + 0.5);
    const lo = Math.max(Math.trunc(centre - support + 0.5), 0);
    const n = Math.min(Math.trunc(centre + support + 0.5), inSize) - lo;
    xmin[i] = lo;
    xsize[i] = n;
    let total = 0;
    const ws: number[] = [];
    for (let j = 0; j < n; j++) {
      const v = tri((j + lo - centre + 0.5) * invscale);
      ws.push(v);
      total += v;
    }
    for (let j = 0; j < n; j++) w[i * k + j] = total !== 0 ? ws[j]! / total : ws[j]!;
  }
  return { k, xmin, xsize, w };
}

/**
 * The tables of both axes packed in one f32 buffer (integers as their bit patterns):
 * [xmin_x (ow) | xsize_x (ow) | w_x (ow*kx) | xmin_y (oh) | xsize_y (oh) | w_y (oh*ky)].
 */
function packTables(wx: AAWeights, wy: AAWeights): { data: Float32Array; offX: number; offY: number } {
  const ow = wx.xmin.length, oh = wy.xmin.length;
  const nx = ow * (2 + wx.k), ny = oh * (2 + wy.k);
  const buf = new ArrayBuffer((nx + ny) * 4);
  const f = new Float32Array(buf), u = new Int32Array(buf);
  const put = (t: AAWeights, off: number, n: number) => {
    u.set(t.xmin, off);
    u.set(t.xsize, off + n);
    f.set(t.w, off + 2 * n);
  };
  put(wx, 0, ow);
  put(wy, nx, oh);
  return { data: f, offX: 0, offY: nx };
}

const WG = 256;

/**
 * Sizes of one band of the two passes, as a uniform: all sizes are uniforms, so one pipeline per
 * pass serves every image size (a photo of a new size compiles nothing).
 */
const PARAMS = /* wgsl */ `
struct Params {
  rows: u32,        // source rows in the band (pass 1)
  row_bytes: u32,   // bytes of a source row in src
  channels: u32,
  ow: u32,          // output width
  kx: u32,          // taps per output of each table
  ky: u32,
  off_x: u32,       // where each table starts in tab (packTables)
  off_y: u32,
  oh: u32,          // output height
  y0: u32,          // the band's first source row
  oy0: u32,         // the band's first output row
  orows: u32,       // output rows in the band (pass 2)
}
@group(0) @binding(0) var<uniform> P: Params;
`;

/** Pass 1: bytes [rows, W, ch] -> tmp [rows, ow, 3] = sum_j w_x[j] * byte / 255. */
const horizontalWGSL = /* wgsl */ `
// ---- kernel: preprocess_resize_h ----
${PARAMS}
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> tab: array<f32>;
@group(0) @binding(3) var<storage, read_write> tmp: array<f32>;

fn byteAt(i: u32) -> f32 { return f32((src[i >> 2u] >> ((i & 3u) * 8u)) & 255u); }

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid; // one output pixel of the band, its 3 channels
  if (i >= P.rows * P.ow) { return; }
  let ox = i % P.ow;
  let y = i / P.ow;
  let lo = bitcast<u32>(tab[P.off_x + ox]);
  let n = bitcast<u32>(tab[P.off_x + P.ow + ox]);
  let wb = P.off_x + 2u * P.ow + ox * P.kx;
  let row = y * P.row_bytes;
  var acc = vec3f(0.0);
  for (var j = 0u; j < n; j++) {
    let p = row + (lo + j) * P.channels;
    acc += (vec3f(byteAt(p), byteAt(p + 1u), byteAt(p + 2u)) / 255.0) * tab[wb + j];
  }
  tmp[i * 3u] = acc.x; tmp[i * 3u + 1u] = acc.y; tmp[i * 3u + 2u] = acc.z;
}
`;

/** Pass 2: tmp [rows, ow, 3] -> out [1, oh, ow, 3] rows oy0.. = (sum_j w_y[j] * tmp - mean) / std. */
const verticalWGSL = /* wgsl */ `
// ---- kernel: preprocess_resize_v_normalize ----
${PARAMS}
@group(0) @binding(1) var<storage, read> tmp: array<f32>;
@group(0) @binding(2) var<storage, read> tab: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const MEAN = vec3f(${IMAGENET_MEAN.join(', ')});
const STD = vec3f(${IMAGENET_STD.join(', ')});

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let k = (wid.y * nwg.x + wid.x) * ${WG}u + lid; // one output pixel of the band, its 3 channels
  if (k >= P.orows * P.ow) { return; }
  let ox = k % P.ow;
  let oy = P.oy0 + k / P.ow;
  let lo = bitcast<u32>(tab[P.off_y + oy]);
  let n = bitcast<u32>(tab[P.off_y + P.oh + oy]);
  let wb = P.off_y + 2u * P.oh + oy * P.ky;
  var acc = vec3f(0.0);
  for (var j = 0u; j < n; j++) {
    let p = ((lo + j - P.y0) * P.ow + ox) * 3u;
    acc += vec3f(tmp[p], tmp[p + 1u], tmp[p + 2u]) * tab[wb + j];
  }
  let v = (acc - MEAN) / STD;
  let i = oy * P.ow + ox;
  out[i * 3u] = v.x; out[i * 3u + 1u] = v.y; out[i * 3u + 2u] = v.z;
}
`;

interface Tables { t: Tensor; offX: number; offY: number; kx: number; ky: number; ymin: Int32Array; ysize: Int32Array }
const tableCache = new WeakMap<GpuContext, Map<string, Tables>>();
/** Source sizes whose tables a context keeps (the most recent; a video has one size). */
const TABLES_KEPT = 4;

/** The weight tables for one source size, uploaded once per context (for the last few sizes). */
function tables(ctx: GpuContext, H: number, W: number, oh: number, ow: number, antialias: boolean): Tables {
  let m = tableCache.get(ctx);
  if (!m) tableCache.set(ctx, (m = new Map()));
  const key = `${H}x${W}->${oh}x${ow}${antialias ? ' aa' : ''}`;
  let e = m.get(key);
  if (e) {
    m.delete(key);
    m.set(key, e); // most recent last
    return e;
  }
  const weights = antialias ? aaWeights : bilinearWeights;
  const wx = weights(W, ow), wy = weights(H, oh);
  const p = packTables(wx, wy);
  e = { t: ctx.upload(p.data, [p.data.length]), offX: p.offX, offY: p.offY, kx: wx.k, ky: wy.k, ymin: wy.xmin, ysize: wy.xsize };
  m.set(key, e);
  for (const [k, old] of m) {
    if (m.size <= TABLES_KEPT) break;
    m.delete(k);
    old.t.release();
  }
  return e;
}

/** A band: output rows [oy0, oy1) made from source rows [y0, y1). */
export interface Band { oy0: number; oy1: number; y0: number; y1: number }

/**
 * Splits the output rows into bands whose source rows fit `limit` bytes both as source bytes
 * (`srcRowBytes` a row) and as the horizontal pass's output (`tmpRowBytes` a row): one band
 * unless the image is too large for one binding. Source rows shared by two bands are read twice.
 */
export function planBands(ymin: Int32Array, ysize: Int32Array, srcRowBytes: number, tmpRowBytes: number, limit: number): Band[] {
  const rowBytes = Math.max(srcRowBytes, tmpRowBytes);
  const bands: Band[] = [];
  const oh = ymin.length;
  for (let oy0 = 0; oy0 < oh;) {
    const y0 = ymin[oy0]!;
    let y1 = y0 + ysize[oy0]!, oy1 = oy0 + 1;
    while (oy1 < oh && (Math.max(y1, ymin[oy1]! + ysize[oy1]!) - y0) * rowBytes <= limit) {
      y1 = Math.max(y1, ymin[oy1]! + ysize[oy1]!);
      oy1++;
    }
    bands.push({ oy0, oy1, y0, y1 });
    oy0 = oy1;
  }
  return bands;
}

/**
 * Resize + normalise, band by band (shared by the Node and browser paths): `fill(band, buffer)`
 * puts the band's source rows into `buffer` (row y of the image at (y - band.y0) * rowBytes).
 */
function resizeNormalize(ctx: GpuContext, H: number, W: number, rowBytes: number, channels: number, size: number,
  antialias: boolean, fill: (band: Band, buffer: GPUBuffer) => void): Tensor {
  const tb = tables(ctx, H, W, size, size, antialias);
  const tmpRowBytes = size * 3 * 4;
  const limit = ctx.tileBytes;
  const bands = planBands(tb.ymin, tb.ysize, rowBytes, tmpRowBytes, limit);
  const maxRows = Math.max(...bands.map((b) => b.y1 - b.y0));
  if (maxRows * Math.max(rowBytes, tmpRowBytes) > ctx.maxBindingBytes) {
    throw new RangeError(`preprocess: one output row of a ${W}x${H} image needs ${maxRows} source rows, more than one GPU binding holds`);
  }
  const src = ctx.allocBuffer(maxRows * rowBytes);
  const tmp = ctx.empty([maxRows, size, 3]);
  const out = ctx.empty([1, size, size, 3]);
  const h = ctx.pipeline('preprocess_resize_h', horizontalWGSL);
  const v = ctx.pipeline('preprocess_resize_v_normalize', verticalWGSL);
  try {
    for (const band of bands) {
      fill(band, src);
      const rows = band.y1 - band.y0, orows = band.oy1 - band.oy0;
      const params = ctx.uniform(new Uint32Array([
        rows, rowBytes, channels, size, tb.kx, tb.ky, tb.offX, tb.offY, size, band.y0, band.oy0, orows,
      ]));
      ctx.run({ pipeline: h, bindings: [params, src, tb.t, tmp], workgroups: grid1d(Math.ceil((rows * size) / WG)).workgroups });
      ctx.run({ pipeline: v, bindings: [params, tmp, tb.t, out], workgroups: grid1d(Math.ceil((orows * size) / WG)).workgroups });
    }
  } catch (e) {
    out.release();
    throw e;
  } finally {
    ctx.recycle(src);
    tmp.release();
  }
  return out;
}

export interface PreprocessOptions {
  /**
   * Antialiased downscaling, as torchvision >= 0.17's tensor `Resize` does by default (true, the
   * default); false gives the plain bilinear resize of older torchvision.
   */
  antialias?: boolean;
}

/** Throws unless `src` is 8-bit RGB(A) pixels of its stated size (`who` names the caller). */
export function checkImageSource(who: string, src: ImageSource): void {
  const { data, width: W, height: H, channels } = src;
  if (channels !== 3 && channels !== 4) throw new Error(`${who}: ${channels} channels, expected 3 or 4`);
  if (!(Number.isInteger(W) && W > 0 && Number.isInteger(H) && H > 0)) {
    throw new ImageSizeError(`${who}: the size ${W}x${H} is not two positive integers`);
  }
  if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) throw new Error(`${who}: data must be a Uint8Array or Uint8ClampedArray`);
  if (data.length !== W * H * channels) throw new Error(`${who}: ${data.length} bytes for ${W}x${H}x${channels}`);
}

/**
 * EfficientTAMImagePredictor's transform of 8-bit RGB(A) pixels: [1, size, size, 3] channels-last,
 * normalised with the ImageNet mean and std. The source rows go up band by band (one band unless
 * the image is larger than `ctx.tileBytes`).
 */
export function preprocessImage(ctx: GpuContext, src: ImageSource, size: number, opts: PreprocessOptions = {}): Tensor {
  checkImageSource('preprocessImage', src);
  const { data, width: W, height: H, channels } = src;
  const rowBytes = W * channels;
  return resizeNormalize(ctx, H, W, rowBytes, channels, size, opts.antialias ?? true, (band, buffer) => {
    // the band's bytes as u32 words (bits copied unchanged; the last word zero-padded)
    ctx.write(buffer, data.subarray(band.y0 * rowBytes, band.y1 * rowBytes));
  });
}

/** What `copyExternalImageToTexture` accepts and that has a size. */
export type TextureSource = ImageBitmap | VideoFrame | HTMLCanvasElement | HTMLVideoElement | OffscreenCanvas;

/**
 * The same transform for a browser image source: copied into an rgba8unorm texture by the GPU
 * (`copyExternalImageToTexture`, no colour conversion, no premultiplication), then band by band
 * into a buffer of packed bytes (rows padded to 256 bytes), then resized as `preprocessImage` does.
 */
export function preprocessTexture(ctx: GpuContext, source: TextureSource, size: number, opts: PreprocessOptions = {}): Tensor {
  const dims = source as { videoWidth?: number; videoHeight?: number; displayWidth?: number; displayHeight?: number; width: number; height: number };
  const W = dims.videoWidth ?? dims.displayWidth ?? dims.width;
  const H = dims.videoHeight ?? dims.displayHeight ?? dims.height;
  const device = ctx.device;
  checkImageSize('preprocessTexture', W, H, { maxSide: device.limits.maxTextureDimension2D, maxPixels: Infinity });
  const TEX_COPY_SRC = 0x01, TEX_COPY_DST = 0x02, TEX_RENDER_ATTACHMENT = 0x10; // GPUTextureUsage
  const tex = device.createTexture({
    size: [W, H],
    format: 'rgba8unorm',
    usage: TEX_COPY_SRC | TEX_COPY_DST | TEX_RENDER_ATTACHMENT,
  });
  try {
    const rowBytes = Math.ceil((W * 4) / 256) * 256;
    ctx.flush(); // earlier recorded work stays ordered before the copies
    device.queue.copyExternalImageToTexture({ source }, { texture: tex, premultipliedAlpha: false }, [W, H]);
    return resizeNormalize(ctx, H, W, rowBytes, 4, size, opts.antialias ?? true, (band, buffer) => {
      ctx.flush(); // the previous band's work goes first
      const enc = device.createCommandEncoder();
      const rows = band.y1 - band.y0;
      enc.copyTextureToBuffer({ texture: tex, origin: [0, band.y0] }, { buffer, bytesPerRow: rowBytes, rowsPerImage: rows }, [W, rows]);
      device.queue.submit([enc.finish()]);
    });
  } finally {
    ctx.flush();
    tex.destroy();
  }
}
