/**
 * `etam segment IMAGE --weights W --point x,y ... | --box x0,y0,x1,y1 [--multimask] --out DIR`:
 * the image predictor on one picture. Writes, in DIR:
 *
 *   mask_obj<K>_<M>.png   mask M of object K (one object per --box, or one for the points alone;
 *                         with --multimask three masks each, in the model's order)
 *   masks.json            COCO RLE of every mask, its predicted IoU as `score` (see outputs.ts)
 *   overlay.png           the picture with each object's best mask tinted over it, and the prompts
 *
 * Every file is written under a temporary name and renamed when complete (files.ts); the folder
 * is created only once the image, the prompts and the weights are known to be good.
 */
import { basename, join } from 'node:path';
import { loadSharp } from '../io/sharp.js';
import { ImagePredictor, type PredictResult } from '../model/image_predictor.js';
import { CliError, getFlag, getList, getNumber, getString, usageError, type CommandSpec, type ParsedArgs } from './args.js';
import { buildModel, chooseModel, MODEL_OPTIONS } from './model.js';
import { signalExitCode, StopSignals, writeFileAtomic, readImageArg } from './files.js';
import { checkOutDir, CocoWriter, cocoAnnotation, colorOf, drawPrompts, encodeRgb, maskPng, overlay, prepareOutDir, type DrawnPrompt } from './outputs.js';
import { checkOnImage, parseBox, parsePoint } from './prompts.js';
import type { Output } from './main.js';

export const SEGMENT: CommandSpec = {
  name: 'segment',
  summary: 'Segment objects in one image from clicks or boxes.',
  usage: [
    'segment IMAGE --weights W --point x,y[:label] [--point ...] [--multimask] --out DIR',
    'segment IMAGE --weights W --box x0,y0,x1,y1 [--box ...] [--point ...] --out DIR',
  ],
  positionals: [1, 1],
  hints: {
    object: "segment takes --point x,y[:label] and --box x0,y0,x1,y1 (one object per box); --object is for 'etam track'",
  },
  options: [
    ...MODEL_OPTIONS,
    { name: 'point', short: 'p', type: 'string', repeat: true, value: 'x,y[:label]', help: 'a click in image pixels; label 1 (default) foreground, 0 background' },
    { name: 'box', short: 'b', type: 'string', repeat: true, value: 'x0,y0,x1,y1', help: 'a box (top-left, bottom-right corners); one object per box' },
    { name: 'multimask', short: 'm', type: 'flag', help: 'three masks per object (for an ambiguous single click)' },
    { name: 'out', short: 'o', type: 'string', value: 'DIR', help: 'output folder (created if needed)' },
    { name: 'no-antialias', type: 'flag', help: 'resize the image without antialiasing, as torchvision < 0.17 did\n(the goldens were made so)' },
    { name: 'no-overlay', type: 'flag', help: 'do not write overlay.png' },
    { name: 'quiet', short: 'q', type: 'flag', help: 'no notes on stderr (the summary still goes to stdout)' },
  ],
  details: `Coordinates are pixels of IMAGE (x right, y down, from the top-left corner).
Points go with every box. Outputs in DIR: mask_obj<K>_<M>.png (greyscale 0/255), masks.json
(COCO, compressed RLE, column-major, as pycocotools writes it; score = predicted IoU), overlay.png
(the masks in each object's colour, the boxes, and the clicks: a white ring for a positive
click, a black ring and a minus sign for a negative one).

example:
  etam segment ../shared/data/bedroom/00000.jpg --weights ../shared/golden/tiny \\
    --point 528,324 --multimask --out out/segment`,
};

export async function segment(p: ParsedArgs, out: Output): Promise<number> {
  const cmd = 'segment';
  const imagePath = p.positional[0]!;
  const points = getList(p, 'point').map((t) => parsePoint(t, cmd));
  const boxes = getList(p, 'box').map((t) => parseBox(t, cmd));
  if (points.length === 0 && boxes.length === 0) throw usageError(cmd, 'give a prompt: --point x,y (a click) or --box x0,y0,x1,y1');
  const quiet = getFlag(p, 'quiet');
  const withOverlay = !getFlag(p, 'no-overlay');
  // the folder is made once the inputs are known to be good (a failed run leaves none)
  const outArg = await checkOutDir(getString(p, 'out'), cmd);
  await loadSharp('etam segment (it reads the image and writes PNGs with sharp)');

  // Ctrl-C, SIGTERM, SIGHUP: before the outputs are written there is nothing to keep, so stop at
  // once; while they are written (a moment), finish them (a second signal: leave now, each file
  // being complete or absent).
  let writing = false;
  const signals = new StopSignals((s) => {
    if (!writing) process.exit(signalExitCode(s));
    if (!quiet) out.note('stopping once the outputs being written are complete...');
  }, async () => undefined).install();
  try {
    return await run();
  } finally {
    signals.uninstall();
  }

  async function run(): Promise<number> {
    const t0 = performance.now();
    const image = await readImageArg(imagePath);
    const { width: W, height: H } = image;
    checkOnImage(imagePath, points, undefined, W, H);
    boxes.forEach((b) => checkOnImage(imagePath, [], b, W, H));

    const choice = await chooseModel({
      weights: getString(p, 'weights'), variant: getString(p, 'variant'), imageSize: getNumber(p, 'image-size'),
      config: getString(p, 'config'), command: cmd, quiet,
    });
    if (!quiet) for (const n of choice.notes) out.note(`note: ${n}`);
    const { ctx, model } = await buildModel(choice);
    const t1 = performance.now();
    let res: PredictResult;
    try {
      const predictor = new ImagePredictor(model, { antialias: !getFlag(p, 'no-antialias') });
      predictor.setImage(image);
      res = await predictor.predict({
        points: points.length ? points.map((q) => [q.x, q.y]) : undefined,
        labels: points.length ? points.map((q) => q.label) : undefined,
        box: boxes.length ? boxes : undefined,
        multimask: getFlag(p, 'multimask'),
        returnLowRes: false,
      });
      predictor.reset();
    } finally {
      ctx.destroy();
    }
    const t2 = performance.now();
    const masks = res.masks as Uint8Array; // [B, M, H, W] 0/1
    const B = res.batch, M = res.numMasks;

    writing = true;
    const dir = await prepareOutDir(outArg, cmd);
    const written: string[] = [];
    const annotations: Record<string, unknown>[] = [];
    const best: Uint8Array[] = [];
    for (let b = 0; b < B; b++) {
      let bestM = 0;
      for (let m = 0; m < M; m++) {
        const mask = masks.subarray((b * M + m) * H * W, (b * M + m + 1) * H * W);
        const score = res.ious[b * M + m]!;
        if (score > res.ious[b * M + bestM]!) bestM = m;
        const file = `mask_obj${b + 1}_${m}.png`;
        await writeFileAtomic(join(dir, file), await maskPng(mask, W, H));
        written.push(`${file} (score ${score.toFixed(3)})`);
        annotations.push(cocoAnnotation(mask, H, W, { category_id: b + 1, object_id: b + 1, mask_index: m, score, file: file }));
      }
      best.push(masks.subarray((b * M + bestM) * H * W, (b * M + bestM + 1) * H * W));
    }
    const coco = await CocoWriter.create(join(dir, 'masks.json'), {
      tool: 'etam segment', image: imagePath, weights: choice.path, model: choice.configFrom,
      rle: 'COCO compressed RLE (pycocotools string), column-major', score: 'predicted IoU',
    }, Array.from({ length: B }, (_, b) => ({ id: b + 1, name: `object ${b + 1}` })));
    try {
      await coco.add({ id: 0, file_name: basename(imagePath), width: W, height: H }, annotations);
    } finally {
      await coco.close();
    }
    if (withOverlay) {
      const colors = best.map((_, b) => colorOf(b));
      const rgb = overlay(image.data, W, H, best, colors);
      // the clicks go with every box: in the one object's colour, or white among several objects
      const pts = points.map((q) => ({ x: q.x, y: q.y, label: q.label }));
      const prompts: DrawnPrompt[] = boxes.length
        ? boxes.map((box, b) => ({ box, points: [], color: colors[b]! }))
        : [];
      if (pts.length) prompts.push({ points: pts, color: B === 1 ? colors[0]! : [255, 255, 255] });
      drawPrompts(rgb, W, H, prompts);
      await writeFileAtomic(join(dir, 'overlay.png'), await encodeRgb(rgb, W, H, 'png'));
    }
    out.print(`segment: ${imagePath} (${W}x${H}), ${B * M} mask${B * M > 1 ? 's' : ''} -> ${dir}/`);
    for (const w of written) out.print(`  ${w}`);
    out.print(`  masks.json${withOverlay ? ', overlay.png (masks, clicks and boxes)' : ''}`);
    out.print(`model: ${choice.configFrom}; load ${((t1 - t0) / 1000).toFixed(2)} s, encode + decode ${((t2 - t1) / 1000).toFixed(2)} s`);
    return signals.exitCode;
  }
}
