/**
 * Attention benchmark: the fused (flash-style) attention kernel at the ViT's sizes, on the GPU and,
 * in the same run, a plain JS reference on the CPU, printed as a markdown table.
 *
 * Run: npx tsx bench/attention.ts [--no-cpu] [--no-4096]
 *
 * FLOPs are counted as 4·Nq·Nk·d per head and window (q·kᵀ and p·v, a multiply-add as 2).
 * The CPU reference is timed once (no warm-up) at the largest sizes, where one run takes seconds.
 */
import { GpuContext } from '../src/gpu/context.js';
import { attention, defaultAttentionConfig } from '../src/kernels/attention.js';
import { printTable, timeCpu, timeGpu, type Row } from './common.js';

export const CPU_NAME = 'CPU: plain JS f32 softmax(QKᵀ)V, row by row, 1 thread';

/**
 * softmax(q kᵀ · scale) v for one window, heads packed in channels.
 * q: [N, H*d], k: [N, H*d], v: [N, H*d] -> out: [N, H*d]
 */
export function cpuAttentionF32(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array,
  n: number, heads: number, d: number): void {
  const c = heads * d, scale = 1 / Math.sqrt(d);
  const s = new Float32Array(n), acc = new Float32Array(d);
  for (let h = 0; h < heads; h++) for (let i = 0; i < n; i++) {
    const qo = i * c + h * d;
    let m = -Infinity;
    for (let j = 0; j < n; j++) {
      const ko = j * c + h * d;
      let dot = 0;
      for (let t = 0; t < d; t++) dot += q[qo + t]! * k[ko + t]!;
      s[j] = dot * scale;
      if (s[j]! > m) m = s[j]!;
    }
    let sum = 0;
    for (let j = 0; j < n; j++) { s[j] = Math.exp(s[j]! - m); sum += s[j]!; }
    acc.fill(0);
    for (let j = 0; j < n; j++) {
      const p = s[j]! / sum, vo = j * c + h * d;
      for (let t = 0; t < d; t++) acc[t]! += p * v[vo + t]!;
    }
    out.set(acc, qo);
  }
}

const rand = (len: number, seed: number): Float32Array => {
  const out = new Float32Array(len);
  let st = seed >>> 0;
  for (let i = 0; i < len; i++) {
    st = (Math.imul(st, 1664525) + 1013904223) >>> 0;
    out[i] = st / 2 ** 32 - 0.5;
  }
  return out;
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const withCpu = !args.includes('--no-cpu');
  const cases: { name: string; b: number; n: number }[] = [
    { name: 'global 32x32', b: 1, n: 1024 },
    ...(args.includes('--no-4096') ? [] : [{ name: 'global 64x64', b: 1, n: 4096 }]),
    { name: 'windows 9 x 14x14', b: 9, n: 196 },
    { name: 'windows 25 x 14x14', b: 25, n: 196 },
  ];
  const heads = 3, d = 64, c = heads * d;
  const cfg = defaultAttentionConfig(d, d);
  console.log(`attention, ${heads} heads, d=${d}; tiles bq=${cfg.bq} bk=${cfg.bk}${cfg.unroll ? ' unrolled' : ''}; ${CPU_NAME}`);
  const ctx = await GpuContext.create();
  const rows: Row[] = [];
  for (const { name, b, n } of cases) {
    const q = rand(b * n * c, 1), k = rand(b * n * c, 2), v = rand(b * n * c, 3);
    const qt = ctx.upload(q, [b, n, c]), kt = ctx.upload(k, [b, n, c]), vt = ctx.upload(v, [b, n, c]);
    const t0 = performance.now();
    attention(ctx, qt, kt, vt, heads).release();
    await ctx.sync();
    const firstMs = performance.now() - t0;   // includes the pipeline compile
    const reps = n >= 4096 ? 3 : 5;
    const gpuMs = await timeGpu(ctx, () => attention(ctx, qt, kt, vt, heads).release(), reps, 0);
    const flop = 4 * b * heads * n * n * d;
    const row: Row = {
      case: name, B: String(b), N: String(n), 'first run ms (compile)': firstMs, 'GPU ms (median)': gpuMs,
      'GPU GFLOP/s': flop / gpuMs / 1e6,
    };
    if (withCpu) {
      const out = new Float32Array(n * c);
      const big = n >= 4096;
      const cpuMs = timeCpu(() => {
        for (let w = 0; w < b; w++) {
          const sl = (a: Float32Array): Float32Array => a.subarray(w * n * c, (w + 1) * n * c);
          cpuAttentionF32(sl(q), sl(k), sl(v), out, n, heads, d);
        }
      }, big ? 1 : 3, big ? 0 : 1);
      row['CPU ms'] = cpuMs;
      row['CPU GFLOP/s'] = flop / cpuMs / 1e6;
      row['CPU/GPU'] = cpuMs / gpuMs;
    }
    rows.push(row);
    for (const t of [qt, kt, vt]) t.release();
  }
  printTable(rows);
  ctx.destroy();
}

await main();
process.exit(0);
