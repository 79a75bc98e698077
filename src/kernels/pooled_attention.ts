import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { attention, type AttentionConfig, type AttentionOptions } from './attention.js';
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
 * Two steps: `pool_memory_2x2` writes the pooled keys (and values) followed by the extra tokens
 * (a quarter of the spatial size) into copies, then the library's `attention` runs on those, with
 * its `logitBias` option for the first Np keys (EfficientRoPEAttention1); with a key bias
 * (EfficientRoPEAttention2) the bias is already in the pooled keys. Pooling while staging keys in
 * a fused attention kernel was tried: lavapipe took 10-30 s to compile each such pipeline; and the
 * copies let `attention` choose its faster composed path (matmul, softmax, matmul) when the scores fit.
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
  /** as attention's: 'auto' (default), 'composed' or 'fused' */
  method?: AttentionOptions['method'];
  /** tile sizes of attention's fused kernel (forces it, as in attention) */
  config?: AttentionConfig;
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
  const [batch, , cq] = q.shape as [number, number, number];
  const [bk, nk, ck] = k.shape as [number, number, number];
  const [bv, nv, cv] = v.shape as [number, number, number];
  if (bk !== batch || bv !== batch || nv !== nk || ck !== cq) {
    throw new Error(`pooledAttention: q ${s(q)}, k ${s(k)}, v ${s(v)} do not fit together`);
  }
  if (!Number.isInteger(numHeads) || numHeads < 1 || cq % numHeads !== 0 || cv % numHeads !== 0) {
    throw new Error(`pooledAttention: ${numHeads} heads do not divide the channels of q ${s(q)} and v ${s(v)}`);
  }
  if (nk < 1 || cq < 1 || cv < 1) throw new Error(`pooledAttention: empty k/v or channels: ${s(k)}, ${s(v)}`);
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
  // the E extra keys after the Np pooled ones get no logit bias
  const out = attention(ctx, q, kk, vv, numHeads, {
    scale: opts.scale, method: opts.method, config: opts.config, logitBias: { keys: np, value: logitBias },
  }); // [B, Nq, H*dv]
  if (kk !== k) kk.release();
  if (vv !== v) vv.release();
  return out;
}
