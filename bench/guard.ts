/**
 * What the GPU error scopes of GpuContext.guard cost: `npx tsx bench/guard.ts [case] [frames]`.
 *
 *   1. one small dispatch recorded and submitted, with and without a guard around it (push and
 *      pop of three error scopes, a submit, awaiting the pops), median of 200;
 *   2. wall time per tracked frame of the tiny model (streaming, 96x72 generated frames, one
 *      object), median over the frames after the second: the per-frame path has two guards (the
 *      frame's encoding, the objects' steps). Run the same file on a checkout without guards
 *      (it only uses APIs both have) to compare.
 */
import { resolve } from 'node:path';
import { GpuContext } from '../src/gpu/context.js';
import { loadCase } from '../src/golden/case.js';
import { caseModel } from '../src/golden/stages.js';
import { unary } from '../src/kernels/mask_ops.js';
import { VideoPredictor } from '../src/model/video_predictor.js';
import { median } from './common.js';

async function main(): Promise<void> {
  const dir = resolve(process.argv[2] ?? resolve(import.meta.dirname, '../../shared/golden/tiny'));
  const nFrames = Number(process.argv[3] ?? 40);
  const ctx = await GpuContext.create();
  // (a checkout without guards has no ctx.guard)
  const guard = (ctx as unknown as { guard?: <T>(op: string, f: () => T) => Promise<T> }).guard?.bind(ctx);
  const x = ctx.upload(new Float32Array(4096).fill(1), [4096]);
  const one = async (guarded: boolean) => {
    const t0 = performance.now();
    if (guarded && guard) await guard('bench', () => unary(ctx, x, 'sigmoid').release());
    else { unary(ctx, x, 'sigmoid').release(); ctx.flush(); }
    return performance.now() - t0;
  };
  await ctx.sync();
  for (let i = 0; i < 20; i++) { await one(true); await one(false); }
  const plain: number[] = [], guarded: number[] = [];
  for (let i = 0; i < 200; i++) { plain.push(await one(false)); guarded.push(await one(true)); }
  await ctx.sync();
  console.log(`one dispatch + submit: ${median(plain).toFixed(3)} ms without a guard, ${median(guarded).toFixed(3)} ms with one${guard ? '' : ' (no guard in this checkout)'}`);

  const c = await loadCase(dir);
  const model = caseModel(ctx, c);
  const W = 96, H = 72;
  const frame = (i: number) => {
    const data = new Uint8Array(W * H * 3);
    for (let k = 0; k < data.length; k++) data[k] = (k * 7 + i * 13 + ((k / 3) % W > 30 + (i % 10) && (k / 3) % W < 60 ? 120 : 0)) & 255;
    return { data, width: W, height: H, channels: 3 as const };
  };
  const vp = new VideoPredictor(model, { frames: frame, numFrames: nFrames, streaming: true });
  (await vp.addPoints(0, 1, [[45, 32]], [1])).release();
  const times: number[] = [];
  let t0 = performance.now();
  for await (const fm of vp.propagate()) {
    await fm.objectScores(); // wait for the frame's work
    fm.release();
    const t1 = performance.now();
    times.push(t1 - t0);
    t0 = t1;
  }
  console.log(`tracked frame (${dir.split('/').pop()}, ${W}x${H}, 1 object): median ${median(times.slice(2)).toFixed(2)} ms over ${times.length - 2} frames; ${ctx.stats.submits} submits in all`);
  vp.dispose();
  ctx.destroy();
}

await main();
process.exit(0);
