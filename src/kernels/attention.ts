import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { attentionComposed, composedFits, type ComposedParams, type LogitBias } from './attention_composed.js';
import { attentionFlashTile, flashTileConfig, type FlashOperands } from './attention_flash.js';
import { bucket4, choose, randomValues, softwareDefaults, type KernelFamily } from './choice.js';
import { ROUND16_WGSL } from './matmul.js';
import { f32lit, grid1d } from './util.js';

export type { LogitBias };

/**
 * Scaled dot-product attention, softmax(q kᵀ · scale) v, by one of the candidates of the attention
 * family (ATTENTION below; the context's kernel table picks per adapter and shape class, see
 * choice.ts):
 *   'composed'    gather heads, matmul, softmax, matmul (attention_composed.ts): the fastest on
 *                 lavapipe while one head's scores fit its budget;
 *   'flash-row'   this file's kernel, below, shaped for lavapipe;
 *   'flash-tile'  the GPU-shaped flash attention of attention_flash.ts.
 * With f16 operands (precision 'f16') q, k and v are rounded to f16; scores, softmax and sums are f32.
 *
 * 'flash-row' is fused in the flash-attention way: the Nq × Nk score matrix is never stored.
 * A workgroup takes a tile of BQ queries of one (batch, head),
 * one query per invocation, with the query row and the output accumulator held by the invocation
 * (named variables in unrolled code, or private arrays with loops; see AttentionConfig.unroll).
 * Keys and values stream through workgroup memory BK at a time (zero-padded past Nk). An invocation
 * takes the tile's keys 4 at a time: it computes their 4 scores, raises its running max if needed
 * (rescaling the accumulator and the running sum by exp(old max - new max)), then adds
 * exp(score - max) · v for each ("online softmax"). Keys past Nk get the score -FLT_MAX.
 *
 * Heads are packed in the channel axis the way PyTorch's reshape(B, N, H, d) lays them out: head h
 * of a token is channels [h*d, (h+1)*d). The packed entry point reads q, k and v of the ViT's qkv
 * Linear output in place, whose channels per token are (3, H, d). Both are the same WGSL generator
 * with different token strides and channel offsets.
 *
 * Scores are computed in base 2: q is multiplied by scale·log2(e) when loaded, and exp2 is used.
 *
 * Optionally (AttentionOptions.logitBias) a constant is added to the logits of the first keys
 * before the softmax; EfficientTAM's EfficientRoPEAttention1 does so for its pooled memory keys
 * (see pooled_attention.ts). Both paths support it.
 */

export interface AttentionConfig {
  /** queries per workgroup (= workgroup size) */
  bq: number;
  /** keys per tile staged in workgroup memory */
  bk: number;
  /** q and the accumulator in named variables with the channel loops unrolled (else private arrays and loops) */
  unroll?: boolean;
}

interface AttentionParams extends FlashOperands {
  /** q, k and v rounded to f16 (precision 'f16') */
  half: boolean;
}

/** Keys processed together in the inner loop (one max update per group); bk must be a multiple. */
const KEY_GROUP = 4;

/** Workgroup memory budget: browsers guarantee 16 KiB. */
const WG_MEM_BYTES = 16384;

/**
 * Tile sizes for head dims d, dv, tuned on lavapipe at N=1024, d=64 (ms): bq x bk = 64x32 unrolled 532,
 * 32x32 unrolled 565; looped: 64x32 884, 32x32 903, 128x32 1026, 64x16 1996.
 */
export function defaultAttentionConfig(d: number, dv: number): AttentionConfig {
  const bq = 64;
  let bk = 32;
  while (bk > KEY_GROUP && bk * (d + dv) * 4 > WG_MEM_BYTES) bk /= 2;
  // Unrolled is ~1.6x faster on lavapipe at d=64 but its LLVM compile takes 20-60 s (vs ~1 s).
  // The fused kernel only serves shapes whose scores are too large for the composed path (see
  // attention_composed.ts), so the looped form, quick to compile, is the default; small heads
  // (d + dv <= 32) unroll cheaply.
  return { bq, bk, unroll: d + dv <= 32 };
}

const attentionWGSL = (p: AttentionParams, cfg: AttentionConfig): string => {
  const { bq: BQ, bk: BK } = cfg;
  // vec4 loads when every offset and stride is a multiple of 4 floats
  const w = [p.d, p.dv, p.q.tokenStride, p.q.offset, p.k.tokenStride, p.k.offset, p.v.tokenStride, p.v.offset, p.outStride]
    .every((s) => s % 4 === 0) ? 4 : 1;
  const VT = w === 4 ? 'vec4f' : 'f32';
  const DW = p.d / w, DVW = p.dv / w;
  const qTiles = Math.ceil(p.nq / BQ);
  const total = qTiles * p.batch * p.heads;
  const u = (n: number): string => `${n}u`;
  const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
  const dot = (a: string, b: string): string => (w === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`);
  // Unrolled: the query row and the accumulator are named variables q0.., acc0.. (a first version
  // with private arrays and constant-bound loops took lavapipe's LLVM minutes to compile). Looped:
  // private arrays, with loop bounds the compiler cannot see so that it does not unroll them.
  const lines = (n: number, f: (i: number) => string, indent: string): string => range(n).map((i) => indent + f(i)).join('\n');
  const G = KEY_GROUP;
  const U = cfg.unroll ?? false;
  const SCALE = f32lit(p.scale * Math.LOG2E);
  const score = (g: number): string =>
    range(DW).map((i) => dot(`q${i}`, `ks[kq + ${u(g * DW + i)}]`)).join(' + ');
  // the logit bias, in base 2 like the scores, on keys k0 + j + gi < NB (no text without a bias)
  // precision 'f16': operands rounded to f16 as they are read (round16 of matmul.ts)
  const rd = (x: string): string => (p.half ? (w === 4 ? `round16v(${x})` : `round16(${x})`) : x);
  const bias = p.logitBias;
  const biasLines = bias
    ? lines(G, (gi) => `if (k0 + j + ${u(gi)} < NB) { s${gi} += ${f32lit(bias.value * Math.LOG2E)}; }`, '      ') + '\n'
    : '';
  return /* wgsl */ `${p.half ? `${ROUND16_WGSL}
fn round16v(x: vec4f) -> vec4f { return vec4f(round16(x.x), round16(x.y), round16(x.z), round16(x.w)); }` : ''}
// ---- kernel: attention (B ${p.batch}, H ${p.heads}, Nq ${p.nq}, Nk ${p.nk}, d ${p.d}, dv ${p.dv}, BQ ${BQ}, BK ${BK}${bias ? `, logit bias ${f32lit(bias.value)} on the first ${bias.keys} keys` : ''}) ----
@group(0) @binding(0) var<storage, read> qb: array<${VT}>;
@group(0) @binding(1) var<storage, read> kb: array<${VT}>;
@group(0) @binding(2) var<storage, read> vb: array<${VT}>;
@group(0) @binding(3) var<storage, read_write> out: array<${VT}>;

const H = ${u(p.heads)};
const NQ = ${u(p.nq)};
const NK = ${u(p.nk)};
const DW = ${u(DW)};     // head dim of q, k in ${VT}s
const DVW = ${u(DVW)};   // head dim of v in ${VT}s
const BQ = ${u(BQ)};
const BK = ${u(BK)};
const QTILES = ${u(qTiles)};${bias ? `
const NB = ${u(bias.keys)};     // keys whose logits get the bias` : ''}
const LOWEST = -3.4028234e38;
// strides and offsets in ${VT}s
const Q_TOK = ${u(p.q.tokenStride / w)}; const Q_OFF = ${u(p.q.offset / w)};
const K_TOK = ${u(p.k.tokenStride / w)}; const K_OFF = ${u(p.k.offset / w)};
const V_TOK = ${u(p.v.tokenStride / w)}; const V_OFF = ${u(p.v.offset / w)};
const O_TOK = ${u(p.outStride / w)};

var<workgroup> ks: array<${VT}, ${BK * DW}>;    // [BK, d]
var<workgroup> vs: array<${VT}, ${BK * DVW}>;   // [BK, dv]

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
  let nc = min(n, NQ - 1u);   // invocations past the end compute a duplicate row and do not store it

  // this invocation's query row, pre-scaled by scale * log2(e)
  let qBase = (b * NQ + nc) * Q_TOK + Q_OFF + h * DW;
${U ? lines(DW, (i) => `let q${i} = ${rd(`qb[qBase + ${u(i)}]`)} * ${SCALE};`, '  ') : `  var q: array<${VT}, ${DW}>;
  var acc: array<${VT}, ${DVW}>;
  // loop bounds hidden from the compiler (nwg.z is 1) so that it keeps these loops as loops
  let dw = DW + nwg.z - 1u;
  let dvw = DVW + nwg.z - 1u;
  for (var i = 0u; i < dw; i++) { q[i] = ${rd('qb[qBase + i]')} * ${SCALE}; }
  for (var i = 0u; i < dvw; i++) { acc[i] = ${VT}(0.0); }`}
${U ? lines(DVW, (i) => `var acc${i} = ${VT}(0.0);`, '  ') : ''}
  var m = LOWEST;   // running max of the base-2 scores
  var l = 0.0;      // running sum of exp2(score - m)

  let kBase = b * NK * K_TOK + K_OFF + h * DW;
  let vBase = b * NK * V_TOK + V_OFF + h * DVW;
  for (var k0 = 0u; k0 < NK; k0 += BK) {
    // stage keys and values k0 .. k0+BK (zeros past the end)
    workgroupBarrier();
    for (var i = lid; i < BK * DW; i += BQ) {
      let j = k0 + i / DW;
      var kv = ${VT}(0.0);
      if (j < NK) { kv = ${rd('kb[kBase + j * K_TOK + i % DW]')}; }
      ks[i] = kv;
    }
    for (var i = lid; i < BK * DVW; i += BQ) {
      let j = k0 + i / DVW;
      var vv = ${VT}(0.0);
      if (j < NK) { vv = ${rd('vb[vBase + j * V_TOK + i % DVW]')}; }
      vs[i] = vv;
    }
    workgroupBarrier();

    // keys of this tile, ${G} at a time: their scores, the running max, the weighted values
    let kn = min(BK, NK - k0);
    for (var j = 0u; j < kn; j += ${u(G)}) {
      let kq = j * DW;
${U ? lines(G, (gi) => `var s${gi} = ${score(gi)};`, '      ') : `${lines(G, (gi) => `var s${gi} = 0.0;`, '      ')}
      for (var i = 0u; i < dw; i++) {
        let qi = q[i];
${lines(G, (gi) => `s${gi} += ${dot('qi', `ks[kq + ${u(gi * DW)} + i]`)};`, '        ')}
      }`}
${biasLines}${lines(G - 1, (gi) => `if (j + ${u(gi + 1)} >= kn) { s${gi + 1} = LOWEST; }`, '      ')}
      let mt = ${range(G).reduce((e, gi) => `max(${e}, s${gi})`, 'm')};
      if (mt > m) {
        // rescale what has been accumulated to the new max
        let alpha = exp2(m - mt);
        l *= alpha;
${U ? lines(DVW, (i) => `acc${i} *= alpha;`, '        ') : '        for (var i = 0u; i < dvw; i++) { acc[i] *= alpha; }'}
        m = mt;
      }
${lines(G, (gi) => `let p${gi} = exp2(s${gi} - m);`, '      ')}
      l += ${range(G).map((gi) => `p${gi}`).join(' + ')};
      let kv = j * DVW;
${U ? lines(DVW, (i) => `acc${i} += ${range(G).map((gi) => `p${gi} * vs[kv + ${u(gi * DVW + i)}]`).join(' + ')};`, '      ')
  : `      for (var i = 0u; i < dvw; i++) {
        acc[i] += ${range(G).map((gi) => `p${gi} * vs[kv + ${u(gi * DVW)} + i]`).join(' + ')};
      }`}
    }
  }

  if (n < NQ) {
    let inv = 1.0 / l;
    let oBase = (b * NQ + n) * O_TOK + h * DVW;
${U ? lines(DVW, (i) => `out[oBase + ${u(i)}] = acc${i} * inv;`, '    ') : '    for (var i = 0u; i < dvw; i++) { out[oBase + i] = acc[i] * inv; }'}
  }
}
`;
};

function runFlashRow(ctx: GpuContext, p: AttentionParams, bindings: Tensor[], out: Tensor, cfg: AttentionConfig): void {
  if (cfg.bk < KEY_GROUP || cfg.bk % KEY_GROUP !== 0 || cfg.bq < 1) {
    throw new Error(`attention: bad tile config bq ${cfg.bq}, bk ${cfg.bk} (bk must be a multiple of ${KEY_GROUP})`);
  }
  const total = Math.ceil(p.nq / cfg.bq) * p.batch * p.heads;
  ctx.run({
    pipeline: ctx.pipeline('attention', attentionWGSL(p, cfg)),
    bindings: [...bindings, out],
    workgroups: grid1d(total).workgroups,
  });
}

// ------------------------------------------------------------------------------------------------
// the family
// ------------------------------------------------------------------------------------------------

/** One attention call as the kernel choice sees it. */
export interface AttentionCall extends Pick<ComposedParams, 'batch' | 'heads' | 'nq' | 'nk' | 'd' | 'dv'> {
  /** q, k, v read in place from a packed qkv [B, N, (3, H, d)] (self-attention of the ViT) */
  packed: boolean;
  /** a logit bias on some keys */
  bias: boolean;
  /** f16 operands */
  half: boolean;
}

/** The operands of a call on separate q [B, Nq, H*d], k, v (or a packed qkv). */
function paramsOf(c: AttentionCall): AttentionParams {
  const cq = c.heads * c.d, cv = c.heads * c.dv;
  const p: AttentionParams = {
    batch: c.batch, heads: c.heads, nq: c.nq, nk: c.nk, d: c.d, dv: c.dv, scale: 1 / Math.sqrt(c.d), half: c.half,
    q: { tokenStride: cq, offset: 0 }, k: { tokenStride: cq, offset: 0 }, v: { tokenStride: cv, offset: 0 }, outStride: cv,
    logitBias: c.bias ? { keys: Math.ceil(c.nk / 2), value: 2 * Math.LN2 } : undefined,
  };
  if (c.packed) {
    p.q = { tokenStride: 3 * cq, offset: 0 };
    p.k = { tokenStride: 3 * cq, offset: cq };
    p.v = { tokenStride: 3 * cq, offset: 2 * cq };
  }
  return p;
}

export const ATTENTION: KernelFamily<AttentionCall> = {
  op: 'attention',
  candidates: ['composed', 'flash-row', 'flash-tile'],
  eligible: (ctx, c) => {
    const out: string[] = [];
    if (composedFits(ctx, c.nq, c.nk) && (!c.half || ctx.hasF16)) out.push('composed');
    out.push('flash-row');
    if (flashTileConfig(ctx, paramsOf(c), c.half)) out.push('flash-tile');
    return out;
  },
  classOf: (c) => `d${c.d}${c.dv !== c.d ? ` dv${c.dv}` : ''}${c.half ? ' h' : ''} q${bucket4(c.nq)} k${bucket4(c.nk)} bh${bucket4(c.batch * c.heads)}`,
  // lavapipe: composed while the scores fit (several times faster there), else the fused kernel
  fallback: (ctx, c) => {
    if (softwareDefaults(ctx)) return composedFits(ctx, c.nq, c.nk) ? 'composed' : 'flash-row';
    return flashTileConfig(ctx, paramsOf(c), c.half) ? 'flash-tile' : 'flash-row';
  },
  flops: (c) => 2 * c.batch * c.heads * c.nq * c.nk * (c.d + c.dv),
  instance: (ctx, c) => {
    const p = paramsOf(c);
    const cq = c.heads * c.d, cv = c.heads * c.dv;
    const ins = c.packed
      ? [ctx.upload(randomValues(c.batch * c.nq * 3 * cq, 1), [c.batch, c.nq, 3 * cq])]
      : [ctx.upload(randomValues(c.batch * c.nq * cq, 1), [c.batch, c.nq, cq]), ctx.upload(randomValues(c.batch * c.nk * cq, 2), [c.batch, c.nk, cq]),
        ctx.upload(randomValues(c.batch * c.nk * cv, 3), [c.batch, c.nk, cv])];
    const [q, k, v] = c.packed ? [ins[0]!, ins[0]!, ins[0]!] : ins as [Tensor, Tensor, Tensor];
    const out = ctx.empty([c.batch, c.nq, cv]);
    return {
      run: (cand) => runAttention(ctx, p, cand, q, k, v, out, undefined),
      release: () => { for (const t of [...ins, out]) t.release(); },
    };
  },
};

function runAttention(ctx: GpuContext, p: AttentionParams, candidate: string, q: Tensor, k: Tensor, v: Tensor, out: Tensor,
  config: AttentionConfig | undefined): void {
  if (candidate === 'composed') {
    attentionComposed(ctx, p, { t: q, ...p.q }, { t: k, ...p.k }, { t: v, ...p.v }, out);
  } else if (candidate === 'flash-tile') {
    const cfg = flashTileConfig(ctx, p, p.half);
    if (!cfg) throw new Error(`attention: the flash-tile kernel does not fit d=${p.d}, dv=${p.dv} on this device`);
    attentionFlashTile(ctx, p, cfg, q, k, v, out);
  } else {
    runFlashRow(ctx, p, [q, k, v], out, config ?? defaultAttentionConfig(p.d, p.dv));
  }
}

/** The candidate for this call: forced by the options, else the context's choice. */
function candidateFor(ctx: GpuContext, p: AttentionParams, packed: boolean, opts: AttentionOptions): string {
  const method = opts.method ?? 'auto';
  if (method === 'composed' && !composedFits(ctx, p.nq, p.nk)) {
    throw new Error(`attention: the ${p.nq}x${p.nk} scores of one head do not fit the composed path's budget`);
  }
  const forced = opts.kernel ?? (method === 'composed' ? 'composed' : method === 'fused' || opts.config ? 'flash-row' : undefined);
  return choose(ctx, ATTENTION, {
    batch: p.batch, heads: p.heads, nq: p.nq, nk: p.nk, d: p.d, dv: p.dv, packed, bias: !!p.logitBias, half: p.half,
  }, forced);
}

export interface AttentionOptions {
  /** multiplies q·k; default 1/sqrt(d) */
  scale?: number;
  /**
   * 'composed' (matmul, softmax, matmul; see attention_composed.ts), 'fused' (this file's
   * flash-style kernel, 'flash-row'), or 'auto' (default): the context's kernel choice.
   */
  method?: 'auto' | 'composed' | 'fused';
  /** run this candidate of the attention family (tests, benchmarks); overrides `method` */
  kernel?: string;
  /** tile sizes of the 'flash-row' kernel (for benchmarks); default defaultAttentionConfig(d, dv) */
  config?: AttentionConfig;
  /**
   * add `value` to the logits q·k·scale of the first `keys` keys (of every query and head) before
   * the softmax (EfficientRoPEAttention1: 2·ln 2 on its pooled memory keys); 0 <= keys <= Nk;
   * default none
   */
  logitBias?: LogitBias;
}

/** Checks opts.logitBias; a bias on no keys or of 0 is none (the kernels without it). */
function logitBiasOf(opts: AttentionOptions, nk: number, fn: string): LogitBias | undefined {
  const b = opts.logitBias;
  if (!b) return undefined;
  if (!(Number.isInteger(b.keys) && b.keys >= 0 && b.keys <= nk && Number.isFinite(b.value))) {
    throw new Error(`${fn}: bad logitBias (keys ${b.keys} of ${nk}, value ${b.value})`);
  }
  return b.keys > 0 && b.value !== 0 ? { keys: b.keys, value: b.value } : undefined;
}

/**
 * Multi-head scaled dot-product attention, heads packed in channels (as reshape(B, N, H, d)).
 * q: [B, Nq, H*d], k: [B, Nk, H*d], v: [B, Nk, H*dv] -> [B, Nq, H*dv]
 */
export function attention(ctx: GpuContext, q: Tensor, k: Tensor, v: Tensor, numHeads: number, opts: AttentionOptions = {}): Tensor {
  const s = (t: Tensor): string => `[${t.shape}]`;
  if (q.shape.length !== 3 || k.shape.length !== 3 || v.shape.length !== 3) {
    throw new Error(`attention: q, k, v must be [B, N, C], got ${s(q)}, ${s(k)}, ${s(v)}`);
  }
  const [batch, nq, cq] = q.shape as [number, number, number];
  const [bk, nk, ck] = k.shape as [number, number, number];
  const [bv, nv, cv] = v.shape as [number, number, number];
  if (bk !== batch || bv !== batch) throw new Error(`attention: batch sizes differ: q ${s(q)}, k ${s(k)}, v ${s(v)}`);
  if (nv !== nk) throw new Error(`attention: k ${s(k)} and v ${s(v)} have different numbers of tokens`);
  if (ck !== cq) throw new Error(`attention: q ${s(q)} and k ${s(k)} have different channel counts`);
  if (!Number.isInteger(numHeads) || numHeads < 1 || cq % numHeads !== 0 || cv % numHeads !== 0) {
    throw new Error(`attention: ${numHeads} heads do not divide the channels of q ${s(q)} and v ${s(v)}`);
  }
  if (nk < 1 || cq < 1 || cv < 1) throw new Error(`attention: empty k/v or channels: q ${s(q)}, k ${s(k)}, v ${s(v)}`);
  const d = cq / numHeads, dv = cv / numHeads;
  const out = ctx.empty([batch, nq, cv]);
  if (batch === 0 || nq === 0) return out;
  const p: AttentionParams = {
    batch, heads: numHeads, nq, nk, d, dv, scale: opts.scale ?? 1 / Math.sqrt(d),
    q: { tokenStride: cq, offset: 0 },
    k: { tokenStride: ck, offset: 0 },
    v: { tokenStride: cv, offset: 0 },
    outStride: cv,
    logitBias: logitBiasOf(opts, nk, 'attention'),
    half: ctx.kernels.f16.attention,
  };
  runAttention(ctx, p, candidateFor(ctx, p, false, opts), q, k, v, out, opts.config);
  return out;
}

/**
 * Self-attention reading q, k, v in place from the ViT's qkv Linear output, whose channels per
 * token are (3, H, d) (what reshape(B, N, 3, H, d) unpacks).
 * qkv: [B, N, 3*H*d] -> [B, N, H*d]
 */
export function attentionPacked(ctx: GpuContext, qkv: Tensor, numHeads: number, opts: AttentionOptions = {}): Tensor {
  if (qkv.shape.length !== 3) throw new Error(`attentionPacked: qkv must be [B, N, 3*H*d], got [${qkv.shape}]`);
  const [batch, n, c3] = qkv.shape as [number, number, number];
  if (!Number.isInteger(numHeads) || numHeads < 1 || c3 % (3 * numHeads) !== 0 || c3 === 0) {
    throw new Error(`attentionPacked: [${qkv.shape}] is not [B, N, 3*H*d] for ${numHeads} heads`);
  }
  if (n < 1) throw new Error(`attentionPacked: no tokens in [${qkv.shape}]`);
  const c = c3 / 3, d = c / numHeads;
  const out = ctx.empty([batch, n, c]);
  if (batch === 0) return out;
  const p: AttentionParams = {
    batch, heads: numHeads, nq: n, nk: n, d, dv: d, scale: opts.scale ?? 1 / Math.sqrt(d),
    q: { tokenStride: c3, offset: 0 },
    k: { tokenStride: c3, offset: c },
    v: { tokenStride: c3, offset: 2 * c },
    outStride: c,
    logitBias: logitBiasOf(opts, n, 'attentionPacked'),
    half: ctx.kernels.f16.attention,
  };
  runAttention(ctx, p, candidateFor(ctx, p, true, opts), qkv, qkv, qkv, out, opts.config);
  return out;
}

/**
 * Attention with separate queries and keys/values read in place from a packed qkv Linear output
 * (channels per token (3, H, d), the q part unused): Hiera's Q-pooling blocks pool the queries
 * (maxPool2x2 of the q channels) and attend with the unpooled k and v of the same qkv.
 * q: [B, Nq, H*d], qkv: [B, Nk, 3*H*d] -> [B, Nq, H*d]
 */
export function attentionPackedKV(ctx: GpuContext, q: Tensor, qkv: Tensor, numHeads: number, opts: AttentionOptions = {}): Tensor {
  if (q.shape.length !== 3 || qkv.shape.length !== 3) {
    throw new Error(`attentionPackedKV: q must be [B, Nq, H*d] and qkv [B, Nk, 3*H*d], got [${q.shape}], [${qkv.shape}]`);
  }
  const [batch, nq, c] = q.shape as [number, number, number];
  const [bk, nk, c3] = qkv.shape as [number, number, number];
  if (bk !== batch || c3 !== 3 * c) throw new Error(`attentionPackedKV: qkv [${qkv.shape}] does not go with q [${q.shape}]`);
  if (!Number.isInteger(numHeads) || numHeads < 1 || c % numHeads !== 0 || nk < 1) {
    throw new Error(`attentionPackedKV: ${numHeads} heads do not divide q [${q.shape}] (or no keys)`);
  }
  const d = c / numHeads;
  const out = ctx.empty([batch, nq, c]);
  if (batch === 0 || nq === 0) return out;
  const p: AttentionParams = {
    batch, heads: numHeads, nq, nk, d, dv: d, scale: opts.scale ?? 1 / Math.sqrt(d),
    q: { tokenStride: c, offset: 0 },
    k: { tokenStride: c3, offset: c },
    v: { tokenStride: c3, offset: 2 * c },
    outStride: c,
    logitBias: logitBiasOf(opts, nk, 'attentionPackedKV'),
    half: ctx.kernels.f16.attention,
  };
  // the kernel is chosen as for separate operands of these sizes (the strides do not change the work)
  runAttention(ctx, p, candidateFor(ctx, p, false, opts), q, qkv, qkv, out, opts.config);
  return out;
}
