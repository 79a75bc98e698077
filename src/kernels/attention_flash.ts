import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import type { ComposedParams } from './attention_composed.js';
import { grid1d, memoWGSL } from './util.js';

/**
 * Flash attention shaped for GPUs ('flash-tile' in the attention family): softmax(q kᵀ · scale) v
 * without the Nq × Nk score matrix in memory, one workgroup per (batch, head) and block of BQ
 * queries, L invocations per query (128 invocations in all).
 *
 * Why this shape: the lavapipe kernel of attention.ts gives each invocation one query, its row
 * of q and its output in registers, and every invocation runs its own online softmax; on a GPU that
 * is 2 x d registers per invocation (256 floats at d = 64, so few warps fit) and each key is read
 * once per query from workgroup memory with nothing shared. Here the workgroup holds the scaled
 * query block in workgroup memory too, and for each block of BK keys:
 *   1. stages the keys and values, [BK][d] and [BK][dv] (zeros past Nk);
 *   2. computes the BQ x BK block of scores into workgroup memory, each invocation L-strided keys
 *      of its query (BQ*BK/128 dot products of length d);
 *   3. per query, the block's maximum raises the running max m (the accumulator and the running
 *      sum l are rescaled by exp2(m_old - m)), then each key's exp2(s - m) is added to l and, times
 *      the key's value, to the accumulator: an invocation owns dv/L channels of its query's output
 *      (vec4s lane, lane + L, ...), so the L invocations of a query read L neighbouring vec4s of a
 *      value row at a time.
 * The scores are base 2 (q·k is scaled by scale·log2 e); a logit bias on the first NB
 * keys (EfficientRoPEAttention1) is added to their scores. Rows of q and k in workgroup memory are
 * padded by one element, and the score rows too: invocations of different queries read different
 * rows at the same column, which padding spreads over the banks.
 *
 * Block sizes: BQ x BK = 32 x 32 when the tiles fit the device's workgroup memory, else 32 x 16,
 * 16 x 16, 16 x 8, 8 x 8 (d = 256: memory attention's one head). With f16 operands (precision
 * 'f16') q, k and v are kept as f16 in workgroup memory (rounded as they are staged); scores,
 * softmax and sums stay f32.
 *
 * Sizes (Nq, Nk, the heads, token strides) are uniforms: keys and values of a video's memory grow
 * by a frame on each of the first frames without a compile per frame; d, dv and the blocks are
 * compiled in.
 */

/** Where q, k, v and the output live (in elements): element (b, n, h, i) of an operand is at (b*N + n)*tokenStride + offset + h*d + i. */
export interface FlashOperands extends ComposedParams {
  q: { tokenStride: number; offset: number };
  k: { tokenStride: number; offset: number };
  v: { tokenStride: number; offset: number };
  outStride: number;
}

export interface FlashTileConfig {
  bq: number;
  bk: number;
  /** invocations per query */
  lanes: number;
  /** elements per vector (4: vec4 loads) */
  w: number;
  half: boolean;
}

const INVOCATIONS = 128;
const BLOCKS: readonly [number, number][] = [[32, 32], [32, 16], [16, 16], [16, 8], [8, 8]];

/** Bytes of workgroup memory of a configuration. */
function flashBytes(d: number, dv: number, c: Omit<FlashTileConfig, 'lanes'>): number {
  const DW = d / c.w, DVW = dv / c.w, el = c.w * (c.half ? 2 : 4);
  return (c.bq * (DW + 1) + c.bk * (DW + 1) + c.bk * DVW) * el + c.bq * (c.bk + 1) * 4;
}

/** The block sizes for head dims d, dv on this device, or null when none fits its workgroup memory. */
export function flashTileConfig(ctx: GpuContext, p: FlashOperands, half: boolean): FlashTileConfig | null {
  const w = [p.d, p.dv, p.q.tokenStride, p.q.offset, p.k.tokenStride, p.k.offset, p.v.tokenStride, p.v.offset, p.outStride]
    .every((s) => s % 4 === 0) ? 4 : 1;
  const limit = ctx.device.limits.maxComputeWorkgroupStorageSize;
  if ((half && !ctx.hasF16) || ctx.device.limits.maxComputeInvocationsPerWorkgroup < INVOCATIONS) return null;
  for (const [bq, bk] of BLOCKS) {
    if (flashBytes(p.d, p.dv, { bq, bk, w, half }) <= limit) return { bq, bk, lanes: INVOCATIONS / bq, w, half };
  }
  return null;
}

const flashWGSL = memoWGSL((d: number, dv: number, c: FlashTileConfig): string => {
  const { bq: BQ, bk: BK, lanes: L, w } = c;
  const VT = w === 4 ? 'vec4f' : 'f32';
  const ST = c.half ? (w === 4 ? 'vec4h' : 'f16') : VT;
  const DW = d / w, DVW = dv / w, UV = Math.ceil(DVW / L);
  const dot = (a: string, b: string): string => (w === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`);
  const f = (x: string): string => (c.half ? `${VT}(${x})` : x);
  return /* wgsl */ `${c.half ? 'enable f16;\n' : ''}
// ---- kernel: attention_flash_tile (d ${d}, dv ${dv}; ${BQ} queries x ${BK} keys per block, ${L} invocations per query${c.half ? ', f16 operands' : ''}) ----
struct Sizes {
  NQ: u32, NK: u32, H: u32, QTILES: u32, total: u32,
  qTok: u32, qOff: u32, kTok: u32, kOff: u32, vTok: u32, vOff: u32, oTok: u32,   // in ${VT}s
  NB: u32,       // keys whose logits get BIAS
  BIAS: f32,     // the logit bias, base 2
  SCALE: f32,    // scale * log2(e)
}
@group(0) @binding(0) var<storage, read> qb: array<${VT}>;
@group(0) @binding(1) var<storage, read> kb: array<${VT}>;
@group(0) @binding(2) var<storage, read> vb: array<${VT}>;
@group(0) @binding(3) var<storage, read_write> out: array<${VT}>;
@group(0) @binding(4) var<uniform> Z: Sizes;

const LOWEST = -3.4028234e38;
var<workgroup> Qs: array<${ST}, ${BQ * (DW + 1)}>;   // [BQ][d + pad]
var<workgroup> Ks: array<${ST}, ${BK * (DW + 1)}>;   // [BK][d + pad]
var<workgroup> Vs: array<${ST}, ${BK * DVW}>;        // [BK][dv]
var<workgroup> Ss: array<f32, ${BQ * (BK + 1)}>;     // [BQ][BK + pad] scores of the block, base 2

@compute @workgroup_size(${BQ * L})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * nwg.x + wid.x;
  if (g >= Z.total) { return; }
  let qt = g % Z.QTILES;
  let bh = g / Z.QTILES;
  let h = bh % Z.H;
  let b = bh / Z.H;
  let r = lid / ${L}u;      // this invocation's query in the block
  let lane = lid % ${L}u;
  let q0 = qt * ${BQ}u;

  // the query block (rows past Nq repeat the last one, not stored)
  for (var i = lid; i < ${BQ * DW}u; i += ${BQ * L}u) {
    let qr = i / ${DW}u;
    let n = min(q0 + qr, Z.NQ - 1u);
    Qs[qr * ${DW + 1}u + i % ${DW}u] = ${ST}(qb[(b * Z.NQ + n) * Z.qTok + Z.qOff + h * ${DW}u + i % ${DW}u]);
  }

  var acc: array<${VT}, ${UV}>;   // output channels (vec) lane, lane + ${L}, ... of query r
  var m = LOWEST;                 // running max of the scores
  var l = 0.0;                    // running sum of exp2(score - m)
  let kBase = b * Z.NK * Z.kTok + Z.kOff + h * ${DW}u;
  let vBase = b * Z.NK * Z.vTok + Z.vOff + h * ${DVW}u;
  for (var k0 = 0u; k0 < Z.NK; k0 += ${BK}u) {
    workgroupBarrier();   // the previous block is done with (and the query block staged)
    for (var i = lid; i < ${BK * DW}u; i += ${BQ * L}u) {
      let kj = k0 + i / ${DW}u;
      let v = kb[kBase + min(kj, Z.NK - 1u) * Z.kTok + i % ${DW}u];
      Ks[(i / ${DW}u) * ${DW + 1}u + i % ${DW}u] = ${ST}(select(${VT}(0.0), v, kj < Z.NK));
    }
    for (var i = lid; i < ${BK * DVW}u; i += ${BQ * L}u) {
      let kj = k0 + i / ${DVW}u;
      let v = vb[vBase + min(kj, Z.NK - 1u) * Z.vTok + i % ${DVW}u];
      Vs[i] = ${ST}(select(${VT}(0.0), v, kj < Z.NK));
    }
    workgroupBarrier();

    // scores of query r with keys lane, lane + ${L}, ... of the block
    for (var j = lane; j < ${BK}u; j += ${L}u) {
      var s = 0.0;
      for (var c = 0u; c < ${DW}u; c++) {
        s += ${dot(f(`Qs[r * ${DW + 1}u + c]`), f(`Ks[j * ${DW + 1}u + c]`))};
      }
      let kj = k0 + j;
      s = s * Z.SCALE + select(0.0, Z.BIAS, kj < Z.NB);   // base-2 logit
      Ss[r * ${BK + 1}u + j] = select(LOWEST, s, kj < Z.NK);
    }
    workgroupBarrier();

    // online softmax: raise the running max to the block's, rescale, add p * v
    var mt = m;
    for (var j = 0u; j < ${BK}u; j++) { mt = max(mt, Ss[r * ${BK + 1}u + j]); }
    let alpha = exp2(m - mt);
    l *= alpha;
    for (var u = 0u; u < ${UV}u; u++) { acc[u] *= alpha; }
    m = mt;
    for (var j = 0u; j < ${BK}u; j++) {
      let p = exp2(Ss[r * ${BK + 1}u + j] - m);
      l += p;
      for (var u = 0u; u < ${UV}u; u++) {
        let c = min(lane + u * ${L}u, ${DVW - 1}u);   // (past dv: computed, not stored)
        acc[u] += p * ${f(`Vs[j * ${DVW}u + c]`)};
      }
    }
  }

  let n = q0 + r;
  if (n < Z.NQ) {
    let inv = 1.0 / l;
    let oBase = (b * Z.NQ + n) * Z.oTok + h * ${DVW}u;
    for (var u = 0u; u < ${UV}u; u++) {
      let c = lane + u * ${L}u;
      if (c < ${DVW}u) { out[oBase + c] = acc[u] * inv; }
    }
  }
}
`;
});

/** Records the flash-tile kernel: out [B, Nq, H*dv] from q, k, v buffers as described by `p`. */
export function attentionFlashTile(ctx: GpuContext, p: FlashOperands, cfg: FlashTileConfig, q: Tensor, k: Tensor, v: Tensor, out: Tensor): void {
  const w = cfg.w;
  const qTiles = Math.ceil(p.nq / cfg.bq);
  const total = qTiles * p.batch * p.heads;
  const u = new Uint32Array(15);
  u.set([p.nq, p.nk, p.heads, qTiles, total, p.q.tokenStride / w, p.q.offset / w, p.k.tokenStride / w, p.k.offset / w,
    p.v.tokenStride / w, p.v.offset / w, p.outStride / w, p.logitBias?.keys ?? 0]);
  const f = new Float32Array(u.buffer);
  f[13] = (p.logitBias?.value ?? 0) * Math.LOG2E;
  f[14] = p.scale * Math.LOG2E;
  ctx.run({
    pipeline: ctx.pipeline('attention_flash_tile', flashWGSL(p.d, p.dv, cfg)),
    bindings: [q, k, v, out, ctx.uniform(u)],
    workgroups: grid1d(total).workgroups,
  });
}
