/**
 * `etam everything IMAGE --weights W --out DIR [--points-per-side N ...]`: segment everything in one
 * picture with the automatic mask generator (the official parameters as options). Writes, in DIR:
 *
 *   mask_<K>.png   mask K (0/255), K = 0001, 0002, ... in the generator's order
 *   masks.json     COCO: one annotation per mask, its segmentation a COCO RLE (compressed,
 *                  column-major), plus the official record's fields: area, bbox (XYWH, as the
 *                  reference gives it), predicted_iou, point_coords, stability_score, crop_box
 *   overlay.png    the picture with every mask in its own colour (larger masks under smaller ones)
 *
 * Every file is written under a temporary name and renamed when complete (files.ts); the folder
 * is created only once the masks are made. A signal while the generator works cancels it.
 */
import { basename, join } from 'node:path';
import { loadSharp } from '../io/sharp.js';
import { rleCounts, rleToString } from '../io/rle.js';
import { labelColor } from '../kernels/draw_masks.js';
import {
  AutomaticMaskGenerator, MaskGeneratorError, type AutomaticMaskGeneratorOptions, type MaskRecord,
} from '../model/automatic_mask_generator.js';
import { CliError, getFlag, getNumber, getString, type CommandSpec, type OptionSpec, type ParsedArgs } from './args.js';
import { buildModel, chooseModel, MODEL_OPTIONS } from './model.js';
import { StopSignals, writeFileAtomic, readImageArg } from './files.js';
import { checkOutDir, CocoWriter, encodeRgb, maskPng, overlay, prepareOutDir } from './outputs.js';
import { Progress } from './progress.js';
import type { Output } from './main.js';

/** The generator's parameters as options: --points-per-side for points_per_side, ... (official defaults). */
const PARAMS: (OptionSpec & { key: keyof AutomaticMaskGeneratorOptions })[] = [
  { key: 'pointsPerSide', name: 'points-per-side', type: 'int', value: 'N', help: 'points along each side of the grid (32)' },
  { key: 'pointsPerBatch', name: 'points-per-batch', type: 'int', value: 'N', help: 'points decoded at once (64)' },
  { key: 'predIouThresh', name: 'pred-iou-thresh', type: 'number', value: 'X', help: 'keep masks of predicted IoU above X (0.8; 0 = off)' },
  { key: 'stabilityScoreThresh', name: 'stability-score-thresh', type: 'number', value: 'X', help: 'keep masks of stability score >= X (0.95; 0 = off)' },
  { key: 'stabilityScoreOffset', name: 'stability-score-offset', type: 'number', value: 'X', help: 'logit offset of the stability score (1.0)' },
  { key: 'maskThreshold', name: 'mask-threshold', type: 'number', value: 'X', help: 'logit threshold of the masks (0.0)' },
  { key: 'boxNmsThresh', name: 'box-nms-thresh', type: 'number', value: 'X', help: 'box IoU above which duplicates are dropped (0.7)' },
  { key: 'cropNLayers', name: 'crop-n-layers', type: 'int', value: 'N', help: 'layers of crops after the whole image (0)' },
  { key: 'cropNmsThresh', name: 'crop-nms-thresh', type: 'number', value: 'X', help: 'box IoU for duplicates between crops (0.7)' },
  { key: 'cropOverlapRatio', name: 'crop-overlap-ratio', type: 'number', value: 'X', help: 'overlap of crops, fraction of the short side (0.3413)' },
  { key: 'cropNPointsDownscaleFactor', name: 'crop-n-points-downscale-factor', type: 'int', value: 'N', help: 'layer n has points-per-side / N^n points (1)' },
  { key: 'minMaskRegionArea', name: 'min-mask-region-area', type: 'number', value: 'A', help: 'fill holes, remove islands of at most A low-res pixels (0)' },
];

export const EVERYTHING: CommandSpec = {
  name: 'everything',
  summary: 'Segment everything in one image (the automatic mask generator).',
  usage: ['everything IMAGE --weights W --out DIR [--points-per-side N] [--pred-iou-thresh X] ...'],
  positionals: [1, 1],
  options: [
    ...MODEL_OPTIONS,
    ...PARAMS.map(({ key: _k, ...o }) => o),
    { name: 'use-m2m', type: 'flag', help: 'one step of mask-to-mask refinement' },
    { name: 'single-mask', type: 'flag', help: 'one mask per point instead of three (multimask_output=False)' },
    { name: 'out', short: 'o', type: 'string', value: 'DIR', help: 'output folder (created if needed)' },
    { name: 'no-antialias', type: 'flag', help: 'resize the image without antialiasing, as torchvision < 0.17 did\n(the goldens were made so)' },
    { name: 'no-overlay', type: 'flag', help: 'do not write overlay.png' },
    { name: 'no-png', type: 'flag', help: 'do not write a PNG per mask (masks.json only)' },
    { name: 'quiet', short: 'q', type: 'flag', help: 'no progress or notes on stderr (the summary still goes to stdout)' },
  ],
  details: `The options are the official EfficientTAMAutomaticMaskGenerator parameters, with its defaults.
Outputs in DIR: mask_0001.png ... (0/255, in the generator's order: by crop, then by predicted
IoU), masks.json (COCO RLE per mask with area, bbox, predicted_iou, point_coords,
stability_score, crop_box as the official records have them), overlay.png.

example (random test weights give blobs, hence the thresholds at 0):
  etam everything ../shared/data/images/sf.jpg --weights ../shared/golden/tiny \\
    --points-per-side 8 --pred-iou-thresh 0 --stability-score-thresh 0 --out out/everything`,
};

export async function everything(p: ParsedArgs, out: Output): Promise<number> {
  const cmd = 'everything';
  const imagePath = p.positional[0]!;
  const quiet = getFlag(p, 'quiet');
  const opts: AutomaticMaskGeneratorOptions = { outputMode: 'binary_mask', antialias: !getFlag(p, 'no-antialias') };
  for (const q of PARAMS) {
    const v = getNumber(p, q.name);
    if (v !== undefined) (opts as Record<string, unknown>)[q.key] = v;
  }
  if (getFlag(p, 'use-m2m')) opts.useM2m = true;
  if (getFlag(p, 'single-mask')) opts.multimaskOutput = false;
  const withOverlay = !getFlag(p, 'no-overlay'), withPng = !getFlag(p, 'no-png');
  // the folder is made once the inputs are known to be good (a failed run leaves none)
  const outArg = await checkOutDir(getString(p, 'out'), cmd);
  await loadSharp('etam everything (it reads the image and writes PNGs with sharp)');

  // Ctrl-C, SIGTERM, SIGHUP: while the generator works, cancel it (nothing is written); while the
  // outputs are written, finish them (a second signal: leave now, each file complete or absent).
  let writing = false;
  const cancel = new AbortController();
  const signals = new StopSignals((s) => {
    if (!writing) {
      if (!quiet) out.note('stopping...');
      cancel.abort(s);
    } else if (!quiet) {
      out.note('stopping once the outputs being written are complete...');
    }
  }, async () => undefined).install();
  try {
    return await run();
  } catch (e) {
    if (signals.stopping && (e as Error)?.name === 'AbortError') return signals.exitCode;
    throw e;
  } finally {
    signals.uninstall();
  }

  async function run(): Promise<number> {
    const t0 = performance.now();
    const image = await readImageArg(imagePath);
    const { width: W, height: H } = image;
    const choice = await chooseModel({
      weights: getString(p, 'weights'), variant: getString(p, 'variant'), imageSize: getNumber(p, 'image-size'),
      config: getString(p, 'config'), command: cmd, quiet,
    });
    if (!quiet) for (const n of choice.notes) out.note(`note: ${n}`);
    const { ctx, model } = await buildModel(choice);
    const t1 = performance.now();
    let records: MaskRecord[];
    try {
      let gen: AutomaticMaskGenerator;
      try {
        gen = new AutomaticMaskGenerator(model, opts);
      } catch (e) {
        if (e instanceof MaskGeneratorError) throw new CliError(e.message.replace(/^AutomaticMaskGenerator: /, ''), 2, cmd);
        throw e;
      }
      let bar: Progress | null = null;
      records = await gen.generate(image, {
        signal: cancel.signal,
        onProgress: (done, total) => {
          bar ??= new Progress(cmd, total, { enabled: !quiet, unit: 'steps' });
          bar.update(done);
        },
      });
      (bar as Progress | null)?.finish();
    } finally {
      ctx.destroy();
    }
    const t2 = performance.now();

    writing = true;
    const dir = await prepareOutDir(outArg, cmd);
    const annotations: Record<string, unknown>[] = [];
    const digits = Math.max(4, String(records.length).length);
    for (let k = 0; k < records.length; k++) {
      const r = records[k]!;
      const mask = r.segmentation as Uint8Array;
      const file = `mask_${String(k + 1).padStart(digits, '0')}.png`;
      if (withPng) await writeFileAtomic(join(dir, file), await maskPng(mask, W, H));
      annotations.push({
        category_id: 1, mask_index: k, ...(withPng ? { file } : {}),
        segmentation: { size: [H, W], counts: rleToString(rleCounts(mask, H, W)) },
        area: r.area, bbox: r.bbox, predicted_iou: r.predictedIou, point_coords: r.pointCoords,
        stability_score: r.stabilityScore, crop_box: r.cropBox, iscrowd: 0,
      });
    }
    const coco = await CocoWriter.create(join(dir, 'masks.json'), {
      tool: 'etam everything', image: imagePath, weights: choice.path, model: choice.configFrom,
      rle: 'COCO compressed RLE (pycocotools string), column-major',
      fields: 'area, bbox (XYWH), predicted_iou, point_coords, stability_score, crop_box: as the official generator records them',
      settings: Object.fromEntries(Object.entries(opts).filter(([k]) => k !== 'outputMode')),
    }, [{ id: 1, name: 'mask' }]);
    try {
      await coco.add({ id: 0, file_name: basename(imagePath), width: W, height: H }, annotations);
    } finally {
      await coco.close();
    }
    if (withOverlay) {
      // larger masks first, so that smaller ones stay visible; one colour per mask
      const order = records.map((_, i) => i).sort((a, b) => records[b]!.area - records[a]!.area || a - b);
      const rgb = overlay(image.data, W, H, order.map((i) => records[i]!.segmentation as Uint8Array), order.map((_, k) => labelColor(k + 1)));
      await writeFileAtomic(join(dir, 'overlay.png'), await encodeRgb(rgb, W, H, 'png'));
    }
    out.print(`everything: ${imagePath} (${W}x${H}), ${records.length} mask${records.length === 1 ? '' : 's'} -> ${dir}/`);
    if (records.length && withPng) out.print(`  mask_${'1'.padStart(digits, '0')}.png .. mask_${String(records.length).padStart(digits, '0')}.png`);
    out.print(`  masks.json${withOverlay ? ', overlay.png' : ''}`);
    out.print(`model: ${choice.configFrom}; load ${((t1 - t0) / 1000).toFixed(2)} s, segment ${((t2 - t1) / 1000).toFixed(2)} s`);
    return signals.exitCode;
  }
}
