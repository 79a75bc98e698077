/**
 * Segment everything, per image: `npm run bench:amg -- [case folder] [image] [--points-per-side N]
 * [--runs N] [--no-torch]` (default ../shared/golden/ti512 on ../shared/data/images/sf.jpg, 32
 * points per side, the official defaults otherwise).
 *
 * Two settings: the official defaults (IoU 0.8, stability 0.95: with random weights few masks get
 * through), and every threshold at 0 with box NMS at 0.95 (as the goldens run; every candidate
 * reaches NMS and many masks are made). For each: the wall time of `generate` (median of the runs,
 * after a warm-up that compiles), its GPU time split into encoder, decoder batches, filtering
 * (stability scores, boxes, thresholds), NMS and the output masks, from GpuContext profile marks,
 * the readbacks, and the official PyTorch generator on the same image and machine (bench/amg_torch.py,
 * Debian's PyTorch on the CPU; needs ETAM_REF, see there) for a ratio.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { GpuContext } from '../src/gpu/context.js';
import { loadCase } from '../src/golden/case.js';
import { caseModel } from '../src/golden/stages.js';
import { decodeImageFile } from '../src/io/image.js';
import { AutomaticMaskGenerator, type AutomaticMaskGeneratorOptions } from '../src/model/automatic_mask_generator.js';
import { median, printTable, type Row } from './common.js';

const snake = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v]));

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (name: string) => { const i = args.indexOf(name); if (i < 0) return undefined; const v = args[i + 1]; args.splice(i, 2); return v; };
  const perSide = Number(flag('--points-per-side') ?? 32);
  const runs = Number(flag('--runs') ?? 1);
  const noTorch = args.includes('--no-torch');
  const pos = args.filter((a) => !a.startsWith('--'));
  const dir = resolve(pos[0] ?? resolve(import.meta.dirname, '../../shared/golden/ti512'));
  const imagePath = resolve(pos[1] ?? resolve(import.meta.dirname, '../../shared/data/images/sf.jpg'));
  const c = await loadCase(dir);
  const ctx = await GpuContext.create();
  const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const adapter = info ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : 'unknown';
  const model = caseModel(ctx, c);
  const img = await decodeImageFile(imagePath);
  console.log(`${dir} (S = ${model.imageSize}) on ${imagePath} (${img.width}x${img.height}), ${perSide}x${perSide} points; ` +
    `adapter: ${adapter}${ctx.device.features.has('timestamp-query') ? ' (timestamp queries)' : ' (no timestamp queries: marks wait for the queue)'}`);

  const settings: Record<string, AutomaticMaskGeneratorOptions> = {
    'official defaults': { pointsPerSide: perSide },
    'thresholds 0, NMS 0.95': { pointsPerSide: perSide, predIouThresh: 0, stabilityScoreThresh: 0, boxNmsThresh: 0.95 },
  };
  const rows: Row[] = [];
  for (const [name, o] of Object.entries(settings)) {
    // torchvision 0.14's Resize (what the Debian PyTorch runs) does not antialias: the same work here
    const opts = { ...o, antialias: false };
    await new AutomaticMaskGenerator(model, { ...opts, pointsPerSide: 2 }).generate(img); // compiles
    const gen = new AutomaticMaskGenerator(model, opts);
    const wall: number[] = [];
    const split: Record<string, number[]> = {};
    let masks = 0, readbacks = 0;
    for (let r = 0; r < runs; r++) {
      const rb = ctx.stats.readbacks;
      ctx.startProfile();
      const t0 = performance.now();
      masks = (await gen.generate(img)).length;
      wall.push(performance.now() - t0);
      readbacks = ctx.stats.readbacks - rb;
      const sums: Record<string, number> = {};
      for (const p of await ctx.endProfile()) sums[p.label] = (sums[p.label] ?? 0) + p.ms;
      for (const [k, v] of Object.entries(sums)) (split[k] ??= []).push(v);
    }
    const ms = (k: string) => (split[k] ? median(split[k]!) / 1000 : 0);
    const row: Row = {
      settings: name, masks, 'generate s': median(wall) / 1000,
      'encoder s': ms('encoder'), 'decoder s': ms('decoder'), 'filter s': ms('filter'), 'NMS s': ms('nms'), 'masks s': ms('masks'),
      readbacks,
    };
    if (!noTorch) {
      const ref = process.env.ETAM_REF ?? '/tmp/etam';
      if (!existsSync(resolve(ref, 'efficient_track_anything'))) {
        row['PyTorch s'] = `(no ETAM_REF: ${ref})`;
      } else {
        const kw = snake({ pointsPerBatch: 64, ...o });
        const res = spawnSync('/usr/bin/python3', [resolve(import.meta.dirname, 'amg_torch.py'), dir, imagePath, JSON.stringify(kw)],
          { env: { ...process.env, ETAM_REF: ref, RUNS: String(runs) }, encoding: 'utf8', maxBuffer: 1 << 24 });
        const line = res.stdout.trim().split('\n').pop() ?? '';
        try {
          const t = JSON.parse(line) as { generate_s: number; set_image_s: number; masks: number; torch: string; threads: number };
          row['PyTorch s'] = t.generate_s;
          row['PyTorch masks'] = t.masks;
          row['PyTorch / ours'] = t.generate_s / (median(wall) / 1000);
          row.torch = `${t.torch}, ${t.threads} threads, set_image ${t.set_image_s.toFixed(2)} s`;
        } catch {
          row['PyTorch s'] = `(failed: ${(res.stderr || line).trim().split('\n').pop()})`;
        }
      }
    }
    rows.push(row);
    console.log(JSON.stringify(row));
  }
  printTable(rows);
  ctx.destroy();
}

await main();
