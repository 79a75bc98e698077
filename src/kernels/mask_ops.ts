/**
 * Small kernels of the prompt/mask path: element-wise activations, strided row copies (token
 * selection and stacking), broadcast adds into a batch, the decoder's choice of output masks
 * (multimask / single / dynamic single-mask fallback by stability score), and bilinear upsampling
 * of logits that fit one binding (masks at an image's resolution: mask_upsample.ts).
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { ERF_WGSL } from './matmul.js';
import { upsampleTensor } from './mask_upsample.js';
import { f32lit, grid1d, header1d, memoWGSL } from './util.js';

const WG = 256;

// ------------------------------------------------------------------------------------------------
// unary

export type UnaryOp = 'gelu' | 'sigmoid' | { clamp: [number, number] };

const unaryExpr = (op: UnaryOp): string => {
  if (op === 'gelu') return '0.5 * v * (1.0 + erf_f32(v * 0.70710678118654752))';
  if (op === 'sigmoid') return '1.0 / (1.0 + exp(-v))';
  return `clamp(v, ${f32lit(op.clamp[0])}, ${f32lit(op.clamp[1])})`;
};

/**
 * One kernel per op: the length is a uniform, so a batch of any number of prompts or objects
 * (the predictors clamp their logits) shares the op's pipeline.
 */
const unaryWGSL = memoWGSL((op: UnaryOp): string => /* wgsl */ `
// ---- kernel: unary ----
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> n: u32;
${op === 'gelu' ? ERF_WGSL : ''}
${header1d('n', WG)}
  let v = x[i];
  out[i] = ${unaryExpr(op)};
}
`);

/** out = op(x) element-wise: exact GELU (torch.nn.GELU()), sigmoid, or clamp(lo, hi). */
export function unary(ctx: GpuContext, x: Tensor, op: UnaryOp, out?: Tensor): Tensor {
  const o = out ?? ctx.empty(x.shape);
  if (o.size !== x.size) throw new Error(`unary: out [${o.shape}] does not match x [${x.shape}]`);
  if (x.size === 0) return o;
  ctx.run({
    pipeline: ctx.pipeline('unary', unaryWGSL(op)),
    bindings: [x, o, ctx.uniform(new Uint32Array([x.size]))],
    workgroups: grid1d(Math.ceil(x.size / WG)).workgroups,
  });
  return o;
}

// ------------------------------------------------------------------------------------------------
// strided row copy

export interface RowCopy {
  rows: number;
  /** elements per row */
  rowLen: number;
  srcStride: number;
  srcOffset?: number;
  dstStride: number;
  dstOffset?: number;
}

/**
 * dst[dstOffset + r*dstStride + i] = src[srcOffset + r*srcStride + i] for r < rows, i < rowLen.
 * E.g. token t of every batch element: rows = B, rowLen = C, srcStride = N*C, srcOffset = t*C.
 */
export function copyRows(ctx: GpuContext, src: Tensor, dst: Tensor, p: RowCopy): Tensor {
  const so = p.srcOffset ?? 0, dof = p.dstOffset ?? 0;
  const n = p.rows * p.rowLen;
  if (n === 0) return dst;
  const lastSrc = so + (p.rows - 1) * p.srcStride + p.rowLen;
  const lastDst = dof + (p.rows - 1) * p.dstStride + p.rowLen;
  if (lastSrc > src.size || lastDst > dst.size) {
    throw new Error(`copyRows: out of bounds (src [${src.shape}] needs ${lastSrc}, dst [${dst.shape}] needs ${lastDst})`);
  }
  ctx.run({
    pipeline: ctx.pipeline('copy_rows', COPY_ROWS_WGSL),
    bindings: [src, dst, ctx.uniform(new Uint32Array([n, p.rowLen, so, p.srcStride, dof, p.dstStride]))],
    workgroups: grid1d(Math.ceil(n / WG)).workgroups,
  });
  return dst;
}

/** Sizes and offsets are uniforms: every copy (any token, batch or stride) shares one pipeline. */
const COPY_ROWS_WGSL = /* wgsl */ `
// ---- kernel: copy_rows ----
struct Copy { n: u32, rowLen: u32, srcOffset: u32, srcStride: u32, dstOffset: u32, dstStride: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> Z: Copy;
${header1d('Z.n', WG)}
  let r = i / Z.rowLen;
  let j = i % Z.rowLen;
  dst[Z.dstOffset + r * Z.dstStride + j] = src[Z.srcOffset + r * Z.srcStride + j];
}
`;

/** Token `t` of x [B, N, C] -> [B, C]. */
export function selectToken(ctx: GpuContext, x: Tensor, t: number): Tensor {
  const [B, N, C] = x.shape as [number, number, number];
  if (x.shape.length !== 3 || t < 0 || t >= N) throw new Error(`selectToken: token ${t} of [${x.shape}]`);
  return copyRows(ctx, x, ctx.empty([B, C]), { rows: B, rowLen: C, srcStride: N * C, srcOffset: t * C, dstStride: C });
}

// ------------------------------------------------------------------------------------------------
// broadcast add

/**
 * out[i] = a[i % a.size] + b[i % b.size] for a new tensor of `shape`: e.g. the image embedding
 * [g, g, C] repeated over a batch plus per-batch dense embeddings [B, g, g, C] (or one [C] vector).
 */
export function broadcastAdd(ctx: GpuContext, a: Tensor, b: Tensor, shape: readonly number[]): Tensor {
  const out = ctx.empty(shape);
  if (out.size % a.size !== 0 || out.size % b.size !== 0) {
    throw new Error(`broadcastAdd: [${a.shape}] and [${b.shape}] do not broadcast onto [${shape}]`);
  }
  if (out.size === 0) return out;
  ctx.run({
    pipeline: ctx.pipeline('broadcast_add', BROADCAST_ADD_WGSL),
    bindings: [a, b, out, ctx.uniform(new Uint32Array([out.size, a.size, b.size]))],
    workgroups: grid1d(Math.ceil(out.size / WG)).workgroups,
  });
  return out;
}

/** Sizes are uniforms: one pipeline for every batch. */
const BROADCAST_ADD_WGSL = /* wgsl */ `
// ---- kernel: broadcast_add ----
struct Sizes { n: u32, a: u32, b: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> Z: Sizes;
${header1d('Z.n', WG)}
  out[i] = a[i % Z.a] + b[i % Z.b];
}
`;

// ------------------------------------------------------------------------------------------------
// mask selection

export type MaskSelectMode = 'multimask' | 'single' | 'dynamic';

export interface MaskSelectOptions {
  mode: MaskSelectMode;
  /** apply a sigmoid to the IoU predictions (iou_prediction_use_sigmoid) */
  sigmoid: boolean;
  /** stability score: IoU of (logit > delta) and (logit > -delta) of the single-mask output */
  stabilityDelta?: number;
  stabilityThresh?: number;
}

/**
 * MaskDecoder.forward's choice of outputs from all mask tokens:
 *   'multimask': masks 1..T-1;  'single': mask 0;
 *   'dynamic': mask 0 if its stability score >= thresh, else the multimask output with the highest
 *              predicted IoU (first on ties, as torch.argmax).
 * masks [B, T, h, w], iou [B, T] (raw head output) -> { masks [B, M, h, w], iou [B, M] }.
 * One workgroup per batch element.
 */
export function selectMasks(ctx: GpuContext, masks: Tensor, iou: Tensor, o: MaskSelectOptions): { masks: Tensor; iou: Tensor } {
  const [B, T, h, w] = masks.shape as [number, number, number, number];
  if (masks.shape.length !== 4 || iou.shape.length !== 2 || iou.shape[0] !== B || iou.shape[1] !== T) {
    throw new Error(`selectMasks: masks [${masks.shape}] and iou [${iou.shape}] are not [B, T, h, w] and [B, T]`);
  }
  const hw = h * w;
  const M = o.mode === 'multimask' ? T - 1 : 1;
  const outMasks = ctx.empty([B, M, h, w]);
  const outIou = ctx.empty([B, M]);
  const delta = f32lit(o.stabilityDelta ?? 0.05), thresh = f32lit(o.stabilityThresh ?? 0.98);
  const wgsl = /* wgsl */ `
// ---- kernel: select_masks (${o.mode}) ----
@group(0) @binding(0) var<storage, read> masks: array<f32>;
@group(0) @binding(1) var<storage, read> iou: array<f32>;
@group(0) @binding(2) var<storage, read_write> outMasks: array<f32>;
@group(0) @binding(3) var<storage, read_write> outIou: array<f32>;
var<workgroup> red: array<vec2u, ${WG}>;
var<workgroup> choice: u32;

fn score(b: u32, t: u32) -> f32 {
  let v = iou[b * ${T}u + t];
  return ${o.sigmoid ? '1.0 / (1.0 + exp(-v))' : 'v'};
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.x;
  let base = b * ${T * hw}u;
${o.mode === 'dynamic' ? `
  var cnt = vec2u(0u, 0u);   // (area_i, area_u) of token 0's logits
  for (var i = lid; i < ${hw}u; i += ${WG}u) {
    let v = masks[base + i];
    cnt += vec2u(select(0u, 1u, v > ${delta}), select(0u, 1u, v > -${delta}));
  }
  red[lid] = cnt;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let c = red[0];
    let stability = select(1.0, f32(c.x) / f32(c.y), c.y > 0u);
    var best = 1u;
    for (var t = 2u; t < ${T}u; t++) { if (score(b, t) > score(b, best)) { best = t; } }
    choice = select(best, 0u, stability >= ${thresh});
  }
  workgroupBarrier();
  let first = workgroupUniformLoad(&choice);` : `
  let first = ${o.mode === 'multimask' ? 1 : 0}u;`}
  for (var i = lid; i < ${M * hw}u; i += ${WG}u) {
    outMasks[b * ${M * hw}u + i] = masks[base + first * ${hw}u + i];
  }
  if (lid < ${M}u) { outIou[b * ${M}u + lid] = score(b, first + lid); }
}
`;
  ctx.run({ pipeline: ctx.pipeline('select_masks', wgsl), bindings: [masks, iou, outMasks, outIou], workgroups: [B] });
  return { masks: outMasks, iou: outIou };
}

// ------------------------------------------------------------------------------------------------
// bilinear upsampling

/**
 * F.interpolate(x, (H, W), mode='bilinear', align_corners=False) on planes: x [..., h, w] -> [..., H, W].
 * Source index per axis: max((dst + 0.5) * (in / out) - 0.5, 0), neighbours i0 and min(i0 + 1, in - 1),
 * with PyTorch's order of operations. The output is one tensor, so it must fit one binding: masks
 * at an image's resolution are read back in tiles instead (mask_upsample.ts, the same kernel).
 */
export function resizeBilinear(ctx: GpuContext, x: Tensor, H: number, W: number): Tensor {
  if (x.shape.length < 2) throw new Error(`resizeBilinear: x [${x.shape}] has no [h, w] axes`);
  return upsampleTensor(ctx, x, { H, W, mode: 'logits' });
}

/** The same on the CPU, in f32 steps (reference for tests). */
export function resizeBilinearCpu(x: Float32Array, planes: number, h: number, w: number, H: number, W: number): Float32Array {
  const f = Math.fround;
  const out = new Float32Array(planes * H * W);
  const sh = f(h / H), sw = f(w / W);
  for (let p = 0; p < planes; p++) for (let oy = 0; oy < H; oy++) for (let ox = 0; ox < W; ox++) {
    const ry = Math.max(f(f(sh * f(oy + 0.5)) - 0.5), 0), rx = Math.max(f(f(sw * f(ox + 0.5)) - 0.5), 0);
    const y0 = Math.floor(ry), x0 = Math.floor(rx);
    const y1 = Math.min(y0 + 1, h - 1), x1 = Math.min(x0 + 1, w - 1);
    const ly1 = f(ry - y0), lx1 = f(rx - x0), ly0 = f(1 - ly1), lx0 = f(1 - lx1);
    const at = (y: number, xx: number) => x[p * h * w + y * w + xx]!;
    out[(p * H + oy) * W + ox] = ly0 * (lx0 * at(y0, x0) + lx1 * at(y0, x1)) + ly1 * (lx0 * at(y1, x0) + lx1 * at(y1, x1));
  }
  return out;
}
