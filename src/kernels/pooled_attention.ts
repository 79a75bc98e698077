import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { attention } from './attention.js';
import { f32lit, grid1d } from './util.js';

/**
 * Attention to memories whose spatial keys and values are average-pooled 2x2 per frame, as the
 * cross-attention of EfficientTAM's `_1` / `_2` variants (EfficientRoPEAttention1/2 in the
 * reference's sam/transformer.py) does when there are several memory frames:
 *
 *   keys k [B, Nk, H*d] = F frames of an h x w grid (token f*h*w + y*w + x), then E extra tokens
 *   (the object pointers), which are neither pooled nor rotated.
 *
 *   pooled key (f, py, px) = mean of the keys at (2py, 2px), (2py, 2px+1), (2py+1, 2px), (2py+1, 2px+1)
 *                            of frame f, + keyBias on every channel            (EfficientRoPEAttention2)
 *   its logit              = q · pooled key * scale + logitBias                  (EfficientRoPEAttention1)
 *   the values are pooled the same way (without a bias); the E extra keys and values are used as
 *   they are. softmax over the F*(h/2)*(w/2) + E logits, weighted sum of the values.
 *
 * Each pooled key stands for 4 keys: the +2·ln 2 (= ln 4) of the official variants gives it the
 * softmax weight of four; variant 1 adds it to the logit, variant 2 to the key's channels (so the
 * logit gains 2·ln 2 · scale · Σq instead).
 *
 * Two kernels: `pool_memory_2x2` writes the pooled keys (and values) followed by the extra tokens
 * (a quarter of the spatial size), then `attention_logit_bias`, the online-softmax ("flash")
 * kernel of attention.ts with a constant added to the logits of the first Np keys. (Pooling while
 * staging keys in the attention kernel itself was tried: lavapipe took 10-30 s to compile each
 * such pipeline.) Without a logit bias (plain, or EfficientRoPEAttention2, whose bias is in the
 * pooled keys) the library's `attention` runs on the pooled copies instead.
 */

export interface PoolSpec {
  /** memory frames F, each a full h x w grid at the start of the keys */
  frames: number;
  /** grid height h and width w (even) */
  height: number;
  width: number;
  /** added to every channel of a pooled key (EfficientRoPEAttention2: 2·ln 2) */
  keyBias?: number;
  /** added to the logit of a pooled key (EfficientRoPEAttention1: 2·ln 2) */
  logitBias?: number;
}

export interface PooledAttentionOptions {
  /** multiplies q·k; default 1/sqrt(d) */
  scale?: number;
  /** pool the first frames*height*width keys/values 2x2 per frame; without it, plain attention */
  pool?: PoolSpec;
  /** tile sizes: BQ queries per workgroup, BK keys per staged tile (default as attention.ts) */
  config?: { bq: number; bk: number };
}

interface Params {
  batch: number; heads: number; nq: number; nk: number; d: number; dv: number; scale: number;
  /** the first `np` keys get `logitBias` on their logits */
  np: number; logitBias: number;
}

const WG_MEM_BYTES = 16384;

function defaultConfig(d: number, dv: number): { bq: number; bk: number } {
  let bk = 32;
  while (bk > 1 && bk * (d + dv) * 4 > WG_MEM_BYTES) bk /= 2;
  return { bq: 64, bk };
}

// ---------------------------------------------------------------- pooling

const POOL_WG = 64;

/**
 * [B, Nk, C] -> [B, F*(h/2)*(w/2) + E, C]: the first F*h*w tokens pooled 2x2 per frame (+ bias on
 * every channel), then the E remaining tokens copied. Pooling is per channel, so heads packed in
 * the channel axis need no special handling.
 */
const poolWGSL = (B: number, nk: number, C: number, frames: number, h: number, w: number, bias: number): string => {
  const v = C % 4 === 0 ? 4 : 1;
  const VT = v === 4 ? 'vec4f' : 'f32';
  const CW = C / v;
  const pq = (h / 2) * (w / 2), np = frames * pq, nsp = frames * h * w;
  const nout = np + (nk - nsp);
  const total = B * nout * CW;
  return /* wgsl */ `
// ---- kernel: pool_memory_2x2 (B ${B}, Nk ${nk}, C ${C}, ${frames} frames of ${h}x${w}) ----
@group(0) @binding(0) var<storage, read> x: array<${VT}>;
@group(0) @binding(1) var<storage, read_write> out: array<${VT}>;

@compute @workgroup_size(${POOL_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${POOL_WG}u + lid;   // over [B, Nout, C]
  if (i >= ${total}u) { return; }
  let c = i % ${CW}u;
  let j = (i / ${CW}u) % ${nout}u;
  let b = i / ${nout * CW}u;
  let xb = b * ${nk * CW}u + c;
  if (j < ${np}u) {
    // frame f, pooled (py, px): mean of the 2x2 block at (2py, 2px), summed in avg_pool2d's order
    let f = j / ${pq}u;
    let pp = j % ${pq}u;
    let t = f * ${h * w}u + (pp / ${w / 2}u) * ${2 * w}u + (pp % ${w / 2}u) * 2u;
    let a = xb + t * ${CW}u;
    let m = (((x[a] + x[a + ${CW}u]) + x[a + ${w * CW}u]) + x[a + ${(w + 1) * CW}u]) * 0.25;
    out[i] = m${bias !== 0 ? ` + ${VT}(${f32lit(bias)})` : ''};
  } else {
    out[i] = x[xb + (j - ${np}u + ${nsp}u) * ${CW}u];
  }
}
`;
};

/** Pools the first frames*h*w tokens of x [B, Nk, C] 2x2 per frame (+ bias), keeps the rest -> [B, Np + E, C]. */
export function poolMemory2x2(ctx: GpuContext, x: Tensor, frames: number, h: number, w: number, bias = 0): Tensor {
  const [B, nk, C] = x.shape as [number, number, number];
  const np = frames * (h / 2) * (w / 2), nsp = frames * h * w;
  const out = ctx.empty([B, np + nk - nsp, C]);
  if (out.size === 0) return out;
  ctx.run({
    pipeline: ctx.pipeline('pool_memory_2x2', poolWGSL(B, nk, C, frames, h, w, bias)),
    bindings: [x, out],
    workgroups: grid1d(Math.ceil(out.size / (C % 4 === 0 ? 4 : 1) / POOL_WG)).workgroups,
  });
  return out;
}

// ---------------------------------------------------------------- attention

const attentionBiasWGSL = (p: Params, cfg: { bq: number; bk: number }): string => {
  const { bq: BQ, bk: BK } = cfg;
  const w = p.d % 4 === 0 && p.dv % 4 === 0 ? 4 : 1;
  const VT = w === 4 ? 'vec4f' : 'f32';
  const DW = p.d / w, DVW = p.dv / w;
  const CK = (p.heads * p.d) / w, CV = (p.heads * p.dv) / w; // token strides
  const qTiles = Math.ceil(p.nq / BQ);
  const total = qTiles * p.batch * p.heads;
  const ragged = p.nk % BK !== 0;
  const u = (n: number): string => `${n}u`;
  const dotv = w === 4 ? 'dot(a, b)' : 'a * b';
  return /* wgsl */ `
// ---- kernel: attention_logit_bias (B ${p.batch}, H ${p.heads}, Nq ${p.nq}, Nk ${p.nk}, d ${p.d}, dv ${p.dv}, biased ${p.np}, BQ ${BQ}, BK ${BK}) ----
@group(0) @binding(0) var<storage, read> qb: array<${VT}>;
@group(0) @binding(1) var<storage, read> kb: array<${VT}>;
@group(0) @binding(2) var<storage, read> vb: array<${VT}>;
@group(0) @binding(3) var<storage, read_write> out: array<${VT}>;

const H = ${u(p.heads)};
const NQ = ${u(p.nq)};
const NK = ${u(p.nk)};
const NP = ${u(p.np)};      // keys whose logits get the bias
const DW = ${u(DW)};
const DVW = ${u(DVW)};
const CK = ${u(CK)};        // token strides of q, k and of v, out, in ${VT}s
const CV = ${u(CV)};
const BQ = ${u(BQ)};
const BK = ${u(BK)};
const QTILES = ${u(qTiles)};
const LOWEST = -3.4028234e38;

var<workgroup> ks: array<${VT}, ${BK * DW}>;    // [BK, d]
var<workgroup> vs: array<${VT}, ${BK * DVW}>;   // [BK, dv]

fn dotv(a: ${VT}, b: ${VT}) -> f32 { return ${dotv}; }

@compute @workgroup_size(${BQ})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * nwg.x + wid.x;
  if (g >= ${u(total)}) { return; }
  let qt = g % QTILES;
  let bh = g / QTILES;
  let h = bh % H;
  let b = bh / H;
  let n = qt * BQ + lid;
  let nc = min(n, NQ - 1u);

  // the query row in base-2 units: q * scale * log2(e)
  // loop bounds hidden from the compiler (nwg.z is 1): unrolled, lavapipe takes minutes to compile
  let dw = DW + nwg.z - 1u;
  let dvw = DVW + nwg.z - 1u;
  let bk = BK + nwg.z - 1u;
  var q: array<${VT}, ${DW}>;
  let qBase = (b * NQ + nc) * CK + h * DW;
  for (var i = 0u; i < dw; i++) { q[i] = qb[qBase + i] * ${f32lit(p.scale * Math.LOG2E)}; }

  var acc: array<${VT}, ${DVW}>;
  for (var i = 0u; i < dvw; i++) { acc[i] = ${VT}(0.0); }
  var m = LOWEST;
  var l = 0.0;
  var s: array<f32, ${BK}>;

  let kBase = b * NK * CK + h * DW;
  let vBase = b * NK * CV + h * DVW;
  let nk = NK + nwg.z - 1u;
  for (var k0 = 0u; k0 < nk; k0 += BK) {
    workgroupBarrier();
    for (var i = lid; i < BK * DW; i += BQ) {
      let j = k0 + i / DW;
      var val = ${VT}(0.0);
      if (j < NK) { val = kb[kBase + j * CK + i % DW]; }
      ks[i] = val;
    }
    for (var i = lid; i < BK * DVW; i += BQ) {
      let j = k0 + i / DVW;
      var val = ${VT}(0.0);
      if (j < NK) { val = vb[vBase + j * CV + i % DVW]; }
      vs[i] = val;
    }
    workgroupBarrier();

    var mt = m;
    for (var j = 0u; j < bk; j++) {
      var sj = 0.0;
      for (var i = 0u; i < dw; i++) { sj += dotv(q[i], ks[j * DW + i]); }${p.logitBias !== 0 && p.np > 0 ? `
      if (k0 + j < NP) { sj += ${f32lit(p.logitBias * Math.LOG2E)}; }` : ''}${ragged ? `
      if (k0 + j >= NK) { sj = LOWEST; }` : ''}
      s[j] = sj;
      mt = max(mt, sj);
    }
    let alpha = exp2(m - mt);
    m = mt;
    l *= alpha;
    for (var i = 0u; i < dvw; i++) { acc[i] *= alpha; }
    for (var j = 0u; j < bk; j++) {
      let pj = exp2(s[j] - m);
      l += pj;
      for (var i = 0u; i < dvw; i++) { acc[i] += pj * vs[j * DVW + i]; }
    }
  }

  if (n < NQ) {
    let inv = 1.0 / l;
    let oBase = (b * NQ + n) * CV + h * DVW;
    for (var i = 0u; i < dvw; i++) { out[oBase + i] = acc[i] * inv; }
  }
}
`;
};

/**
 * Multi-head attention with the first keys/values pooled 2x2 per memory frame (see above).
 * q [B, Nq, H*d], k [B, Nk, H*d], v [B, Nk, H*dv] -> [B, Nq, H*dv]
 */
export function pooledAttention(ctx: GpuContext, q: Tensor, k: Tensor, v: Tensor, numHeads: number,
  opts: PooledAttentionOptions = {}): Tensor {
  const s = (t: Tensor): string => `[${t.shape}]`;
  if (q.shape.length !== 3 || k.shape.length !== 3 || v.shape.length !== 3) {
    throw new Error(`pooledAttention: q, k, v must be [B, N, C], got ${s(q)}, ${s(k)}, ${s(v)}`);
  }
  const [batch, nq, cq] = q.shape as [number, number, number];
  const [bk, nk, ck] = k.shape as [number, number, number];
  const [bv, nv, cv] = v.shape as [number, number, number];
  if (bk !== batch || bv !== batch || nv !== nk || ck !== cq) {
    throw new Error(`pooledAttention: q ${s(q)}, k ${s(k)}, v ${s(v)} do not fit together`);
  }
  if (!Number.isInteger(numHeads) || numHeads < 1 || cq % numHeads !== 0 || cv % numHeads !== 0) {
    throw new Error(`pooledAttention: ${numHeads} heads do not divide the channels of q ${s(q)} and v ${s(v)}`);
  }
  if (nk < 1 || cq < 1 || cv < 1) throw new Error(`pooledAttention: empty k/v or channels: ${s(k)}, ${s(v)}`);
  const d = cq / numHeads, dv = cv / numHeads;
  let kk = k, vv = v, np = 0, logitBias = 0;
  const pool = opts.pool;
  if (pool) {
    const { frames, height, width } = pool;
    if (!(Number.isInteger(frames) && frames >= 0 && height > 0 && width > 0 && height % 2 === 0 && width % 2 === 0)) {
      throw new Error(`pooledAttention: cannot pool ${frames} frames of ${height}x${width} 2x2 (sizes must be even)`);
    }
    if (frames * height * width > nk) throw new Error(`pooledAttention: ${frames} frames of ${height}x${width} are more than the ${nk} keys`);
    kk = poolMemory2x2(ctx, k, frames, height, width, pool.keyBias ?? 0); // [B, Np + E, H*d]
    vv = poolMemory2x2(ctx, v, frames, height, width); // [B, Np + E, H*dv]
    np = frames * (height / 2) * (width / 2);
    logitBias = pool.logitBias ?? 0;
  }
  const nkv = kk.shape[1]!;
  if (nkv < 1) throw new Error('pooledAttention: no keys');
  let out: Tensor;
  if (logitBias === 0 || np === 0) {
    // no logit bias: the library's attention (EfficientRoPEAttention2: the key bias is in the pooled keys)
    out = attention(ctx, q, kk, vv, numHeads, { scale: opts.scale });
  } else {
    out = ctx.empty([batch, nq, cv]);
    if (batch > 0 && nq > 0) {
      const p: Params = { batch, heads: numHeads, nq, nk: nkv, d, dv, scale: opts.scale ?? 1 / Math.sqrt(d), np, logitBias };
      const cfg = opts.config ?? defaultConfig(d, dv);
      const total = Math.ceil(nq / cfg.bq) * batch * numHeads;
      ctx.run({
        pipeline: ctx.pipeline('attention_logit_bias', attentionBiasWGSL(p, cfg)),
        bindings: [q, kk, vv, out],
        workgroups: grid1d(total).workgroups,
      });
    }
  }
  if (kk !== k) kk.release();
  if (vv !== v) vv.release();
  return out;
}
