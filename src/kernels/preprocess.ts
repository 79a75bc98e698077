import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
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

interface PassGeom {
  /** source: byte offset of pixel (y, x) channel c = y * rowBytes + x * channels + c */
  H: number; W: number; rowBytes: number; channels: number;
  oh: number; ow: number; kx: number; ky: number; offX: number; offY: number;
}

/** Pass 1: bytes [H, W, ch] -> tmp [H, ow, 3] = sum_j w_x[j] * byte / 255. */
const horizontalWGSL = (g: PassGeom): string => /* wgsl */ `
// ---- kernel: preprocess_resize_h ----
// bytes [${g.H}, ${g.W}, ${g.channels}] (row ${g.rowBytes} bytes) -> tmp [${g.H}, ${g.ow}, 3]
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read> tab: array<f32>;
@group(0) @binding(2) var<storage, read_write> tmp: array<f32>;

fn byteAt(i: u32) -> f32 { return f32((src[i >> 2u] >> ((i & 3u) * 8u)) & 255u); }

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid; // one output pixel, its 3 channels
  if (i >= ${g.H * g.ow}u) { return; }
  let ox = i % ${g.ow}u;
  let y = i / ${g.ow}u;
  let lo = bitcast<u32>(tab[${g.offX}u + ox]);
  let n = bitcast<u32>(tab[${g.offX + g.ow}u + ox]);
  let wb = ${g.offX + 2 * g.ow}u + ox * ${g.kx}u;
  let row = y * ${g.rowBytes}u;
  var acc = vec3f(0.0);
  for (var j = 0u; j < n; j++) {
    let p = row + (lo + j) * ${g.channels}u;
    acc += (vec3f(byteAt(p), byteAt(p + 1u), byteAt(p + 2u)) / 255.0) * tab[wb + j];
  }
  tmp[i * 3u] = acc.x; tmp[i * 3u + 1u] = acc.y; tmp[i * 3u + 2u] = acc.z;
}
`;

/** Pass 2: tmp [H, ow, 3] -> out [1, oh, ow, 3] = (sum_j w_y[j] * tmp - mean) / std. */
const verticalWGSL = (g: PassGeom): string => /* wgsl */ `
// ---- kernel: preprocess_resize_v_normalize ----
// tmp [${g.H}, ${g.ow}, 3] -> out [1, ${g.oh}, ${g.ow}, 3]
@group(0) @binding(0) var<storage, read> tmp: array<f32>;
@group(0) @binding(1) var<storage, read> tab: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const MEAN = vec3f(${IMAGENET_MEAN.join(', ')});
const STD = vec3f(${IMAGENET_STD.join(', ')});

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid; // one output pixel, its 3 channels
  if (i >= ${g.oh * g.ow}u) { return; }
  let ox = i % ${g.ow}u;
  let oy = i / ${g.ow}u;
  let lo = bitcast<u32>(tab[${g.offY}u + oy]);
  let n = bitcast<u32>(tab[${g.offY + g.oh}u + oy]);
  let wb = ${g.offY + 2 * g.oh}u + oy * ${g.ky}u;
  var acc = vec3f(0.0);
  for (var j = 0u; j < n; j++) {
    let p = ((lo + j) * ${g.ow}u + ox) * 3u;
    acc += vec3f(tmp[p], tmp[p + 1u], tmp[p + 2u]) * tab[wb + j];
  }
  let v = (acc - MEAN) / STD;
  out[i * 3u] = v.x; out[i * 3u + 1u] = v.y; out[i * 3u + 2u] = v.z;
}
`;

interface Tables { t: Tensor; offX: number; offY: number; kx: number; ky: number }
const tableCache = new WeakMap<GpuContext, Map<string, Tables>>();

/** The weight tables for one source size, uploaded once per context. */
function tables(ctx: GpuContext, H: number, W: number, oh: number, ow: number, antialias: boolean): Tables {
  let m = tableCache.get(ctx);
  if (!m) tableCache.set(ctx, (m = new Map()));
  const key = `${H}x${W}->${oh}x${ow}${antialias ? ' aa' : ''}`;
  let e = m.get(key);
  if (!e) {
    const weights = antialias ? aaWeights : bilinearWeights;
    const wx = weights(W, ow), wy = weights(H, oh);
    const p = packTables(wx, wy);
    e = { t: ctx.upload(p.data, [p.data.length]), offX: p.offX, offY: p.offY, kx: wx.k, ky: wy.k };
    m.set(key, e);
  }
  return e;
}

/** Resize + normalise from a buffer of packed bytes (shared by the Node and browser paths). */
function resizeNormalize(ctx: GpuContext, bytes: GPUBuffer | Tensor, H: number, W: number, rowBytes: number,
  channels: number, size: number, antialias: boolean): Tensor {
  const tb = tables(ctx, H, W, size, size, antialias);
  const g: PassGeom = { H, W, rowBytes, channels, oh: size, ow: size, kx: tb.kx, ky: tb.ky, offX: tb.offX, offY: tb.offY };
  const tmp = ctx.empty([H, size, 3]);
  ctx.run({
    pipeline: ctx.pipeline('preprocess_resize_h', horizontalWGSL(g)),
    bindings: [bytes, tb.t, tmp],
    workgroups: grid1d(Math.ceil((H * size) / WG)).workgroups,
  });
  const out = ctx.empty([1, size, size, 3]);
  ctx.run({
    pipeline: ctx.pipeline('preprocess_resize_v_normalize', verticalWGSL(g)),
    bindings: [tmp, tb.t, out],
    workgroups: grid1d(Math.ceil((size * size) / WG)).workgroups,
  });
  tmp.release();
  return out;
}

export interface PreprocessOptions {
  /**
   * Antialiased downscaling, as torchvision >= 0.17's tensor `Resize` does by default (true, the
   * default); false gives the plain bilinear resize of older torchvision.
   */
  antialias?: boolean;
}

/**
 * EfficientTAMImagePredictor's transform of 8-bit RGB(A) pixels: [1, size, size, 3] channels-last,
 * normalised with the ImageNet mean and std.
 */
export function preprocessImage(ctx: GpuContext, src: ImageSource, size: number, opts: PreprocessOptions = {}): Tensor {
  const { data, width: W, height: H, channels } = src;
  if (channels !== 3 && channels !== 4) throw new Error(`preprocessImage: ${channels} channels, expected 3 or 4`);
  if (data.length !== W * H * channels) throw new Error(`preprocessImage: ${data.length} bytes for ${W}x${H}x${channels}`);
  // The bytes as u32 words (the last one zero-padded), uploaded once.
  const nWords = Math.ceil(data.length / 4);
  const words = new Uint8Array(nWords * 4);
  words.set(data);
  const packed = ctx.empty([nWords]); // u32 words, held in an f32 tensor (bits copied unchanged)
  ctx.write(packed, new Float32Array(words.buffer));
  const out = resizeNormalize(ctx, packed, H, W, W * channels, channels, size, opts.antialias ?? true);
  packed.release();
  return out;
}

/** What `copyExternalImageToTexture` accepts and that has a size. */
export type TextureSource = ImageBitmap | VideoFrame | HTMLCanvasElement | HTMLVideoElement | OffscreenCanvas;

/**
 * The same transform for a browser image source: copied into an rgba8unorm texture by the GPU
 * (`copyExternalImageToTexture`, no colour conversion, no premultiplication), then into a buffer
 * of packed bytes (rows padded to 256 bytes), then resized as `preprocessImage` does.
 */
export function preprocessTexture(ctx: GpuContext, source: TextureSource, size: number, opts: PreprocessOptions = {}): Tensor {
  const dims = source as { videoWidth?: number; videoHeight?: number; displayWidth?: number; displayHeight?: number; width: number; height: number };
  const W = dims.videoWidth ?? dims.displayWidth ?? dims.width;
  const H = dims.videoHeight ?? dims.displayHeight ?? dims.height;
  const device = ctx.device;
  const TEX_COPY_SRC = 0x01, TEX_COPY_DST = 0x02, TEX_RENDER_ATTACHMENT = 0x10; // GPUTextureUsage
  const tex = device.createTexture({
    size: [W, H],
    format: 'rgba8unorm',
    usage: TEX_COPY_SRC | TEX_COPY_DST | TEX_RENDER_ATTACHMENT,
  });
  const rowBytes = Math.ceil((W * 4) / 256) * 256;
  const buf = ctx.allocBuffer(rowBytes * H);
  ctx.flush(); // earlier recorded work stays ordered before the copies
  device.queue.copyExternalImageToTexture({ source }, { texture: tex, premultipliedAlpha: false }, [W, H]);
  const enc = device.createCommandEncoder();
  enc.copyTextureToBuffer({ texture: tex }, { buffer: buf, bytesPerRow: rowBytes, rowsPerImage: H }, [W, H]);
  device.queue.submit([enc.finish()]);
  const out = resizeNormalize(ctx, buf, H, W, rowBytes, 4, size, opts.antialias ?? true);
  ctx.recycle(buf);
  ctx.flush();
  tex.destroy();
  return out;
}
