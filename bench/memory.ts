/**
 * Memory-attention benchmark: one `MemoryAttention.forward` (one object) on synthetic weights and
 * inputs, for the three cross-attention kinds, at the tiny golden size (g = 8) and at the
 * EfficientTAM-Ti 512x512 size (g = 32, 4 layers, C 256, memDim 64) with 7 memory frames and
 * 16 object pointers (4 tokens each), the most the official tracker attends to.
 *
 * Run: npx tsx bench/memory.ts [--tiny-only]
 */
import { GpuContext } from '../src/gpu/context.js';
import type { Tensor } from '../src/gpu/tensor.js';
import { numel } from '../src/gpu/tensor.js';
import type { WeightSource } from '../src/layers/module.js';
import { preset, type MemoryAttentionConfig } from '../src/model/config.js';
import { MemoryAttention, type RoPEAttentionKind } from '../src/model/memory_attention.js';
import { printTable, timeGpu, type Row } from './common.js';

const rand = (n: number, seed: number, scale: number): Float32Array => {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
};

/** Random weights of the requested shapes (norm weights near 1). */
function syntheticWeights(ctx: GpuContext): WeightSource {
  let seed = 1;
  return {
    tensor(name: string, shape: readonly number[]): Tensor {
      const n = numel(shape);
      const fan = shape.length === 2 ? shape[1]! : 1;
      const data = rand(n, seed++, shape.length === 2 ? 1 / Math.sqrt(fan) : 0.1);
      if (/norm\d?\.weight$/.test(name)) for (let i = 0; i < n; i++) data[i] = 1 + data[i]!;
      return ctx.upload(data, shape);
    },
  };
}

function withKind(cfg: MemoryAttentionConfig, kind: RoPEAttentionKind): MemoryAttentionConfig {
  const ca = { ...cfg.layer.cross_attention, _target_: `efficient_track_anything.modeling.sam.transformer.${kind}` };
  return { ...cfg, layer: { ...cfg.layer, cross_attention: ca } };
}

async function main(): Promise<void> {
  const tinyOnly = process.argv.includes('--tiny-only');
  const ctx = await GpuContext.create();
  const rows: Row[] = [];
  const tiny: MemoryAttentionConfig = {
    d_model: 64, pos_enc_at_input: true, num_layers: 2,
    layer: {
      activation: 'relu', dim_feedforward: 128, pos_enc_at_attn: false, d_model: 64,
      pos_enc_at_cross_attn_keys: true, pos_enc_at_cross_attn_queries: false,
      self_attention: { rope_theta: 10000, feat_sizes: [8, 8], embedding_dim: 64, num_heads: 1 },
      cross_attention: { rope_theta: 10000, feat_sizes: [8, 8], rope_k_repeat: true, embedding_dim: 64, num_heads: 1, kv_in_dim: 16 },
    },
  };
  const sizes: { name: string; cfg: MemoryAttentionConfig; g: number; frames: number[]; ptrs: number }[] = [
    { name: 'tiny (g 8, C 64, 2 layers)', cfg: tiny, g: 8, frames: [1, 7], ptrs: 4 },
  ];
  if (!tinyOnly) {
    sizes.push({ name: 'Ti 512 (g 32, C 256, 4 layers)', cfg: preset('efficienttam_ti_512x512').memory_attention, g: 32, frames: [7], ptrs: 16 * 4 });
  }
  for (const s of sizes) {
    const C = s.cfg.d_model, memDim = s.cfg.layer.cross_attention.kv_in_dim!;
    for (const kind of ['RoPEAttention', 'EfficientRoPEAttention1', 'EfficientRoPEAttention2'] as const) {
      const ma = MemoryAttention.load(ctx, syntheticWeights(ctx), 'memory_attention', withKind(s.cfg, kind));
      for (const F of s.frames) {
        const Nq = s.g * s.g, Nm = F * Nq + s.ptrs;
        const curr = ctx.upload(rand(Nq * C, 5, 1), [Nq, C]);
        const currPos = ctx.upload(rand(Nq * C, 6, 1), [Nq, C]);
        const memory = ctx.upload(rand(Nm * memDim, 7, 1), [Nm, memDim]);
        const memoryPos = ctx.upload(rand(Nm * memDim, 8, 1), [Nm, memDim]);
        const big = s.g > 8;
        const ms = await timeGpu(ctx, () => {
          ma.forward({ curr, currPos, memory, memoryPos, numObjPtrTokens: s.ptrs }).release();
        }, big ? 1 : 5, 1);
        rows.push({ size: s.name, kind, 'memory tokens': `${F} x ${Nq} + ${s.ptrs} = ${Nm}`, ms });
        console.error(`${s.name} ${kind} ${F} frames: ${ms.toFixed(0)} ms`);
        for (const t of [curr, currPos, memory, memoryPos]) t.release();
      }
    }
  }
  printTable(rows);
  ctx.destroy();
}

void main();
