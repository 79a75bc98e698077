import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { matmul } from './matmul.js';
import { softmax } from './softmax.js';
import { grid1d, MAX_GROUPS, memoWGSL } from './util.js';

/**
 * Attention composed of the tiled matmul: for a group of G (batch, head) pairs,
 *
 *   gather q, k, v of those heads    -> qh [G, Nq, d], kh [G, Nk, d], vh [G, Nk, dv]
 *   scores = scale · qh · khᵀ        -> [G, Nq, Nk]
 *   probs  = softmax(scores)          (last axis; + the logit bias on the first keys, if any)
 *   oh     = probs · vh              -> [G, Nq, dv], scattered back to out [B, Nq, H*dv]
 *
 * On software WebGPU the register-tiled matmul runs several times faster than a fused
 * (flash-style) kernel, whose per-query online softmax does not vectorise as well; the price is
 * the score matrix, G·Nq·Nk floats, so heads are taken in groups that keep it within a budget.
 * `attention.ts` chooses this path when one head's scores fit, and the fused kernel otherwise.
 */

/** Where one of q, k, v lives: element (b, n, h, i) is at (b*N + n)*tokenStride + offset + h*d + i. */
export interface HeadOperand {
  t: Tensor;
  tokenStride: number;
  offset: number;
}

const WG = 256;

/*
 * The two copies below take their sizes from a uniform block, so one pipeline per vector width
 * serves every shape and head group: keys and values of a video's memory grow by a frame on each
 * of the first frames, and a pipeline compile per frame would cost more than the frame.
 *
 * Grid: z is the head within the group, x (and y past 65535 workgroups) runs over that head's
 * N * d/W vectors of W floats (W = 4 when d, the token stride and the offset allow, else 1).
 * Divisions by a uniform are scalarised on lavapipe (unlike those by a compile-time constant), so
 * this layout keeps them to one per vector.
 */

const copyHeader = (W: number): string => /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wid.y * nwg.x + wid.x) * ${WG}u + lid;   // vector within this head's [N, d/${W}]
  if (e >= Z.perHead) { return; }
  let n = e / Z.dw;                                  // token
  let i = e - n * Z.dw;                              // vector within the token's head
  let flat = Z.g0 + wid.z;                           // b*H + h
  let b = flat / Z.H;
  let h = flat - b * Z.H;`;

/** Copies heads [g0, g0+G) (flat index b*H + h) of an operand into a contiguous [G, N, d]. */
const gatherWGSL = memoWGSL((W: number): string => /* wgsl */ `
// ---- kernel: attention_gather_heads (${W === 4 ? 'vec4' : 'f32'}) ----
struct Sizes {
  perHead: u32,   // N * d/W
  dw: u32,        // d/W
  N: u32,
  g0: u32,        // first head (flat b*H + h) of the group
  H: u32,
  tokw: u32,      // vectors between consecutive tokens of src
  offw: u32,      // vectors before head 0 within a token
}
@group(0) @binding(0) var<storage, read> src: array<${W === 4 ? 'vec4f' : 'f32'}>;
@group(0) @binding(1) var<storage, read_write> dst: array<${W === 4 ? 'vec4f' : 'f32'}>;   // [G, N, d]
@group(0) @binding(2) var<uniform> Z: Sizes;
${copyHeader(W)}
  dst[wid.z * Z.perHead + e] = src[(b * Z.N + n) * Z.tokw + Z.offw + h * Z.dw + i];
}
`);

/** Writes a contiguous [G, N, dv] into heads [g0, g0+G) of out [B, N, H*dv]. */
const scatterWGSL = memoWGSL((W: number): string => /* wgsl */ `
// ---- kernel: attention_scatter_heads (${W === 4 ? 'vec4' : 'f32'}) ----
struct Sizes {
  perHead: u32,   // N * dv/W
  dw: u32,        // dv/W
  N: u32,
  g0: u32,        // first head (flat b*H + h) of the group
  H: u32,
}
@group(0) @binding(0) var<storage, read> src: array<${W === 4 ? 'vec4f' : 'f32'}>;          // [G, N, dv]
@group(0) @binding(1) var<storage, read_write> out: array<${W === 4 ? 'vec4f' : 'f32'}>;    // [B, N, H*dv]
@group(0) @binding(2) var<uniform> Z: Sizes;
${copyHeader(W)}
  out[(b * Z.N + n) * Z.H * Z.dw + h * Z.dw + i] = src[wid.z * Z.perHead + e];
}
`);

/** The grid of a copy of G heads of `perHead` vectors each. */
function copyGrid(perHead: number, G: number): [number, number, number] {
  if (G > MAX_GROUPS) throw new Error(`attention: ${G} heads in one group (at most ${MAX_GROUPS})`);
  const [x, y] = grid1d(Math.ceil(perHead / WG)).workgroups;
  return [x, y, G];
}

function gather(ctx: GpuContext, op: HeadOperand, N: number, H: number, d: number, g0: number, G: number): Tensor {
  const dst = ctx.empty([G, N, d]);
  const W = d % 4 === 0 && op.tokenStride % 4 === 0 && op.offset % 4 === 0 ? 4 : 1;
  const dw = d / W;
  ctx.run({
    pipeline: ctx.pipeline('attention_gather_heads', gatherWGSL(W)),
    bindings: [op.t, dst, ctx.uniform(new Uint32Array([N * dw, dw, N, g0, H, op.tokenStride / W, op.offset / W]))],
    workgroups: copyGrid(N * dw, G),
  });
  return dst;
}

function scatter(ctx: GpuContext, src: Tensor, out: Tensor, N: number, H: number, dv: number, g0: number, G: number): void {
  const W = dv % 4 === 0 ? 4 : 1;
  const dw = dv / W;
  ctx.run({
    pipeline: ctx.pipeline('attention_scatter_heads', scatterWGSL(W)),
    bindings: [src, out, ctx.uniform(new Uint32Array([N * dw, dw, N, g0, H]))],
    workgroups: copyGrid(N * dw, G),
  });
}

/** Bytes of scores one group may hold. */
export function scoreBudget(ctx: GpuContext): number {
  return Math.min(ctx.device.limits.maxStorageBufferBindingSize, 128 * 1024 * 1024);
}

/** Whether one head's score matrix fits the budget (else the fused kernel is used). */
export function composedFits(ctx: GpuContext, nq: number, nk: number): boolean {
  return nq * nk * 4 <= scoreBudget(ctx);
}

/** A constant added to the logits of the first `keys` keys before the softmax. */
export interface LogitBias {
  keys: number;
  value: number;
}

export interface ComposedParams {
  batch: number;
  heads: number;
  nq: number;
  nk: number;
  d: number;
  dv: number;
  scale: number;
  /** added to the logits q·k·scale of keys [0, keys) before the softmax */
  logitBias?: LogitBias;
  /** q, k and v rounded to f16 in the matmuls (precision 'f16'; probabilities and sums f32) */
  half?: boolean;
}

/** out [B, Nq, H*dv] = softmax(scale · q kᵀ [+ logit bias]) v per (batch, head); see the file comment. */
export function attentionComposed(ctx: GpuContext, p: ComposedParams, q: HeadOperand, k: HeadOperand, v: HeadOperand,
  out: Tensor): void {
  const total = p.batch * p.heads;
  const perGroup = Math.max(1, Math.floor(scoreBudget(ctx) / (p.nq * p.nk * 4)));
  const G = Math.min(total, perGroup);
  for (let g0 = 0; g0 < total; g0 += G) {
    const g = Math.min(G, total - g0);
    const qh = gather(ctx, q, p.nq, p.heads, p.d, g0, g); // [g, Nq, d]
    const kh = gather(ctx, k, p.nk, p.heads, p.d, g0, g); // [g, Nk, d]
    const scores = matmul(ctx, qh, kh, { transposeB: true, alpha: p.scale, halfA: p.half, halfB: p.half }); // [g, Nq, Nk]
    qh.release();
    kh.release();
    const bias = p.logitBias;
    const probs = softmax(ctx, scores, undefined, bias ? { bias: { columns: bias.keys, value: bias.value } } : {});
    scores.release();
    const vh = gather(ctx, v, p.nk, p.heads, p.dv, g0, g); // [g, Nk, dv]
    const oh = matmul(ctx, probs, vh, { halfB: p.half }); // [g, Nq, dv] (probabilities stay f32)
    probs.release();
    vh.release();
    scatter(ctx, oh, out, p.nq, p.heads, p.dv, g0, g); // -> heads [g0, g0+g) of out [B, Nq, H*dv]
    oh.release();
  }
}
