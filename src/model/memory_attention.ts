/**
 * EfficientTAM's memory attention: conditions the current frame's features on the memory bank
 * (spatial memories of earlier frames and object pointers) before the mask decoder.
 *
 *   curr [Nq, C] (+ 0.1 * curr_pos when pos_enc_at_input), Nq = g*g
 *     -> layers: x += self_attn(norm1(x))                  RoPE on q, k (one g x g grid)
 *                x += cross_attn_image(norm2(x), memory)   RoPE on q and on the spatial keys
 *                                                          (repeated per memory frame); keys are
 *                                                          memory + memory_pos, values memory,
 *                                                          both projected from memDim to C
 *                x += linear2(relu(linear1(norm3(x))))
 *     -> norm                                              [Nq, C]
 *
 *   memory [Nm, memDim] = F frames of g*g spatial tokens, then numObjPtrTokens object-pointer
 *   tokens (neither rotated nor pooled).
 *
 * The cross-attention kind (config `layer.cross_attention._target_`):
 * - RoPEAttention: full attention to all memory tokens;
 * - EfficientRoPEAttention1 / 2: with more than one memory frame, the spatial keys and values are
 *   average-pooled 2x2 per frame, with +2·ln 2 on the pooled logits (1) or on the pooled keys (2)
 *   (see kernels/pooled_attention.ts); with one frame, full attention.
 *
 * Reference: efficient_track_anything/modeling/memory_attention.py, sam/transformer.py,
 * position_encoding.py. The reference's tensors are sequence-first [N, B, C]; batch is 1 here (the
 * caller runs one object at a time), so [N, C].
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { attention } from '../kernels/attention.js';
import { add } from '../kernels/elementwise.js';
import { scaledAdd } from '../kernels/memory_ops.js';
import { pooledAttention, type PoolSpec } from '../kernels/pooled_attention.js';
import { applyRope, RopeTable } from '../kernels/rope.js';
import { Linear } from '../layers/linear.js';
import { join, type WeightSource } from '../layers/module.js';
import { LayerNorm } from '../layers/norm.js';
import type { AttentionConfig, MemoryAttentionConfig } from './config.js';

export type RoPEAttentionKind = 'RoPEAttention' | 'EfficientRoPEAttention1' | 'EfficientRoPEAttention2';

function attentionKind(cfg: AttentionConfig): RoPEAttentionKind {
  const name = (cfg._target_ ?? 'RoPEAttention').split('.').pop()!;
  if (name === 'RoPEAttention' || name === 'EfficientRoPEAttention1' || name === 'EfficientRoPEAttention2') return name;
  throw new Error(`MemoryAttention: unsupported attention '${cfg._target_}' (RoPEAttention, EfficientRoPEAttention1/2)`);
}

/** sam.transformer.RoPEAttention and its pooled variants (EfficientRoPEAttention1/2). */
export class RoPEAttention {
  private tables = new Map<number, RopeTable>();

  constructor(
    readonly ctx: GpuContext,
    readonly kind: RoPEAttentionKind,
    readonly qProj: Linear,
    readonly kProj: Linear,
    readonly vProj: Linear,
    readonly outProj: Linear,
    readonly numHeads: number,
    readonly ropeTheta: number,
    readonly ropeKRepeat: boolean,
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, cfg: AttentionConfig): RoPEAttention {
    const C = cfg.embedding_dim;
    const internal = C / (cfg.downsample_rate ?? 1);
    const kvIn = cfg.kv_in_dim ?? C;
    if (!Number.isInteger(internal) || internal % cfg.num_heads !== 0) throw new Error(`${name}: num_heads must divide the internal dim ${internal}`);
    return new RoPEAttention(
      ctx, attentionKind(cfg),
      Linear.load(ctx, w, join(name, 'q_proj'), C, internal),
      Linear.load(ctx, w, join(name, 'k_proj'), kvIn, internal),
      Linear.load(ctx, w, join(name, 'v_proj'), kvIn, internal),
      Linear.load(ctx, w, join(name, 'out_proj'), internal, C),
      cfg.num_heads, cfg.rope_theta ?? 10000, cfg.rope_k_repeat ?? false,
    );
  }

  get headDim(): number {
    return this.qProj.outDim / this.numHeads;
  }

  /** The rotary table of a side x side grid (computed and uploaded once per size). */
  private table(side: number): RopeTable {
    let t = this.tables.get(side);
    if (!t) {
      t = RopeTable.create(this.ctx, this.headDim, side, side, this.ropeTheta);
      this.tables.set(side, t);
    }
    return t;
  }

  /**
   * q [Nq, C], k, v [Nk, kvIn] -> residual + out_proj(attention) [Nq, C]. The last
   * `numKExcludeRope` keys are not rotated (nor pooled). Nq must be a square grid g x g.
   */
  forward(q: Tensor, k: Tensor, v: Tensor, residual: Tensor, numKExcludeRope = 0): Tensor {
    const ctx = this.ctx;
    const Nq = q.shape[0]!, Nk = k.shape[0]!;
    const side = Math.round(Math.sqrt(Nq));
    if (side * side !== Nq) throw new Error(`RoPEAttention: ${Nq} queries are not a square grid`);
    if (Nq !== Nk && !this.ropeKRepeat) throw new Error(`RoPEAttention: ${Nq} queries and ${Nk} keys need rope_k_repeat`);
    const numKRope = Nk - numKExcludeRope;
    if (numKRope < 0 || numKRope % Nq !== 0) {
      throw new Error(`RoPEAttention: ${numKRope} rotated keys are not whole ${side}x${side} frames`);
    }
    const C = this.qProj.outDim;
    const qp = this.qProj.forward(q); // [Nq, C]
    const kp = this.kProj.forward(k); // [Nk, C]
    const vp = this.vProj.forward(v); // [Nk, C]
    const rope = this.table(side);
    applyRope(ctx, qp, rope, { numHeads: this.numHeads });
    applyRope(ctx, kp, rope, { numHeads: this.numHeads, count: numKRope, repeat: this.ropeKRepeat });
    const q3 = qp.reshape([1, Nq, C]), k3 = kp.reshape([1, Nk, C]), v3 = vp.reshape([1, Nk, C]);
    let o: Tensor;
    const frames = numKRope / Nq;
    if (this.kind !== 'RoPEAttention' && this.ropeKRepeat && numKRope > Nq) {
      // more than one memory frame: pool each frame's keys and values 2x2
      const ln4 = 2 * Math.log(2);
      const pool: PoolSpec = {
        frames, height: side, width: side,
        ...(this.kind === 'EfficientRoPEAttention1' ? { logitBias: ln4 } : { keyBias: ln4 }),
      };
      o = pooledAttention(ctx, q3, k3, v3, this.numHeads, { pool });
    } else {
      o = attention(ctx, q3, k3, v3, this.numHeads);
    }
    qp.release();
    kp.release();
    vp.release();
    const out = this.outProj.forward(o.reshape([Nq, C]), { residual });
    o.release();
    return out;
  }
}

/** memory_attention.MemoryAttentionLayer */
class MemoryAttentionLayer {
  constructor(
    readonly ctx: GpuContext,
    readonly cfg: MemoryAttentionConfig['layer'],
    readonly selfAttn: RoPEAttention,
    readonly crossAttnImage: RoPEAttention,
    readonly linear1: Linear,
    readonly linear2: Linear,
    readonly norm1: LayerNorm,
    readonly norm2: LayerNorm,
    readonly norm3: LayerNorm,
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name: string, cfg: MemoryAttentionConfig['layer']): MemoryAttentionLayer {
    const C = cfg.d_model;
    if (cfg.activation !== 'relu' && cfg.activation !== 'gelu') throw new Error(`MemoryAttentionLayer: activation '${cfg.activation}' is not supported`);
    return new MemoryAttentionLayer(
      ctx, cfg,
      RoPEAttention.load(ctx, w, join(name, 'self_attn'), cfg.self_attention),
      RoPEAttention.load(ctx, w, join(name, 'cross_attn_image'), cfg.cross_attention),
      Linear.load(ctx, w, join(name, 'linear1'), C, cfg.dim_feedforward),
      Linear.load(ctx, w, join(name, 'linear2'), cfg.dim_feedforward, C),
      LayerNorm.load(ctx, w, join(name, 'norm1'), C),
      LayerNorm.load(ctx, w, join(name, 'norm2'), C),
      LayerNorm.load(ctx, w, join(name, 'norm3'), C),
    );
  }

  /**
   * tgt [Nq, C] -> [Nq, C]. `memoryKeys` is memory + pos when pos_enc_at_cross_attn_keys (made
   * once by the caller for all layers), else memory.
   */
  forward(tgt: Tensor, queryPos: Tensor, memory: Tensor, memoryKeys: Tensor, numKExcludeRope: number): Tensor {
    const ctx = this.ctx;
    // _forward_sa: tgt + self_attn(q = k = norm1(tgt) [+ query_pos], v = norm1(tgt))
    const n1 = this.norm1.forward(tgt);
    const qk = this.cfg.pos_enc_at_attn ? add(ctx, n1, queryPos) : n1;
    const t1 = this.selfAttn.forward(qk, qk, n1, tgt);
    if (qk !== n1) qk.release();
    n1.release();
    // _forward_ca: t1 + cross_attn_image(q = norm2(t1) [+ query_pos], k = memory [+ pos], v = memory)
    const n2 = this.norm2.forward(t1);
    const q = this.cfg.pos_enc_at_cross_attn_queries ? add(ctx, n2, queryPos) : n2;
    const t2 = this.crossAttnImage.forward(q, memoryKeys, memory, t1, numKExcludeRope);
    if (q !== n2) q.release();
    n2.release();
    t1.release();
    // MLP: t2 + linear2(act(linear1(norm3(t2))))
    const n3 = this.norm3.forward(t2);
    const h = this.linear1.forward(n3, { activation: this.cfg.activation as 'relu' | 'gelu' });
    n3.release();
    const out = this.linear2.forward(h, { residual: t2 });
    h.release();
    t2.release();
    return out;
  }
}

export interface MemoryAttentionInput {
  /** [Nq, C] the current frame's tokens (g*g, row-major over the grid) */
  curr: Tensor;
  /** [Nq, C] their position encoding */
  currPos: Tensor;
  /** [Nm, memDim] spatial memories of F frames (F*g*g tokens), then the object-pointer tokens */
  memory: Tensor;
  /** [Nm, memDim] */
  memoryPos: Tensor;
  /** object-pointer tokens at the end of memory (neither rotated nor pooled) */
  numObjPtrTokens: number;
}

/** memory_attention.MemoryAttention */
export class MemoryAttention {
  constructor(
    readonly ctx: GpuContext,
    readonly cfg: MemoryAttentionConfig,
    readonly layers: MemoryAttentionLayer[],
    readonly norm: LayerNorm,
  ) {}

  static load(ctx: GpuContext, w: WeightSource, name = 'memory_attention', cfg: MemoryAttentionConfig): MemoryAttention {
    const layers: MemoryAttentionLayer[] = [];
    for (let i = 0; i < cfg.num_layers; i++) layers.push(MemoryAttentionLayer.load(ctx, w, join(name, 'layers', i), cfg.layer));
    return new MemoryAttention(ctx, cfg, layers, LayerNorm.load(ctx, w, join(name, 'norm'), cfg.d_model));
  }

  /** The cross-attention kind of the layers. */
  get crossAttentionKind(): RoPEAttentionKind {
    return this.layers[0]?.crossAttnImage.kind ?? attentionKind(this.cfg.layer.cross_attention);
  }

  /** -> [Nq, C]. Records GPU work only; the inputs are not released. */
  forward(inp: MemoryAttentionInput): Tensor {
    const ctx = this.ctx;
    const { curr, currPos, memory, memoryPos, numObjPtrTokens } = inp;
    const C = this.cfg.d_model;
    const Nq = curr.shape[0]!, Nm = memory.shape[0]!;
    const memDim = this.layers[0]?.crossAttnImage.kProj.inDim ?? memory.shape[1]!;
    const chk = (t: Tensor, n: number, c: number, what: string) => {
      if (t.size !== n * c || t.shape[t.shape.length - 1] !== c) throw new Error(`MemoryAttention: ${what} must be [${n}, ${c}], got [${t.shape}]`);
    };
    chk(curr, Nq, C, 'curr');
    chk(currPos, Nq, C, 'currPos');
    chk(memory, Nm, memDim, 'memory');
    chk(memoryPos, Nm, memDim, 'memoryPos');
    if (!Number.isInteger(numObjPtrTokens) || numObjPtrTokens < 0 || numObjPtrTokens > Nm) {
      throw new Error(`MemoryAttention: numObjPtrTokens ${numObjPtrTokens} out of range for ${Nm} memory tokens`);
    }
    const cur = curr.reshape([Nq, C]), pos = currPos.reshape([Nq, C]);
    const mem = memory.reshape([Nm, memDim]);
    let x = this.cfg.pos_enc_at_input ? scaledAdd(ctx, cur, pos, 0.1) : cur;
    const memKeys = this.cfg.layer.pos_enc_at_cross_attn_keys ? add(ctx, mem, memoryPos.reshape([Nm, memDim])) : mem;
    for (const layer of this.layers) {
      const next = layer.forward(x, pos, mem, memKeys, numObjPtrTokens);
      if (x !== cur) x.release();
      x = next;
    }
    if (memKeys !== mem) memKeys.release();
    const out = this.norm.forward(x);
    if (x !== cur) x.release();
    return out;
  }
}
