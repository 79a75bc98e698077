/**
 * Kernel benchmark: `linear` (x · Wᵀ, PyTorch Linear layout) at the encoder's sizes, on the GPU
 * and, in the same run, on the CPU with a plain JS loop, printed as a markdown table.
 *
 * Run: npx tsx bench/kernels.ts        (npm run bench:kernels)
 * Other benchmarks (attention, ...) can push rows onto `rows` via `benchHooks` before main runs,
 * or reuse printTable / timeGpu / timeCpu from ./common.js.
 */
import { GpuContext } from '../src/gpu/context.js';
import { linear } from '../src/kernels/matmul.js';
import { gflops, printTable, timeCpu, timeGpu, type Row } from './common.js';

export const CPU_NAME = 'CPU: plain JS f32 i-k-j loop, 1 thread';

/** out[M, N] = x[M, K] · w[N, K]ᵀ with the weight transposed once to [K, N] outside the timing. */
export function cpuLinear(x: Float32Array, wT: Float32Array, out: Float32Array, M: number, K: number, N: number): void {
  out.fill(0);
  for (let i = 0; i < M; i++) {
    const o = i * N;
    for (let k = 0; k < K; k++) {
      const a = x[i * K + k]!;
      const r = k * N;
      for (let j = 0; j < N; j++) out[o + j]! += a * wT[r + j]!;
    }
  }
}

const rand = (n: number, seed: number): Float32Array => {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
};

/** [M, K, N] of the linear layers that matter (EfficientTAM ViT-S/ViT-Ti encoder, memory attention, MLPs). */
export const LINEAR_SIZES: readonly [number, number, number][] = [
  [1024, 192, 576],
  [1024, 768, 192],
  [1024, 192, 768],
  [4096, 192, 192],
  [4096, 256, 2048],
];

export const rows: Row[] = [];

/** Extra benchmarks (e.g. attention) registered by other modules; each appends rows. */
export const benchHooks: ((ctx: GpuContext, rows: Row[]) => Promise<void>)[] = [];

export async function benchLinear(ctx: GpuContext, reps = 5, cpuReps = 1): Promise<void> {
  for (const [M, K, N] of LINEAR_SIZES) {
    const xs = rand(M * K, 1), ws = rand(N * K, 2);
    const x = ctx.upload(xs, [M, K]), w = ctx.upload(ws, [N, K]);
    const out = ctx.empty([M, N]);
    const gpuMs = await timeGpu(ctx, () => { linear(ctx, x, w, { out }); }, reps, 2);

    const wT = new Float32Array(K * N);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wT[k * N + n] = ws[n * K + k]!;
    const cpuOut = new Float32Array(M * N);
    const cpuMs = timeCpu(() => cpuLinear(xs, wT, cpuOut, M, K, N), cpuReps, 1);

    // sanity: the two agree
    const g = await out.read();
    let err = 0, mag = 0;
    for (let i = 0; i < g.length; i += 97) { err = Math.max(err, Math.abs(g[i]! - cpuOut[i]!)); mag = Math.max(mag, Math.abs(cpuOut[i]!)); }
    if (err > 1e-4 * Math.max(mag, 1)) throw new Error(`linear ${M}x${K}x${N}: GPU and CPU differ by ${err}`);

    rows.push({
      op: `linear ${M}x${K}x${N} (MxKxN)`,
      'GPU ms': gpuMs,
      'GPU GFLOP/s': gflops(M, K, N, gpuMs),
      [`${CPU_NAME} ms`]: cpuMs,
      'CPU GFLOP/s': gflops(M, K, N, cpuMs),
      'GPU/CPU': cpuMs / gpuMs,
    });
    x.release(); w.release(); out.release();
  }
}

async function main(): Promise<void> {
  const ctx = await GpuContext.create();
  await benchLinear(ctx);
  for (const hook of benchHooks) await hook(ctx, rows);
  console.log('\nGPU: median of 5 runs after 2 warm-ups, each timed from submit to `await ctx.sync()`.');
  console.log(`CPU: median, same process, ${CPU_NAME}.\n`);
  printTable(rows);
  ctx.destroy();
}

// (guarded so that the module can be imported in a browser, by bench/suite.ts)
const isMain = typeof process !== 'undefined' &&
  (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('bench/kernels.ts'));
if (isMain) {
  main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
}
