import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { matmul } from './matmul.js';
import { softmax } from './softmax.js';
import { grid1d } from './util.js';

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

/** Copies heads [g0, g0+G) (flat index b*H + h) of an operand into a contiguous [G, N, d]. */
const gatherWGSL = (N: number, H: number, d: number, tok: number, off: number, g0: number, G: number): string => /* wgsl */ `
// ---- kernel: attention_gather_heads (N ${N}, H ${H}, d ${d}, heads ${g0}..${g0 + G}) ----
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;   // [G, N, d]

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (e >= ${G * N * d}u) { return; }
  let i = e % ${d}u;
  let n = (e / ${d}u) % ${N}u;
  let flat = ${g0}u + e / ${N * d}u;
  let b = flat / ${H}u;
  let h = flat % ${H}u;
  dst[e] = src[(b * ${N}u + n) * ${tok}u + ${off}u + h * ${d}u + i];
}
`;

/** Writes a contiguous [G, N, dv] into heads [g0, g0+G) of out [B, N, H*dv]. */
const scatterWGSL = (N: number, H: number, dv: number, g0: number, G: number): string => /* wgsl */ `
// ---- kernel: attention_scatter_heads (N ${N}, H ${H}, dv ${dv}, heads ${g0}..${g0 + G}) ----
@group(0) @binding(0) var<storage, read> src: array<f32>;          // [G, N, dv]
@group(0) @binding(1) var<storage, read_write> out: array<f32>;    // [B, N, H*dv]

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (e >= ${G * N * dv}u) { return; }
  let i = e % ${dv}u;
  let n = (e / ${dv}u) % ${N}u;
  let flat = ${g0}u + e / ${N * dv}u;
  let b = flat / ${H}u;
  let h = flat % ${H}u;
  out[(b * ${N}u + n) * ${H * dv}u + h * ${dv}u + i] = src[e];
}
`;

function gather(ctx: GpuContext, op: HeadOperand, N: number, H: number, d: number, g0: number, G: number): Tensor {
  const dst = ctx.empty([G, N, d]);
  ctx.run({
    pipeline: ctx.pipeline('attention_gather_heads', gatherWGSL(N, H, d, op.tokenStride, op.offset, g0, G)),
    bindings: [op.t, dst],
    workgroups: grid1d(Math.ceil((G * N * d) / WG)).workgroups,
  });
  return dst;
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
    const scores = matmul(ctx, qh, kh, { transposeB: true, alpha: p.scale }); // [g, Nq, Nk]
    qh.release();
    kh.release();
    const bias = p.logitBias;
    const probs = softmax(ctx, scores, undefined, bias ? { bias: { columns: bias.keys, value: bias.value } } : {});
    scores.release();
    const vh = gather(ctx, v, p.nk, p.heads, p.dv, g0, g); // [g, Nk, dv]
    const oh = matmul(ctx, probs, vh); // [g, Nq, dv]
    probs.release();
    vh.release();
    ctx.run({
      pipeline: ctx.pipeline('attention_scatter_heads', scatterWGSL(p.nq, p.heads, p.dv, g0, g)),
      bindings: [oh, out],
      workgroups: grid1d(Math.ceil((g * p.nq * p.dv) / WG)).workgroups,
    });
    oh.release();
  }
}
