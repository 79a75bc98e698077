/**
 * `npm run bench:gpu [-- options]`: the benchmark for a machine with a GPU, on random weights of an
 * official variant made from its manifest (no weights file needed), printed as markdown and
 * written as JSON with the adapter's description:
 *
 *   (a) kernels: every candidate of the matmul family at the model's linear sizes (f32 and f16
 *       weights) and of the attention family at the model's attention sizes, GFLOP/s; the
 *       `linear` / `attention` rows give the fastest candidate of each size
 *   (b) per variant: the kernel table for this adapter (tuning 'auto': stored, or timed now;
 *       the time it took and the pipelines compiled ahead), then the image encoder with the tuned
 *       kernels against today's lavapipe-shaped kernels (same run, medians, ratio), and at
 *       precision 'f16'
 *   (c) one tracked frame with 1 and 2 objects (tuned kernels), split by module from the
 *       library's profile marks (GPU timestamps when the adapter has timestamp-query)
 *
 * It refuses to report a software adapter (lavapipe / llvmpipe, SwiftShader, any fallback
 * adapter) as a GPU: exit code 3 unless ALLOW_SOFTWARE=1 (no adapter: 2; a failed section: 1).
 *
 * It imports nothing but the library's ../src and the `webgpu` package, so it can replace
 * gpu_bench.ts in the GPU bundle of ../shared/tools/gpu (same options, environment variables,
 * exit codes and JSON fields, plus its own): see the notes (gpu-kernels.md) for the commands.
 *
 * Options (each also an environment variable): --variants a,b (BENCH_VARIANTS, default
 * efficienttam_ti_512x512), --frames N (BENCH_FRAMES, 10), --warmup N (BENCH_WARMUP, 2),
 * --encoder-reps N (BENCH_ENCODER_REPS, 10), --matmul-reps N (BENCH_MATMUL_REPS, 7),
 * --objects 1,2 (BENCH_OBJECTS), --matmul-sizes MxKxN,... (BENCH_MATMUL_SIZES), --attention-sizes
 * BxNqxNkxHxD,... (BENCH_ATTENTION_SIZES), --skip kernels,encoder,baseline,f16,video (BENCH_SKIP; 'matmul'
 * and 'attention' skip parts of (a)), --budget-s S (BENCH_BUDGET_S, 240: no new variant or video
 * run past it), --tuning auto|off (BENCH_TUNING, auto), --tune-budget-s S (BENCH_TUNE_BUDGET_S,
 * the library's default), --seed N, --std X, --json PATH, --md PATH (default $OUT/gpu_bench.{json,md}
 * when OUT is set), --probe [--brief] (the adapter only). DAWN_FLAGS: ';'-separated flags for the
 * webgpu package's create() (default disable-dawn-features=timestamp_quantization).
 */
import { adapterName, softwareReason } from '../src/gpu/adapter.js';
import { GpuContext } from '../src/gpu/context.js';
import type { Tensor } from '../src/gpu/tensor.js';
import { ATTENTION, type AttentionCall } from '../src/kernels/attention.js';
import { MATMUL, type MatmulCall } from '../src/kernels/matmul.js';
import { preset, VARIANTS, type Variant } from '../src/model/config.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { f16Settings } from '../src/model/precision.js';
import { VideoPredictor } from '../src/model/video_predictor.js';
import { timeCandidates } from '../src/tune/tuner.js';
import { LIBRARY_VERSION } from '../src/version.js';
import { randomWeights } from '../src/weights/random.js';

// ------------------------------------------------------------------------------------------------
// settings
// ------------------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
function opt(name: string, env: string, def: string): string {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < argv.length) return argv[i + 1]!;
  const eq = argv.find((a) => a.startsWith(`--${name}=`));
  if (eq) return eq.slice(name.length + 3);
  const e = process.env[env];
  return e !== undefined && e !== '' ? e : def;
}
const num = (name: string, env: string, def: number): number => {
  const v = Number(opt(name, env, String(def)));
  if (!Number.isFinite(v)) throw new Error(`--${name}: not a number`);
  return v;
};
const list = (s: string): string[] => s.split(',').map((x) => x.trim()).filter(Boolean);
const OUT = process.env.OUT;
const PROBE = argv.includes('--probe');
const BRIEF = argv.includes('--brief');
const S = {
  variants: list(opt('variants', 'BENCH_VARIANTS', 'efficienttam_ti_512x512')),
  frames: num('frames', 'BENCH_FRAMES', 10),
  warmup: num('warmup', 'BENCH_WARMUP', 2),
  encoderReps: num('encoder-reps', 'BENCH_ENCODER_REPS', 10),
  matmulReps: num('matmul-reps', 'BENCH_MATMUL_REPS', 7),
  objects: list(opt('objects', 'BENCH_OBJECTS', '1,2')).map(Number),
  skip: list(opt('skip', 'BENCH_SKIP', '')),
  budgetS: num('budget-s', 'BENCH_BUDGET_S', 240),
  tuning: opt('tuning', 'BENCH_TUNING', 'auto'),
  tuneBudgetS: num('tune-budget-s', 'BENCH_TUNE_BUDGET_S', 0),
  matmulSizes: opt('matmul-sizes', 'BENCH_MATMUL_SIZES', ''),
  attentionSizes: opt('attention-sizes', 'BENCH_ATTENTION_SIZES', ''),
  seed: num('seed', 'BENCH_SEED', 1234),
  std: num('std', 'BENCH_STD', 0.02),
  json: opt('json', 'BENCH_JSON', OUT ? `${OUT}/gpu_bench.json` : ''),
  md: opt('md', 'BENCH_MD', OUT ? `${OUT}/gpu_bench.md` : ''),
  dawnFlags: (process.env.DAWN_FLAGS ?? 'disable-dawn-features=timestamp_quantization').split(';').map((s) => s.trim()).filter(Boolean),
  allowSoftware: process.env.ALLOW_SOFTWARE === '1',
};
for (const v of S.variants) if (!(VARIANTS as readonly string[]).includes(v)) throw new Error(`unknown variant ${v}; known: ${VARIANTS.join(', ')}`);
if (S.tuning !== 'auto' && S.tuning !== 'off') throw new Error(`--tuning is auto or off, not ${S.tuning}`);
if (S.frames < S.warmup + 1) throw new Error(`--frames (${S.frames}) must exceed --warmup (${S.warmup})`);
const skip = (what: string): boolean => S.skip.includes(what);

// ------------------------------------------------------------------------------------------------
// output
// ------------------------------------------------------------------------------------------------

type Cell = string | number | boolean | null | undefined;
type Row = Record<string, Cell>;
const md: string[] = [];
const say = (s = ''): void => { console.log(s); md.push(s); };
const fmt = (v: Cell): string => {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'number' || !Number.isFinite(v) || Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toPrecision(2);
};
function table(rows: readonly Row[]): void {
  if (!rows.length) return;
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cells = rows.map((r) => cols.map((c) => fmt(r[c])));
  const w = cols.map((c, i) => Math.max(3, c.length, ...cells.map((r) => r[i]!.length)));
  const line = (xs: string[]): string => `| ${xs.map((x, i) => x.padEnd(w[i]!)).join(' | ')} |`;
  say(line(cols));
  say(`|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`);
  for (const r of cells) say(line(r));
  say();
}
const median = (xs: readonly number[]): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b), h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
};
const round = (x: number, d = 3): number => (Number.isFinite(x) ? Number(x.toFixed(d)) : x);
const t0 = performance.now();
const elapsedS = (): number => (performance.now() - t0) / 1000;

// ------------------------------------------------------------------------------------------------
// the adapter
// ------------------------------------------------------------------------------------------------

const plain = (o: object | null | undefined): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  if (o) for (const k in o) { const v = (o as Record<string, unknown>)[k]; if (typeof v !== 'function') out[k] = v; }
  return out;
};

interface AdapterReport {
  info: Record<string, unknown>; features: string[]; limits: Record<string, unknown>;
  software: boolean; softwareReason: string; dawnFlags: string[]; webgpuModule: string;
}

/** The webgpu package's GPU object (with DAWN_FLAGS) as navigator.gpu, so that GpuContext.create uses it. */
async function setUpGpu(): Promise<AdapterReport> {
  const name = 'webgpu';
  const mod = (await import(/* @vite-ignore */ name)) as { create: (f: string[]) => GPU; globals: Record<string, unknown> };
  let where = '?';
  try { where = (import.meta as unknown as { resolve(s: string): string }).resolve(name); } catch { /* Node < 20.6 */ }
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create(S.dawnFlags);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  const a = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  const info = a ? plain(a.info as unknown as object) : {};
  const why = a ? softwareReason(info as Parameters<typeof softwareReason>[0]) : '';
  return {
    info, features: a ? [...a.features].map(String).sort() : [], limits: a ? plain(a.limits as unknown as object) : {},
    software: why !== '', softwareReason: why, dawnFlags: S.dawnFlags, webgpuModule: where,
  };
}

function printAdapter(r: AdapterReport): void {
  const i = r.info;
  say(`**Adapter: ${String(i.description ?? '?')} (vendor '${String(i.vendor ?? '')}', architecture '${String(i.architecture ?? '')}', device '${String(i.device ?? '')}')` +
    `${r.software ? ` -- A SOFTWARE ADAPTER (${r.softwareReason})` : ''}**`);
  say();
  if (BRIEF) return;
  say(`features: ${r.features.join(' ')}`);
  say();
  say(`limits: ${Object.entries(r.limits).map(([k, v]) => `${k}=${String(v)}`).join(' ')}`);
  say();
  say(`node ${process.version}, webgpu ${r.webgpuModule}, Dawn flags ${r.dawnFlags.join(' ') || '(none)'}; library ${LIBRARY_VERSION}`);
  say();
}

// ------------------------------------------------------------------------------------------------
// (a) kernels
// ------------------------------------------------------------------------------------------------

const LINEARS: [number, number, number, string][] = [
  [1024, 192, 576, 'ti ViT qkv, 512px'], [1024, 192, 768, 'ti ViT mlp.0, 512px'], [1024, 768, 192, 'ti ViT mlp.1, 512px'],
  [1024, 384, 1152, 's ViT qkv, 512px'], [1024, 1536, 384, 's ViT mlp.1, 512px'],
  [1024, 256, 2048, 'memory attention linear1, 512px'], [1024, 2048, 256, 'memory attention linear2, 512px'],
  [4096, 192, 768, 'ti ViT mlp.0, 1024px'], [4096, 256, 2048, 'memory attention linear1, 1024px'],
];
const ATTENTIONS: { case: string; b: number; nq: number; nk: number; heads: number; d: number }[] = [
  { case: 'ti ViT global, 512px', b: 1, nq: 1024, nk: 1024, heads: 3, d: 64 },
  { case: 'ti ViT windows 9x(14x14), 512px', b: 9, nq: 196, nk: 196, heads: 3, d: 64 },
  { case: 's ViT global, 512px', b: 1, nq: 1024, nk: 1024, heads: 6, d: 64 },
  { case: 'memory self-attention, 512px', b: 1, nq: 1024, nk: 1024, heads: 1, d: 256 },
  { case: 'memory cross-attention (7 memories + 64 ptr tokens), 512px', b: 1, nq: 1024, nk: 7 * 1024 + 64, heads: 1, d: 256 },
  { case: 'ti ViT global, 1024px', b: 1, nq: 4096, nk: 4096, heads: 3, d: 64 },
];

/** --matmul-sizes MxKxN,... and --attention-sizes BxNqxNkxHxD,... replace the defaults. */
function sizes<T>(spec: string, n: number, def: T[], make: (v: number[]) => T): T[] {
  if (!spec) return def;
  return list(spec).map((s) => {
    const v = s.split('x').map(Number);
    if (v.length !== n || !v.every((x) => Number.isInteger(x) && x > 0)) throw new Error(`bad size '${s}'`);
    return make(v);
  });
}

interface KernelRow { op: string; what: string; shape: string; weights?: string; candidate: string; ms: number; gflops: number; fastest: boolean; default: boolean }

async function benchKernels(ctx: GpuContext, result: Record<string, unknown>): Promise<void> {
  const rows: KernelRow[] = [];
  const linear: Record<string, unknown>[] = [];
  const attention: Record<string, unknown>[] = [];
  result.kernels = rows;
  if (!skip('matmul')) {
    for (const [M, K, N, what] of sizes(S.matmulSizes, 3, LINEARS, (v) => [v[0]!, v[1]!, v[2]!, 'custom'] as [number, number, number, string])) {
      for (const weights of ctx.hasF16 ? ['f32', 'f16'] : ['f32']) {
        const call: MatmulCall = { batch: 1, M, N, K, transB: true, bBatched: false, bF16: weights === 'f16', aHalf: false, bHalf: false, bias: false, activation: 'none', residual: false };
        const cands = MATMUL.eligible(ctx, call), dflt = MATMUL.fallback(ctx, call);
        const { ms } = await timeCandidates(ctx, MATMUL, call, cands, { rounds: S.matmulReps, batchMs: 25, keep: dflt });
        const best = Object.entries(ms).sort((a, b) => a[1] - b[1])[0]!;
        const flop = MATMUL.flops(call);
        for (const [c, t] of Object.entries(ms)) {
          rows.push({ op: 'matmul', what, shape: `${M}x${K}x${N}`, weights, candidate: c, ms: round(t, 4), gflops: round(flop / t / 1e6, 2), fastest: c === best[0], default: c === dflt });
        }
        linear.push({ M, K, N, what, weights, kernel: best[0], wallMs: round(best[1], 4), gflopsWall: round(flop / best[1] / 1e6, 3), gpuMs: NaN, gflopsGpu: NaN });
      }
    }
  }
  if (!skip('attention')) {
    for (const a of sizes(S.attentionSizes, 5, ATTENTIONS, (v) => ({ case: 'custom', b: v[0]!, nq: v[1]!, nk: v[2]!, heads: v[3]!, d: v[4]! }))) {
      const call: AttentionCall = { batch: a.b, heads: a.heads, nq: a.nq, nk: a.nk, d: a.d, dv: a.d, packed: false, bias: false, half: false };
      const cands = ATTENTION.eligible(ctx, call), dflt = ATTENTION.fallback(ctx, call);
      const { ms } = await timeCandidates(ctx, ATTENTION, call, cands, { rounds: S.matmulReps, batchMs: 25, keep: dflt });
      const best = Object.entries(ms).sort((x, y) => x[1] - y[1])[0]!;
      const flop = 4 * a.b * a.heads * a.nq * a.nk * a.d;
      for (const [c, t] of Object.entries(ms)) {
        rows.push({ op: 'attention', what: a.case, shape: `${a.b}x${a.nq}x${a.nk}x${a.heads}x${a.d}`, candidate: c, ms: round(t, 4), gflops: round(flop / t / 1e6, 2), fastest: c === best[0], default: c === dflt });
      }
      attention.push({ case: a.case, B: a.b, Nq: a.nq, Nk: a.nk, heads: a.heads, d: a.d, kernel: best[0], wallMs: round(best[1], 4), gflopsWall: round(flop / best[1] / 1e6, 3), gpuMs: NaN, gflopsGpu: NaN });
    }
  }
  result.linear = linear;
  result.attention = attention;
  say(`## (a) kernels: every candidate, median ms per call over ${S.matmulReps} interleaved batches of ~25 ms (wall: submit + wait)`);
  say();
  table(rows.map((r) => ({
    op: r.op, case: r.what, shape: r.shape, W: r.weights, candidate: `${r.candidate}${r.default ? ' (default)' : ''}${r.fastest ? ' *' : ''}`, ms: r.ms, 'GFLOP/s': r.gflops,
  })));
}

// ------------------------------------------------------------------------------------------------
// (b) encoder, (c) tracked frames
// ------------------------------------------------------------------------------------------------

/** A random frame, normalised like the model's input [1, S, S, 3]. */
function randomFrame(size: number, seed: number): Float32Array {
  const out = new Float32Array(size * size * 3);
  let s = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296 - 0.45) / 0.226;
  }
  return out;
}

interface EncoderResult { kernels: string; firstMs: number; medianMs: number; minMs: number; reps: number; gpuMs: number; pipelinesFirst: number; dispatches: number }

async function benchEncoder(ctx: GpuContext, model: EfficientTAM, kernels: string, reps: number): Promise<EncoderResult> {
  const size = model.imageSize;
  const pixels = ctx.upload(randomFrame(size, S.seed), [1, size, size, 3]);
  const ts = ctx.device.features.has('timestamp-query');
  const once = async (): Promise<{ wall: number; gpu: number }> => {
    await ctx.sync();
    const s = performance.now();
    if (ts) ctx.startProfile();
    const r = model.forwardImage(pixels);
    ctx.mark('encoder');
    await ctx.sync();
    const wall = performance.now() - s;
    const gpu = ts ? (await ctx.endProfile()).filter((m) => m.label === 'encoder').reduce((a, m) => a + m.ms, 0) : NaN;
    for (const x of [r.visionFeatures, ...(r.highResFeatures ?? [])]) x.release();
    return { wall, gpu };
  };
  const c0 = ctx.stats.pipelinesCompiled, d0 = ctx.stats.dispatches;
  const first = await once();
  const pipelinesFirst = ctx.stats.pipelinesCompiled - c0, dispatches = ctx.stats.dispatches - d0;
  const runs: { wall: number; gpu: number }[] = [];
  for (let i = 0; i < reps; i++) runs.push(await once());
  pixels.release();
  return {
    kernels, firstMs: round(first.wall, 2), medianMs: round(median(runs.map((r) => r.wall)), 3), minMs: round(Math.min(...runs.map((r) => r.wall)), 3),
    reps, gpuMs: round(median(runs.map((r) => r.gpu)), 3), pipelinesFirst, dispatches,
  };
}

const PARTS = ['image_encoder', 'memory_attention', 'decoder', 'memory_encoder'] as const;

interface VideoResult { objects: number; framesTotal: number; framesTimed: number; wallMs: number; wallMinMs: number; fps: number; gpuMs: Record<string, number>; gpuTotalMs: number; pipelinesSteady: number; firstFrameMs: number }

async function benchVideo(ctx: GpuContext, model: EfficientTAM, objects: number): Promise<VideoResult> {
  const size = model.imageSize, VH = 480, VW = 640;
  const frames: Tensor[] = [];
  for (let i = 0; i < S.frames; i++) frames.push(ctx.upload(randomFrame(size, S.seed + i), [1, size, size, 3]));
  const vp = new VideoPredictor(model, { frames, videoHeight: VH, videoWidth: VW });
  let t = performance.now();
  (await vp.addPoints(0, 1, [[VW * 0.55, VH * 0.6]], [1])).release();
  if (objects >= 2) (await vp.addBox(0, 2, [VW * 0.1, VH * 0.2, VW * 0.4, VH * 0.7])).release();
  for (let o = 3; o <= objects; o++) (await vp.addPoints(0, o, [[VW * ((0.1 + 0.08 * o) % 1), VH * 0.3]], [1])).release();
  await ctx.sync();
  const firstFrameMs = performance.now() - t;
  const ts = ctx.device.features.has('timestamp-query');
  const per: { wall: number; parts: Record<string, number>; compiled: number }[] = [];
  let compiled = ctx.stats.pipelinesCompiled;
  t = performance.now();
  ctx.startProfile();
  for await (const fm of vp.propagate()) {
    await ctx.sync();
    const wall = performance.now() - t;
    const parts: Record<string, number> = {};
    for (const { label, ms } of await ctx.endProfile()) parts[label] = (parts[label] ?? 0) + ms;
    per.push({ wall, parts, compiled: ctx.stats.pipelinesCompiled - compiled });
    fm.release();
    compiled = ctx.stats.pipelinesCompiled;
    t = performance.now();
    ctx.startProfile();
  }
  await ctx.endProfile();
  vp.dispose();
  for (const f of frames) f.release();
  const steady = per.slice(S.warmup);
  const gpu: Record<string, number> = {};
  for (const p of PARTS) gpu[p] = ts ? round(median(steady.map((s) => s.parts[p] ?? 0))) : NaN;
  gpu.other = ts ? round(median(steady.map((s) => (s.parts.start ?? 0) + (s.parts.rest ?? 0)))) : NaN;
  const wall = median(steady.map((s) => s.wall));
  return {
    objects, framesTotal: per.length, framesTimed: steady.length, wallMs: round(wall), wallMinMs: round(Math.min(...steady.map((s) => s.wall))),
    fps: round(1000 / wall, 2), gpuMs: gpu, gpuTotalMs: ts ? round(median(steady.map((s) => Object.values(s.parts).reduce((a, b) => a + b, 0)))) : NaN,
    pipelinesSteady: steady.reduce((a, s) => a + s.compiled, 0), firstFrameMs: round(firstFrameMs, 1),
  };
}

// ------------------------------------------------------------------------------------------------
// main
// ------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const result: Record<string, unknown> = {
    tool: 'efficienttam-webgpu bench/gpu.ts', library: LIBRARY_VERSION, startedAt: new Date().toISOString(), node: process.version,
    platform: `${process.platform}-${process.arch}`, settings: { ...S, json: undefined, md: undefined },
  };
  const errors: string[] = [];
  const variants: Record<string, unknown>[] = [];
  result.variants = variants;
  result.errors = errors;
  let code = 0;
  const save = async (): Promise<void> => {
    result.totalSeconds = round(elapsedS(), 1);
    const fs = await import('node:fs');
    const path = await import('node:path');
    for (const [file, text] of [[S.json, JSON.stringify(result, null, 1)], [S.md, `${md.join('\n')}\n`]] as const) {
      if (!file) continue;
      fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      fs.writeFileSync(file, text);
    }
  };
  const fail = (what: string, e: unknown): void => {
    code = 1;
    errors.push(`${what}: ${String((e as Error)?.stack ?? e)}`);
    say(`${what} FAILED: ${String(e)}`);
    say();
  };

  say(`# efficienttam-webgpu GPU benchmark (bench/gpu.ts, library ${LIBRARY_VERSION}, ${new Date().toISOString()})`);
  say();
  const report = await setUpGpu();
  result.adapter = report;
  if (!Object.keys(report.info).length) {
    say('**NO WEBGPU ADAPTER**: Dawn found none (is libvulkan.so.1 loadable, and the GPU\'s Vulkan ICD found?).');
    errors.push('no adapter');
    await save();
    return 2;
  }
  printAdapter(report);
  if (report.software && !S.allowSoftware) {
    say(`**SOFTWARE ADAPTER** (${report.softwareReason}): its figures are CPU timings, not a GPU's; refusing to report them (ALLOW_SOFTWARE=1 runs anyway, labelled so).`);
    errors.push(`software adapter: ${report.softwareReason}`);
    await save();
    return 3;
  }
  if (report.software) say(`**Everything below ran on a SOFTWARE adapter (${report.softwareReason}): CPU timings, not a GPU's.**\n`);
  if (PROBE) { await save(); return 0; }

  const ctx = await GpuContext.create();
  result.device = { adapter: ctx.adapter, name: adapterName(ctx.adapter), features: [...ctx.device.features].map(String).sort() };
  say(`GPU ms: ${ctx.device.features.has('timestamp-query') ? 'timestamp queries around every compute pass' : 'not available (no timestamp-query): wall times only'}; wall: recording + submit + wait.`);
  say();

  if (!skip('kernels')) {
    try { await benchKernels(ctx, result); } catch (e) { fail('kernels', e); }
    await save();
  }

  for (const v of S.variants as Variant[]) {
    const vr: Record<string, unknown> = { variant: v, video: [] as VideoResult[], errors: [] as string[] };
    variants.push(vr);
    if (elapsedS() > S.budgetS) { vr.skipped = `time budget (${S.budgetS} s) spent`; say(`## ${v}: SKIPPED (${vr.skipped})`); continue; }
    const cfg = preset(v);
    const weights = randomWeights(cfg, { seed: S.seed + 1, std: S.std });
    let model: EfficientTAM;
    try {
      const s = performance.now();
      model = EfficientTAM.load(ctx, weights, cfg);
      await ctx.sync();
      vr.imageSize = cfg.image_size;
      vr.loadMs = round(performance.now() - s, 1);
      const r = await model.prepare({ tuning: S.tuning as 'auto' | 'off', timeSoftware: true, budgetMs: S.tuneBudgetS > 0 ? S.tuneBudgetS * 1000 : undefined });
      vr.prepare = { source: r.source, note: r.note, timedClasses: r.timed, tuneMs: round(r.tuneMs, 1), pipelinesCompiledAhead: r.compiled, compileMs: round(r.compileMs, 1), store: r.store, saved: r.saved };
      vr.tuning = r.table;
      say(`## ${v} (random N(0, ${S.std}) weights of its manifest; image ${cfg.image_size}x${cfg.image_size})`);
      say();
      say(`kernel table: ${r.source}${r.note ? ` (${r.note})` : ''}; ${r.timed} shape classes timed in ${(r.tuneMs / 1000).toFixed(1)} s; ` +
        `${r.compiled} pipelines compiled ahead (createComputePipelineAsync) in ${(r.compileMs / 1000).toFixed(2)} s`);
      say();
      if (r.table) {
        table(r.table.entries.map((e) => ({ op: e.op, class: e.class, calls: e.calls, chosen: e.chosen, default: e.fallback, ...Object.fromEntries(Object.entries(e.ms).map(([c, t]) => [`${c} ms`, round(t, 4)])) })));
      }
    } catch (e) { fail(`${v}: load / tuning`, e); continue; }

    if (!skip('encoder')) {
      try {
        const tuned = await benchEncoder(ctx, model, 'tuned', S.encoderReps);
        vr.encoder = tuned;
        const rows: Row[] = [{ kernels: 'tuned', 'first ms': tuned.firstMs, 'compiles in first': tuned.pipelinesFirst, 'median ms': tuned.medianMs, 'GPU ms': tuned.gpuMs, ratio: 1 }];
        if (!skip('baseline')) {
          // today's kernels (the lavapipe-shaped defaults), in the same run
          const saved = ctx.kernels.entries();
          ctx.kernels.clear();
          ctx.kernels.defaults = 'software';
          try {
            const base = await benchEncoder(ctx, model, 'lavapipe-shaped (before issue 15)', S.encoderReps);
            vr.encoderBaseline = base;
            vr.encoderSpeedup = round(base.medianMs / tuned.medianMs, 3);
            rows.push({ kernels: base.kernels, 'first ms': base.firstMs, 'compiles in first': base.pipelinesFirst, 'median ms': base.medianMs, 'GPU ms': base.gpuMs, ratio: round(base.medianMs / tuned.medianMs, 3) });
          } finally {
            ctx.kernels.defaults = 'auto';
            ctx.kernels.clear('tuned');
            for (const [op, cls, c] of saved) ctx.kernels.set(op, cls, c);
          }
        }
        say(`### (b) image encoder, one frame (median of ${S.encoderReps}; ratio = ms / tuned ms, same run)`);
        say();
        table(rows);
      } catch (e) { fail(`${v}: encoder`, e); }
      await save();
    }

    if (!skip('video')) {
      const rows: Row[] = [];
      for (const objects of S.objects) {
        if (elapsedS() > S.budgetS) { (vr.errors as string[]).push(`video ${objects}: skipped, budget spent`); continue; }
        try {
          const r = await benchVideo(ctx, model, objects);
          (vr.video as VideoResult[]).push(r);
          const row: Row = { objects, 'frames timed': `${r.framesTimed} of ${r.framesTotal}`, 'prompted frame ms': r.firstFrameMs };
          for (const p of [...PARTS, 'other']) row[`${p} GPU ms`] = r.gpuMs[p];
          Object.assign(row, { 'GPU total ms': r.gpuTotalMs, 'frame ms (wall)': r.wallMs, fps: r.fps, 'compiles (timed frames)': r.pipelinesSteady });
          rows.push(row);
        } catch (e) { fail(`${v}: video ${objects}`, e); }
        await save();
      }
      say(`### (c) one tracked frame, tuned kernels (frames ${S.warmup}..${S.frames - 1} of ${S.frames} random frames; GPU ms: medians of the profile marks, all objects)`);
      say();
      table(rows);
    }

    if (!skip('f16') && ctx.hasF16 && !skip('encoder')) {
      try {
        const m16 = EfficientTAM.load(ctx, weights, cfg, { precision: 'f16' });
        await m16.prepare({ tuning: S.tuning as 'auto' | 'off', timeSoftware: true, budgetMs: S.tuneBudgetS > 0 ? S.tuneBudgetS * 1000 : undefined });
        const e16 = await benchEncoder(ctx, m16, 'tuned, precision f16', S.encoderReps);
        vr.encoderF16 = e16;
        const f32 = vr.encoder as EncoderResult | undefined;
        say(`### (b') image encoder at precision 'f16': ${e16.medianMs.toFixed(2)} ms median (${f32 ? `f32: ${f32.medianMs.toFixed(2)} ms, ratio ${(f32.medianMs / e16.medianMs).toFixed(2)}` : ''})`);
        say();
        ctx.kernels.f16 = f16Settings('f32'); // the f32 model's settings again
      } catch (e) { fail(`${v}: f16 encoder`, e); }
      await save();
    }
    ctx.trimPool();
  }
  say(`total ${elapsedS().toFixed(1)} s`);
  await save();
  ctx.destroy();
  return code;
}

main().then((c) => process.exit(c), (e) => { console.error(e); process.exit(1); });
