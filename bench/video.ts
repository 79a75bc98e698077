/**
 * Time per tracked frame, split by module.
 *
 *   npm run bench:video [-- --sizes 512,1024 --frames 6]
 *       EfficientTAM-Ti against SAM 2.1-tiny, in the same run, at each input size: both built from
 *       random weights of the official shapes (the manifests of efficienttam_ti and
 *       sam2.1_hiera_tiny, src/weights/manifest.ts; timing does not depend on the values), one
 *       object clicked on frame 0 of the bedroom frames and tracked through the next ones.
 *   npm run bench:video -- <case folder> [frames]
 *       a golden case's model (e.g. ../shared/golden/ti512), 1 and then 2 objects.
 *
 * Tracking runs in streaming mode; in the comparison the models are stepped in turn, frame by
 * frame, so that the load of a shared machine weighs on both alike. Reported per frame after the
 * prompted frame and the first two tracked ones (pipeline compiles excluded; the memory bank still
 * fills over the first num_maskmem frames, equally for both models): the median GPU time of the image encoder and, summed over the objects, of memory
 * attention, the mask decoder (prompt encoder + SAM heads) and the memory encoder, from GpuContext
 * profiles (GPU timestamps of every compute pass, when the adapter has `timestamp-query`); "other"
 * is the rest of the GPU work (frame preprocessing, mask copies); and the wall time per frame
 * (JPEG decoding and the CPU bicubic resize of the frame included). Each model gets its own GPU
 * context.
 */
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { GpuContext } from '../src/gpu/context.js';
import { loadCase } from '../src/golden/case.js';
import { caseModel } from '../src/golden/stages.js';
import { decodeImageFile } from '../src/io/image.js';
import { parseSafetensors, writeSafetensors, type SafetensorsFile } from '../src/io/safetensors.js';
import { preset, withImageSize, type EfficientTAMConfig, type Variant } from '../src/model/config.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { VideoPredictor } from '../src/model/video_predictor.js';
import { manifest } from '../src/weights/manifest.js';
import { syntheticTensors } from './convert.js';
import { median, printTable, type Row } from './common.js';

const PARTS = ['image_encoder', 'memory_attention', 'decoder', 'memory_encoder'] as const;
const FRAMES_DIR = resolve(import.meta.dirname, '../../shared/data/bedroom');

/**
 * Tracking runs, one per model (each on its own GPU context), stepped frame by frame in turn:
 * on a shared machine the load then weighs on every model alike. `objects` objects are prompted
 * on frame 0 of the first `n` bedroom frames. Returns per model the per-frame GPU times by module
 * and the wall time.
 */
async function trackInTurn(runs: { ctx: GpuContext; model: EfficientTAM; name: string }[], n: number, objects: number):
  Promise<Record<string, number>[][]> {
  const names = readdirSync(FRAMES_DIR).filter((f) => f.endsWith('.jpg')).sort().slice(0, n);
  const states = [];
  for (const r of runs) {
    const vp = new VideoPredictor(r.model, {
      frames: (i: number) => decodeImageFile(resolve(FRAMES_DIR, names[i]!)).then((d) => ({ ...d, channels: d.channels as 3 | 4 })),
      numFrames: names.length,
      streaming: true,
    });
    (await vp.addPoints(0, 1, [[528, 324]], [1])).release();
    if (objects === 2) (await vp.addBox(0, 2, [96, 108, 384, 378])).release();
    await r.ctx.sync();
    states.push({ ...r, vp, it: vp.propagate()[Symbol.asyncIterator](), perFrame: [] as Record<string, number>[] });
  }
  for (let f = 0; f < names.length; f++) {
    for (const s of states) {
      const t = performance.now();
      s.ctx.startProfile();
      const next = await s.it.next();
      await s.ctx.sync();
      const marks = await s.ctx.endProfile();
      const wall = performance.now() - t;
      if (next.done) throw new Error(`${s.name}: the propagation ended at frame ${f}`);
      next.value.release();
      const sums: Record<string, number> = { wall };
      for (const { label, ms } of marks) sums[label] = (sums[label] ?? 0) + ms;
      s.perFrame.push(sums);
      process.stderr.write(`  frame ${f} ${s.name}: ${wall.toFixed(0)} ms\n`);
    }
  }
  for (const s of states) s.vp.dispose();
  return states.map((s) => s.perFrame);
}

/** The medians of the steady frames (after the prompted frame and two tracked ones, which compile pipelines) as table columns. */
function summarise(perFrame: Record<string, number>[]): Row {
  const steady = perFrame.slice(3);
  if (!steady.length) throw new Error("bench:video needs at least 4 frames (the prompted frame and the first two tracked ones are not timed)");
  const row: Row = { frames: steady.length };
  for (const p of PARTS) row[`${p} ms`] = median(steady.map((s) => s[p] ?? 0));
  row['other GPU ms'] = median(steady.map((s) => (s.start ?? 0) + (s.rest ?? 0)));
  row['frame ms (wall)'] = median(steady.map((s) => s.wall!));
  row['fps'] = (1000 / median(steady.map((s) => s.wall!))).toFixed(3);
  return row;
}

/** A model of an official variant's shapes with random weights (F32), at input size `size`. */
function syntheticModel(ctx: GpuContext, variant: Variant, size: number, weights: SafetensorsFile): EfficientTAM {
  let cfg: EfficientTAMConfig = preset(variant);
  if (cfg.image_size !== size) cfg = withImageSize(cfg, size);
  return EfficientTAM.load(ctx, weights, cfg);
}

function syntheticWeights(variant: Variant): SafetensorsFile {
  const tensors = syntheticTensors(manifest(variant), 14);
  const rec: Parameters<typeof writeSafetensors>[0] = {};
  for (const t of tensors) rec[t.name] = { dtype: 'F32', shape: t.shape, data: t.data };
  return parseSafetensors(writeSafetensors(rec), `random ${variant}`);
}

async function compare(sizes: number[], frames: number): Promise<void> {
  const models: { name: string; variant: Variant }[] = [
    { name: 'EfficientTAM-Ti', variant: 'efficienttam_ti' },
    { name: 'SAM 2.1-tiny', variant: 'sam2.1_hiera_tiny' },
  ];
  const weights = models.map((m) => syntheticWeights(m.variant));
  const rows: Row[] = [];
  let adapter = '';
  for (const size of sizes) {
    process.stderr.write(`${models.map((m) => m.name).join(' and ')} (random weights of the official shapes) at ${size}x${size}, ${frames} frames:\n`);
    const runs = await Promise.all(models.map(async (m, i) => {
      const ctx = await GpuContext.create();
      const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
      adapter = info ? `${info.vendor} ${info.architecture} ${info.description ?? ''}`.trim() : 'unknown adapter';
      return { ctx, model: syntheticModel(ctx, m.variant, size, weights[i]!), name: m.name };
    }));
    const perModel = await trackInTurn(runs, frames, 1);
    for (const r of runs) r.ctx.destroy();
    const [a, b] = perModel.map((pf, i): Row => ({ model: models[i]!.name, input: size, ...summarise(pf) })) as [Row, Row];
    rows.push(a, b);
    // SAM 2.1-tiny / EfficientTAM-Ti, column by column
    const ratio: Row = { model: 'SAM 2.1 / ETAM', input: size };
    for (const k of Object.keys(a)) {
      if (k.endsWith('ms') || k.endsWith('(wall)')) ratio[k] = `${((b[k] as number) / Math.max(1e-9, a[k] as number)).toFixed(2)}x`;
    }
    rows.push(ratio);
  }
  console.log(`per tracked frame, 1 object, medians of frames 3..${frames - 1}, the two models tracked in turn frame by frame (${adapter})`);
  printTable(rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' && k !== 'input' && k !== 'frames' ? v.toFixed(0) : v]))));
}

async function caseMode(dir: string, nFrames: number): Promise<void> {
  const c = await loadCase(dir);
  const ctx = await GpuContext.create();
  const model = caseModel(ctx, c);
  console.log(`${dir}: image size ${model.imageSize}, ${nFrames} bedroom frames`);
  const rows: Row[] = [];
  for (const objects of [1, 2]) {
    const [perFrame] = await trackInTurn([{ ctx, model, name: `${objects} object(s)` }], nFrames, objects);
    const row = summarise(perFrame!);
    rows.push({ objects, ...Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v === 'number' && k !== 'frames' ? v.toFixed(0) : v])) });
  }
  printTable(rows);
  ctx.destroy();
}

async function main(argv: string[]): Promise<void> {
  const opt = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  };
  const positional = argv.filter((a, i) => !a.startsWith('--') && !(i > 0 && argv[i - 1]!.startsWith('--') && !argv[i - 1]!.includes('=')));
  if (positional.length) {
    await caseMode(resolve(positional[0]!), Number(positional[1] ?? 8));
    return;
  }
  const sizes = (opt('sizes') ?? '512,1024').split(',').map(Number);
  if (!sizes.every((s) => s > 0 && s % 32 === 0)) throw new Error(`--sizes ${opt('sizes')}: multiples of 32 (EfficientTAM: 512 or 1024)`);
  await compare(sizes, Number(opt("frames") ?? 6));
}

await main(process.argv.slice(2));
