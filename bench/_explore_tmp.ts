import { GpuContext } from '../src/gpu/context.js';
import { linear, type MatmulTile } from '../src/kernels/matmul.js';
import { timeGpu, gflops } from './common.js';
import { randn } from '../tests/helpers.js';
const ctx = await GpuContext.create();
const tiles: MatmulTile[] = JSON.parse(process.argv[2]!);
const sizes = JSON.parse(process.argv[3] ?? '[[1024,192,576],[4096,256,2048]]') as [number,number,number][];
for (const [M, K, N] of sizes) {
  const x = ctx.upload(randn(M * K, 1), [M, K]), w = ctx.upload(randn(N * K, 2, 0.1), [N, K]);
  const out = ctx.empty([M, N]);
  for (const t of tiles) {
    linear(ctx, x, w, { out, tile: t }); await ctx.sync();
    const reps = 3; const c0 = process.cpuUsage(); const t0 = performance.now();
    for (let r = 0; r < reps; r++) { linear(ctx, x, w, { out, tile: t }); await ctx.sync(); }
    const cu = process.cpuUsage(c0); const cpuMs = (cu.user + cu.system) / 1000 / reps; const ms = (performance.now() - t0) / reps;
    console.log(`${M}x${K}x${N} ${JSON.stringify(t)} wall ${ms.toFixed(1)} ms ${gflops(M, K, N, ms).toFixed(2)} GFLOP/s | cpu ${cpuMs.toFixed(1)} ms ${gflops(M, K, N, cpuMs).toFixed(2)} GFLOP/cpu-s`);
  }
}
process.exit(0);
