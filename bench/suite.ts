/**
 * The benchmark suite that runs both in Node and in a browser page (bench/browser.ts runs it in
 * each and prints one table): the kernel benchmark of bench/kernels.ts (linear at the model's
 * sizes, with its plain-JS CPU reference), the fused attention kernel at two of bench/attention.ts's
 * sizes, and per-module timings of the model on real weights (the tiny golden model; the
 * EfficientTAM-Ti 512 image encoder when its weights are given).
 *
 * Nothing here touches Node or the DOM: the caller loads the weights.
 */
import type { GpuContext } from '../src/gpu/context.js';
import type { SafetensorsFile } from '../src/io/safetensors.js';
import { attention } from '../src/kernels/attention.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { benchLinear, rows as linearRows, CPU_NAME } from './kernels.js';
import { median } from './common.js';

export interface ModelWeights {
  weights: SafetensorsFile;
  config: unknown;
}

export interface SuiteOptions {
  /** the tiny golden model (../shared/golden/tiny) */
  tiny: ModelWeights;
  /** EfficientTAM-Ti 512x512 (../shared/golden/ti512): its image encoder is timed when given */
  ti512?: ModelWeights;
  /** timed repetitions per benchmark (default 3) */
  reps?: number;
  log?: (s: string) => void;
}

/** One measurement: median ms over the timed runs, and the first run (pipeline compiles included). */
export interface SuiteRow {
  bench: string;
  ms: number;
  firstMs?: number;
  gflops?: number;
}

const rand = (n: number, seed: number, scale = 1): Float32Array => {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
};

/** First run (compiles) and the median of `reps` later runs of `fn`, each waited for on the GPU. */
async function time(ctx: GpuContext, fn: () => void, reps: number): Promise<{ firstMs: number; ms: number }> {
  await ctx.sync();
  let t0 = performance.now();
  fn();
  await ctx.sync();
  const firstMs = performance.now() - t0;
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    t0 = performance.now();
    fn();
    await ctx.sync();
    times.push(performance.now() - t0);
  }
  return { firstMs, ms: median(times) };
}

export async function runSuite(ctx: GpuContext, o: SuiteOptions): Promise<SuiteRow[]> {
  const reps = o.reps ?? 3;
  const log = o.log ?? (() => undefined);
  const out: SuiteRow[] = [];
  const push = (r: SuiteRow) => {
    out.push(r);
    log(`${r.bench}: ${r.ms.toFixed(1)} ms${r.firstMs !== undefined ? ` (first run ${r.firstMs.toFixed(0)} ms)` : ''}`);
  };

  // ---- kernels: bench/kernels.ts's linear benchmark, as is
  linearRows.length = 0;
  await benchLinear(ctx, reps, 1);
  for (const r of linearRows) {
    push({ bench: String(r.op), ms: Number(r['GPU ms']), gflops: Number(r['GPU GFLOP/s']) });
    push({ bench: `${String(r.op)}, ${CPU_NAME}`, ms: Number(r[`${CPU_NAME} ms`]), gflops: Number(r['CPU GFLOP/s']) });
  }

  // ---- the fused attention kernel (3 heads, d 64, as bench/attention.ts)
  for (const { name, b, n } of [{ name: 'global 32x32', b: 1, n: 1024 }, { name: 'windows 25 x 14x14', b: 25, n: 196 }]) {
    const heads = 3, d = 64, c = heads * d;
    const q = ctx.upload(rand(b * n * c, 1), [b, n, c]), k = ctx.upload(rand(b * n * c, 2), [b, n, c]), v = ctx.upload(rand(b * n * c, 3), [b, n, c]);
    const t = await time(ctx, () => attention(ctx, q, k, v, heads).release(), reps);
    push({ bench: `attention (fused) ${name}, 3 heads, d 64`, ...t, gflops: (4 * b * heads * n * n * d) / t.ms / 1e6 });
    for (const x of [q, k, v]) x.release();
  }

  // ---- modules of the tiny model, on its real weights
  const tiny = EfficientTAM.load(ctx, o.tiny.weights, o.tiny.config);
  await modules(ctx, tiny, 'tiny', reps, push);

  if (o.ti512) {
    const ti = EfficientTAM.load(ctx, o.ti512.weights, o.ti512.config);
    await encoder(ctx, ti, 'Ti 512', Math.min(reps, 2), push);
  }
  return out;
}

async function encoder(ctx: GpuContext, m: EfficientTAM, name: string, reps: number, push: (r: SuiteRow) => void): Promise<void> {
  const S = m.imageSize;
  const pixels = ctx.upload(rand(S * S * 3, 11, 2), [1, S, S, 3]);
  const t = await time(ctx, () => {
    const r = m.forwardImage(pixels);
    r.visionFeatures.release();
    for (const x of r.highResFeatures ?? []) x.release();
  }, reps);
  push({ bench: `${name}: image encoder (${S}x${S})`, ...t });
  pixels.release();
}

async function modules(ctx: GpuContext, m: EfficientTAM, name: string, reps: number, push: (r: SuiteRow) => void): Promise<void> {
  await encoder(ctx, m, name, reps, push);
  const S = m.imageSize;
  const pe = m.promptEncoder;
  const C = pe.embedDim, g = pe.embedSize;
  const cfg = m.config;
  const memDim = cfg.memory_encoder.out_dim;

  // prompt encoder + mask decoder: one positive point, three masks
  const embed = ctx.upload(rand(g * g * C, 12), [1, g, g, C]);
  const t = await time(ctx, () => {
    const sparse = pe.embedPoints({ coords: Float32Array.of(S * 0.4, S * 0.6), labels: Int32Array.of(1), batch: 1, count: 1 }, true).data;
    const r = m.maskDecoder.forward({ imageEmbed: embed, imagePe: pe.densePe, sparse, batch: 1, dense: pe.noMaskEmbed, multimaskOutput: true });
    for (const x of [r.masks, r.iouPred, r.samTokensOut, r.objectScoreLogits]) x.release();
  }, reps);
  push({ bench: `${name}: prompt encoder + mask decoder (1 point, 3 masks)`, ...t });

  // memory encoder: one object's mask on a frame
  const masks = ctx.upload(rand(S * S, 13, 8), [1, S, S, 1]);
  const te = await time(ctx, () => m.memoryEncoder.forward(embed, masks, false).visionFeatures.release(), reps);
  push({ bench: `${name}: memory encoder`, ...te });
  masks.release();

  // memory attention: 7 memory frames and 16 object pointers (the most the tracker attends to)
  const Nq = g * g, ptrTokens = 16 * (C / memDim), Nm = 7 * Nq + ptrTokens;
  const curr = ctx.upload(rand(Nq * C, 14), [Nq, C]), currPos = ctx.upload(rand(Nq * C, 15), [Nq, C]);
  const memory = ctx.upload(rand(Nm * memDim, 16), [Nm, memDim]), memoryPos = ctx.upload(rand(Nm * memDim, 17), [Nm, memDim]);
  const ta = await time(ctx, () => m.memoryAttention.forward({ curr, currPos, memory, memoryPos, numObjPtrTokens: ptrTokens }).release(), reps);
  push({ bench: `${name}: memory attention (7 frames + 16 pointers, ${Nm} memory tokens)`, ...ta });
  for (const x of [embed, curr, currPos, memory, memoryPos]) x.release();
}
