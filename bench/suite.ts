/**
 * The benchmark suite that runs both in Node and in a browser page (bench/browser.ts runs it in
 * each and prints one table): the kernel benchmark of bench/kernels.ts (linear at the model's
 * sizes, with its plain-JS CPU reference), the fused attention kernel at two of bench/attention.ts's
 * sizes, and per-module timings of the model on real weights (the tiny golden model; the
 * EfficientTAM-Ti 512 image encoder when its weights are given).
 *
 * First, the kernel choice of issue 15 on this adapter: the first frame (image encoder + mask
 * decoder) of the tiny model on a new device, with its pipelines compiled ahead at load
 * (EfficientTAM.prepare: createComputePipelineAsync) and without (compiled as the frame needs them),
 * with the longest stretch the event loop was blocked meanwhile; and the image encoder with the
 * kernels tuned for this adapter against the kernels from before (the lavapipe-shaped ones),
 * medians of interleaved runs in this run, and their ratio.
 *
 * Nothing here touches Node or the DOM: the caller loads the weights.
 */
import { GpuContext } from '../src/gpu/context.js';
import type { SafetensorsFile } from '../src/io/safetensors.js';
import type { TableStore } from '../src/tune/store.js';
import { randomValues } from '../src/kernels/choice.js';
import { formatTable } from '../src/tune/tuner.js';
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
  /** the kernel tuner's budget (default: the library's) and store (default: the platform's) */
  tuneBudgetMs?: number;
  store?: TableStore | null;
}

/** One measurement: median ms over the timed runs, and the first run (pipeline compiles included). */
export interface SuiteRow {
  bench: string;
  ms: number;
  firstMs?: number;
  gflops?: number;
  /** longest time the event loop was blocked during the measurement (first-frame rows) */
  blockedMs?: number;
  /** a ratio (tuned vs current kernels: current ms / tuned ms) */
  ratio?: number;
  note?: string;
}

const rand = randomValues;

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

/** Runs `fn` while a timer ticks every 5 ms; returns its result, its wall ms and the longest gap between ticks. */
async function watched<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number; blockedMs: number }> {
  let last = performance.now(), worst = 0;
  const timer = setInterval(() => { const now = performance.now(); worst = Math.max(worst, now - last); last = now; }, 5);
  const t0 = performance.now();
  try {
    const value = await fn();
    const ms = performance.now() - t0;
    worst = Math.max(worst, performance.now() - last);
    return { value, ms, blockedMs: worst };
  } finally {
    clearInterval(timer);
  }
}

/** The first frame's work: image encoder, then the mask decoder on one click. */
async function firstFrame(ctx: GpuContext, m: EfficientTAM): Promise<void> {
  const S = m.imageSize, pe = m.promptEncoder;
  const px = ctx.upload(rand(S * S * 3, 21, 2), [1, S, S, 3]);
  const e = m.forwardImage(px);
  const sparse = pe.embedPoints({ coords: Float32Array.of(S * 0.4, S * 0.6), labels: Int32Array.of(1), batch: 1, count: 1 }, true).data;
  const r = m.maskDecoder.forward({
    imageEmbed: e.visionFeatures, imagePe: pe.densePe, sparse, batch: 1, dense: pe.noMaskEmbed, multimaskOutput: true, highResFeatures: e.highResFeatures,
  });
  await r.iouPred.read();
  for (const x of [px, e.visionFeatures, ...(e.highResFeatures ?? []), r.masks, r.iouPred, r.samTokensOut, r.objectScoreLogits]) x.release();
}

/** Rows of the kernel choice: first frame with and without compiling ahead; tuned vs current encoder. */
async function kernelRows(ctx: GpuContext, o: SuiteOptions, reps: number, push: (r: SuiteRow) => void): Promise<void> {
  // first frame on new devices: compiling as the frame goes (the path before), then compiled ahead
  {
    const c1 = await GpuContext.create();
    const m1 = EfficientTAM.load(c1, o.tiny.weights, o.tiny.config);
    const n1 = c1.stats.pipelinesCompiled;
    const f1 = await watched(() => firstFrame(c1, m1));
    push({ bench: 'tiny: first frame (encoder + decoder), pipelines compiled as it goes', ms: f1.ms, blockedMs: f1.blockedMs, note: `${c1.stats.pipelinesCompiled - n1} compiles in the frame` });
    c1.destroy();
    const c2 = await GpuContext.create();
    const m2 = EfficientTAM.load(c2, o.tiny.weights, o.tiny.config);
    const p = await watched(() => m2.prepare({ tuning: 'off', store: null }));
    push({ bench: `tiny: compiling the model's pipelines ahead (${p.value.compiled}, createComputePipelineAsync)`, ms: p.ms, blockedMs: p.blockedMs });
    const n2 = c2.stats.pipelinesCompiled;
    const f2 = await watched(() => firstFrame(c2, m2));
    push({ bench: 'tiny: first frame (encoder + decoder) after compiling ahead', ms: f2.ms, blockedMs: f2.blockedMs, note: `${c2.stats.pipelinesCompiled - n2} compiles in the frame` });
    c2.destroy();
  }
  // tuned vs current kernels, on this context
  const models: [string, ModelWeights][] = [['tiny', o.tiny]];
  if (o.ti512) models.push(['Ti 512', o.ti512]);
  for (const [name, w] of models) {
    const m = EfficientTAM.load(ctx, w.weights, w.config);
    const r = await m.prepare({ budgetMs: o.tuneBudgetMs, store: o.store, timeSoftware: true });
    if (r.table) o.log?.(`${name}: ${formatTable(r.table)}`);
    push({ bench: `${name}: kernel table (${r.source}${r.timed ? `, ${r.timed} classes timed` : ''}; ${r.table?.entries.filter((e) => e.chosen !== e.fallback).length ?? 0} not the default)`, ms: r.tuneMs });
    const S = m.imageSize;
    const px = ctx.upload(rand(S * S * 3, 22, 2), [1, S, S, 3]);
    const run = (): void => { const e = m.forwardImage(px); for (const x of [e.visionFeatures, ...(e.highResFeatures ?? [])]) x.release(); };
    const tunedTable = ctx.kernels.entries();
    const use = (tuned: boolean): void => {
      ctx.kernels.clear(tuned ? 'tuned' : 'defaults');
      ctx.kernels.defaults = tuned ? 'auto' : 'software';
      if (tuned) for (const [op, cls, c] of tunedTable) ctx.kernels.set(op, cls, c);
    };
    const times: Record<'tuned' | 'current', number[]> = { tuned: [], current: [] };
    const n = name === 'tiny' ? Math.max(reps, 5) : Math.max(reps, 3);
    for (let i = 0; i <= n; i++) {
      for (const k of ['tuned', 'current'] as const) {
        use(k === 'tuned');
        await ctx.sync();
        const t0 = performance.now();
        run();
        await ctx.sync();
        if (i > 0) times[k].push(performance.now() - t0); // the first round compiles
      }
    }
    use(true);
    px.release();
    const tuned = median(times.tuned), current = median(times.current);
    push({ bench: `${name}: image encoder, tuned kernels`, ms: tuned });
    push({ bench: `${name}: image encoder, current kernels (lavapipe-shaped)`, ms: current, ratio: current / tuned, note: 'ratio = current ms / tuned ms' });
  }
}

export async function runSuite(ctx: GpuContext, o: SuiteOptions): Promise<SuiteRow[]> {
  const reps = o.reps ?? 3;
  const log = o.log ?? (() => undefined);
  const out: SuiteRow[] = [];
  const push = (r: SuiteRow) => {
    out.push(r);
    log(`${r.bench}: ${r.ms.toFixed(1)} ms${r.firstMs !== undefined ? ` (first run ${r.firstMs.toFixed(0)} ms)` : ''}` +
      `${r.blockedMs !== undefined ? `, event loop blocked up to ${r.blockedMs.toFixed(0)} ms` : ''}${r.ratio !== undefined ? `, ratio ${r.ratio.toFixed(3)}` : ''}${r.note ? ` (${r.note})` : ''}`);
  };

  // ---- kernel choice: first frame, tuned vs current
  await kernelRows(ctx, o, reps, push);

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
