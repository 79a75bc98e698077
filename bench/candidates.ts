/**
 * `npm run bench:kernels [-- --quick] [--ops matmul,conv2d,attention,softmax,layernorm] [--reps N] [--no-cpu] [--gpu-defaults] [--json FILE]`:
 * every candidate of every kernel family (src/kernels/choice.ts) at the sizes of EfficientTAM-Ti
 * 512x512, timed on this adapter in one run (medians of interleaved batches, src/tune/tuner.ts
 * timeCandidates), with the CPU reference (a plain JS loop, one thread) beside them, and which
 * candidate the family's default would take here.
 *
 * GFLOP/s for the matmuls, convolutions and attention (flops: 2 per multiply-add); GB/s (one read
 * and one write of the rows) for softmax and layer norm, which are memory-bound.
 * On a software adapter the GPU-shaped candidates can be 10-100x slower than the lavapipe-shaped
 * ones: after one batch they are not timed further (their single batch is reported).
 */
import { adapterName } from '../src/gpu/adapter.js';
import { GpuContext } from '../src/gpu/context.js';
import { ATTENTION, type AttentionCall } from '../src/kernels/attention.js';
import type { KernelFamily } from '../src/kernels/choice.js';
import { CONV2D, type Conv2dCall } from '../src/kernels/conv2d.js';
import { LAYERNORM, type LayerNormCall } from '../src/kernels/layernorm.js';
import { MATMUL, type MatmulCall } from '../src/kernels/matmul.js';
import { SOFTMAX, type SoftmaxCall } from '../src/kernels/softmax.js';
import { timeCandidates } from '../src/tune/tuner.js';
import { printTable, timeCpu, type Row } from './common.js';

type Case =
  | { label: string; family: typeof MATMUL; call: MatmulCall; quick?: boolean }
  | { label: string; family: typeof CONV2D; call: Conv2dCall; quick?: boolean }
  | { label: string; family: typeof ATTENTION; call: AttentionCall; quick?: boolean }
  | { label: string; family: typeof SOFTMAX; call: SoftmaxCall; quick?: boolean }
  | { label: string; family: typeof LAYERNORM; call: LayerNormCall; quick?: boolean };

const lin = (M: number, K: number, N: number, o: Partial<MatmulCall> = {}): MatmulCall => ({
  batch: 1, M, N, K, transB: true, bBatched: false, bF16: false, aHalf: false, bHalf: false, bias: true, activation: 'none', residual: false, ...o,
});

/** The Ti 512x512 model's hot calls (ViT E 192, 3 heads; neck and memory attention C 256; g = 32). */
export const CASES: Case[] = [
  { label: 'ViT qkv (linear)', family: MATMUL, call: lin(1024, 192, 576), quick: true },
  { label: 'ViT mlp.0 (linear + GELU)', family: MATMUL, call: lin(1024, 192, 768, { activation: 'gelu' }) },
  { label: 'ViT mlp.1 (linear + residual)', family: MATMUL, call: lin(1024, 768, 192, { residual: true }), quick: true },
  { label: 'memory attention linear1 (+ReLU)', family: MATMUL, call: lin(1024, 256, 2048, { activation: 'relu' }) },
  { label: 'ViT qkv, f16 weight', family: MATMUL, call: lin(1024, 192, 576, { bF16: true }) },
  { label: 'ViT qkv, precision f16', family: MATMUL, call: lin(1024, 192, 576, { bF16: true, aHalf: true, bHalf: true }) },
  { label: 'scores q·kᵀ of 3 heads (composed attention)', family: MATMUL, call: { ...lin(1024, 64, 1024, { bias: false }), batch: 3, bBatched: true } },
  { label: 'neck conv 3x3 256->256 (32x32)', family: CONV2D, call: { B: 1, H: 32, W: 32, Cin: 256, Cout: 256, kh: 3, kw: 3, stride: 1, pad: 1, bias: false, wF16: false, xHalf: false }, quick: true },
  { label: 'patch embed 16x16/16 3->192 (512x512)', family: CONV2D, call: { B: 1, H: 512, W: 512, Cin: 3, Cout: 192, kh: 16, kw: 16, stride: 16, pad: 0, bias: true, wF16: false, xHalf: false } },
  { label: 'ViT global attention (1024 tokens, 3 heads of 64, packed)', family: ATTENTION, call: { batch: 1, heads: 3, nq: 1024, nk: 1024, d: 64, dv: 64, packed: true, bias: false, half: false }, quick: true },
  { label: 'ViT windows (9 x 196 tokens, 3 heads of 64, packed)', family: ATTENTION, call: { batch: 9, heads: 3, nq: 196, nk: 196, d: 64, dv: 64, packed: true, bias: false, half: false } },
  { label: 'memory cross-attention (1024 x 7232 keys, 1 head of 256)', family: ATTENTION, call: { batch: 1, heads: 1, nq: 1024, nk: 7232, d: 256, dv: 256, packed: false, bias: false, half: false } },
  { label: 'softmax of 3 x 1024 score rows of 1024', family: SOFTMAX, call: { rows: 3072, n: 1024, bias: false }, quick: true },
  { label: 'layer norm 1024 x 192', family: LAYERNORM, call: { rows: 1024, c: 192, eps: 1e-6 }, quick: true },
];

// ---------------------------------------------------------------- CPU references (plain JS, one thread)

const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);

function cpuRun(c: Case): () => void {
  switch (c.family.op) {
    case 'matmul': {
      const k = c.call as MatmulCall;
      const a = rnd(k.batch * k.M * k.K), b = rnd(k.K * k.N), out = new Float32Array(k.M * k.N);
      return () => {
        for (let p = 0; p < k.batch; p++) {
          out.fill(0);
          for (let i = 0; i < k.M; i++) for (let kk = 0; kk < k.K; kk++) {
            const av = a[(p * k.M + i) * k.K + kk]!, r = kk * k.N, o = i * k.N;
            for (let j = 0; j < k.N; j++) out[o + j]! += av * b[r + j]!;
          }
        }
      };
    }
    case 'conv2d': {
      const k = c.call as Conv2dCall;
      const Ho = Math.floor((k.H + 2 * k.pad - k.kh) / k.stride) + 1, Wo = Math.floor((k.W + 2 * k.pad - k.kw) / k.stride) + 1;
      const x = rnd(k.H * k.W * k.Cin), w = rnd(k.Cout * k.Cin * k.kh * k.kw), out = new Float32Array(Ho * Wo * k.Cout);
      return () => {
        for (let oy = 0; oy < Ho; oy++) for (let ox = 0; ox < Wo; ox++) for (let co = 0; co < k.Cout; co++) {
          let s = 0;
          for (let ky = 0; ky < k.kh; ky++) {
            const iy = oy * k.stride - k.pad + ky;
            if (iy < 0 || iy >= k.H) continue;
            for (let kx = 0; kx < k.kw; kx++) {
              const ix = ox * k.stride - k.pad + kx;
              if (ix < 0 || ix >= k.W) continue;
              const xo = (iy * k.W + ix) * k.Cin, wo = co * k.Cin * k.kh * k.kw + ky * k.kw + kx;
              for (let ci = 0; ci < k.Cin; ci++) s += x[xo + ci]! * w[wo + ci * k.kh * k.kw]!;
            }
          }
          out[(oy * Wo + ox) * k.Cout + co] = s;
        }
      };
    }
    case 'attention': {
      const k = c.call as AttentionCall;
      const q = rnd(k.nq * k.d), kk = rnd(k.nk * k.d), v = rnd(k.nk * k.dv), s = new Float32Array(k.nk), acc = new Float32Array(k.dv);
      return () => {
        for (let bh = 0; bh < k.batch * k.heads; bh++) for (let i = 0; i < k.nq; i++) {
          let m = -Infinity;
          for (let j = 0; j < k.nk; j++) {
            let dot = 0;
            for (let t = 0; t < k.d; t++) dot += q[i * k.d + t]! * kk[j * k.d + t]!;
            s[j] = dot;
            if (dot > m) m = dot;
          }
          let sum = 0;
          acc.fill(0);
          for (let j = 0; j < k.nk; j++) {
            const p = Math.exp(s[j]! - m);
            sum += p;
            for (let t = 0; t < k.dv; t++) acc[t]! += p * v[j * k.dv + t]!;
          }
          for (let t = 0; t < k.dv; t++) acc[t]! /= sum;
        }
      };
    }
    case 'softmax': {
      const k = c.call as SoftmaxCall;
      const x = rnd(k.rows * k.n), out = new Float32Array(x.length);
      return () => {
        for (let r = 0; r < k.rows; r++) {
          let m = -Infinity, s = 0;
          for (let i = 0; i < k.n; i++) m = Math.max(m, x[r * k.n + i]!);
          for (let i = 0; i < k.n; i++) s += (out[r * k.n + i] = Math.exp(x[r * k.n + i]! - m));
          for (let i = 0; i < k.n; i++) out[r * k.n + i]! /= s;
        }
      };
    }
    default: {
      const k = c.call as LayerNormCall;
      const x = rnd(k.rows * k.c), out = new Float32Array(x.length);
      return () => {
        for (let r = 0; r < k.rows; r++) {
          let m = 0, v = 0;
          for (let i = 0; i < k.c; i++) m += x[r * k.c + i]!;
          m /= k.c;
          for (let i = 0; i < k.c; i++) v += (x[r * k.c + i]! - m) ** 2;
          const rs = 1 / Math.sqrt(v / k.c + k.eps);
          for (let i = 0; i < k.c; i++) out[r * k.c + i] = (x[r * k.c + i]! - m) * rs;
        }
      };
    }
  }
}

/** GFLOP/s or GB/s of a call taking `ms`. */
function rate(c: Case, ms: number): string {
  if (c.family.op === 'softmax' || c.family.op === 'layernorm') {
    const k = c.call as SoftmaxCall & LayerNormCall;
    return `${((2 * 4 * k.rows * (k.n ?? k.c)) / ms / 1e6).toFixed(2)} GB/s`;
  }
  return `${((c.family as KernelFamily<unknown>).flops(c.call) / ms / 1e6).toFixed(2)} GFLOP/s`;
}

export interface CandidateRow {
  op: string; label: string; class: string; candidate: string; ms: number; rate: string; isDefault: boolean;
}

/** Times every eligible candidate of each case; returns one row per candidate (and a CPU row when asked). */
export async function benchCandidates(ctx: GpuContext, cases: Case[], o: { reps: number; cpu: boolean; log?: (s: string) => void }): Promise<{ rows: CandidateRow[]; cpu: Record<string, number> }> {
  const rows: CandidateRow[] = [];
  const cpu: Record<string, number> = {};
  for (const c of cases) {
    const fam = c.family as KernelFamily<unknown>;
    const cands = fam.eligible(ctx, c.call);
    const dflt = fam.fallback(ctx, c.call);
    o.log?.(`${c.label}: ${cands.join(', ')}`);
    const { ms } = await timeCandidates(ctx, fam, c.call, cands, { rounds: o.reps, batchMs: 20, keep: dflt });
    for (const cand of cands) {
      if (ms[cand] === undefined) continue;
      rows.push({ op: fam.op, label: c.label, class: fam.classOf(c.call), candidate: cand, ms: ms[cand]!, rate: rate(c, ms[cand]!), isDefault: cand === dflt });
    }
    if (o.cpu) cpu[c.label] = timeCpu(cpuRun(c), 1, 0);
  }
  return { rows, cpu };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const val = (n: string): string | undefined => { const i = args.indexOf(n); return i >= 0 ? args[i + 1] : undefined; };
  const ops = val('--ops')?.split(',');
  const quick = args.includes('--quick');
  const reps = Number(val('--reps') ?? 5);
  const ctx = await GpuContext.create();
  if (args.includes('--gpu-defaults')) ctx.kernels.defaults = 'gpu';
  const cases = CASES.filter((c) => (!ops || ops.includes(c.family.op)) && (!quick || c.quick));
  console.log(`adapter: ${adapterName(ctx.adapter)}`);
  if (ctx.adapter.software) console.log('(a software adapter: these are CPU timings of WebGPU, not a GPU\'s)');
  const t0 = performance.now();
  const { rows, cpu } = await benchCandidates(ctx, cases, { reps, cpu: !args.includes('--no-cpu'), log: (s) => console.error(s) });
  const table: Row[] = [];
  for (const c of cases) {
    for (const r of rows.filter((x) => x.label === c.label)) {
      table.push({ op: r.op, case: r.label, candidate: `${r.candidate}${r.isDefault ? ' (default)' : ''}`, 'ms (median)': r.ms, rate: r.rate });
    }
    if (cpu[c.label] !== undefined) table.push({ op: c.family.op, case: c.label, candidate: 'CPU reference (JS, 1 thread)', 'ms (median)': cpu[c.label]!, rate: rate(c, cpu[c.label]!) });
  }
  console.log(`\nmedian ms per call over ${reps} interleaved batches of ~20 ms (one batch for candidates 2x behind the best); ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  printTable(table);
  const json = val('--json');
  if (json) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(json, JSON.stringify({ adapter: ctx.adapter, rows, cpu }, null, 1));
  }
  ctx.destroy();
}

const isMain = typeof process !== 'undefined' && process.argv[1]?.endsWith('bench/candidates.ts');
if (isMain) main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
