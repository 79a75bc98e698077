/**
 * `etam track (FRAMES_DIR | VIDEO.mp4) --weights W --object 'frame=0 point=x,y' ... --out DIR`:
 * the video predictor over a folder of frames or a video. Each tracked frame's files are written
 * as soon as the frame is tracked (Ctrl-C stops after the current frame and closes the files):
 *
 *   masks/obj<K>/<frame>.png   object K's mask on the frame (0/255)
 *   masks.json                 COCO RLE of every object on every tracked frame; `score` is the
 *                              probability that the object is present (sigmoid of the object
 *                              score logit, also given), `present` = logit > 0
 *   overlays/<frame>.jpg       the frame with the masks tinted over it
 *   overlay.mp4                the overlays as a video (when ffmpeg is installed)
 */
import { join, resolve } from 'node:path';
import { resourceUsage } from 'node:process';
import { VideoPredictor, type VideoPredictorOptions } from '../model/video_predictor.js';
import { CliError, getFlag, getList, getNumber, getString, usageError, type CommandSpec, type ParsedArgs } from './args.js';
import { haveFfmpeg, openFrames, VideoWriter, type FrameReader } from './frames.js';
import { buildModel, chooseModel, MODEL_OPTIONS } from './model.js';
import { loadSharp } from '../io/sharp.js';
import { makeDir, StopSignals, writeFileAtomic } from './files.js';
import { checkOutDir, CocoWriter, cocoAnnotation, colorOf, drawPrompts, encodeRgb, maskPng, overlay, prepareOutDir } from './outputs.js';
import { checkOnImage, parseObjects, type ObjectPrompt } from './prompts.js';
import { formatBytes, formatDuration, Progress } from './progress.js';
import type { Output } from './main.js';

export const TRACK: CommandSpec = {
  name: 'track',
  summary: 'Track objects through a video (a folder of JPEG/PNG frames, or an MP4 read with ffmpeg).',
  usage: [
    "track FRAMES_DIR --weights W --object 'frame=0 point=x,y' [--object ...] --out DIR",
    "track VIDEO.mp4 --weights W --object 'frame=0 box=x0,y0,x1,y1' [--reverse] [--start N] [--frames N] --out DIR",
  ],
  positionals: [1, 1],
  hints: {
    point: "track takes each object's prompts in one --object: --object 'point=x,y' (on frame 0), or --object 'frame=N point=x,y point=x,y:0'",
    box: "track takes each object's prompts in one --object: --object 'box=x0,y0,x1,y1' (on frame 0), or --object 'frame=N box=x0,y0,x1,y1'",
    multimask: 'track keeps one mask per object (the official video predictor picks the best of three on a single click)',
  },
  options: [
    ...MODEL_OPTIONS,
    { name: 'object', short: 'O', type: 'string', repeat: true, value: 'SPEC',
      help: "an object's prompt on a frame: 'frame=N point=x,y[:label] ... box=x0,y0,x1,y1 id=K'\n" +
        '(frame defaults to 0; objects are numbered 1, 2, ... unless id= is given;\nthe same id= on another frame adds a prompt there)' },
    { name: 'start', type: 'int', value: 'N', help: 'first frame to track (default: the first prompted frame;\nwith --reverse the last)' },
    { name: 'frames', type: 'int', value: 'N', help: 'how many frames to track (default: to the end)' },
    { name: 'reverse', type: 'flag', help: 'track backwards in time' },
    { name: 'out', short: 'o', type: 'string', value: 'DIR', help: 'output folder (created if needed)' },
    { name: 'no-overlay', type: 'flag', help: 'no overlay frames and no overlay.mp4' },
    { name: 'fps', type: 'number', value: 'N', help: "overlay.mp4's frame rate (default: the video's, or 24 for a folder)" },
    { name: 'quiet', short: 'q', type: 'flag', help: 'no progress bar or notes on stderr (the summary still goes to stdout)' },
  ],
  details: `Frame numbers count from 0 in the order of the folder's files (sorted by their numbers) or
of the video. Coordinates are pixels of the frames (x right, y down, from the top-left corner).
Frames are decoded as they are needed. Outputs in DIR: masks/obj<K>/<frame>.png (grey 0/255),
masks.json (COCO, compressed RLE, column-major, as pycocotools writes it), overlays/<frame>.jpg
and overlay.mp4 (with ffmpeg); the overlays show the prompts too. Every file is written under a
temporary name and renamed when complete. Ctrl-C (or SIGTERM, SIGHUP) stops after the current
frame and closes masks.json and overlay.mp4; a second one closes them at once.

example:
  etam track ../shared/data/bedroom --weights ../shared/golden/tiny \\
    --object 'frame=0 point=528,324' --object 'frame=0 box=96,108,384,378' --out out/bedroom`,
};

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/** The frames propagate() visits, in order (as VideoPredictor.propagate picks them). */
export function trackOrder(numFrames: number, prompts: readonly ObjectPrompt[], o: { start?: number; frames?: number; reverse: boolean }): number[] {
  const frames = prompts.map((q) => q.frame);
  const start = o.start ?? (o.reverse ? Math.max(...frames) : Math.min(...frames));
  const max = o.frames !== undefined ? o.frames - 1 : numFrames;
  const order: number[] = [];
  if (o.reverse) {
    const end = Math.max(start - max, 0);
    if (start > 0) for (let t = start; t >= end; t--) order.push(t);
  } else {
    const end = Math.min(start + max, numFrames - 1);
    for (let t = start; t <= end; t++) order.push(t);
  }
  return order;
}

export async function track(p: ParsedArgs, out: Output): Promise<number> {
  const cmd = 'track';
  const source = p.positional[0]!;
  const prompts = parseObjects(getList(p, 'object'), cmd);
  if (prompts.length === 0) throw usageError(cmd, "give at least one object: --object 'frame=0 point=x,y' (or box=x0,y0,x1,y1)");
  const reverse = getFlag(p, 'reverse');
  const start = getNumber(p, 'start');
  const count = getNumber(p, 'frames');
  if (start !== undefined && start < 0) throw usageError(cmd, `--start ${start} is negative`);
  if (count !== undefined && count < 1) throw usageError(cmd, `--frames ${count}: track at least 1 frame`);
  const quiet = getFlag(p, 'quiet');
  const withOverlay = !getFlag(p, 'no-overlay');
  const fpsArg = getNumber(p, 'fps');
  if (fpsArg !== undefined && !(fpsArg > 0)) throw usageError(cmd, `--fps ${fpsArg} is not a positive number`);
  // the folder is made once the frames, the prompts and the weights are known to be good
  const outArg = await checkOutDir(getString(p, 'out'), cmd);
  await loadSharp('etam track (it reads frames and writes PNGs with sharp)');

  const t0 = performance.now();
  const reader = await openFrames(source);
  try {
    const { numFrames: N, width: W, height: H } = reader;
    for (const q of prompts) {
      if (q.frame >= N) throw new CliError(`--object '${q.text}': frame ${q.frame} does not exist (${source} has ${N} frames, 0..${N - 1})`, 2);
      checkOnImage(`--object '${q.text}'`, q.points, q.box, W, H);
    }
    if (start !== undefined && start >= N) throw new CliError(`--start ${start}: ${source} has ${N} frames (0..${N - 1})`, 2);
    const order = trackOrder(N, prompts, { start, frames: count, reverse });
    if (order.length === 0) throw new CliError(`nothing to track: going backwards from frame ${start ?? 0} visits no frame`, 2);

    const choice = await chooseModel({
      weights: getString(p, 'weights'), variant: getString(p, 'variant'), imageSize: getNumber(p, 'image-size'),
      config: getString(p, 'config'), command: cmd, quiet,
    });
    if (!quiet) for (const n of choice.notes) out.note(`note: ${n}`);
    const { ctx, model } = await buildModel(choice);
    try {
      return await run({ reader, ctx, model, prompts, order, reverse, start, count, outArg, quiet, withOverlay, fpsArg, out, choiceFrom: choice.configFrom, weights: choice.path, source, t0 });
    } finally {
      ctx.destroy();
    }
  } finally {
    reader.close();
  }
}

interface RunArgs {
  reader: FrameReader;
  ctx: Awaited<ReturnType<typeof buildModel>>['ctx'];
  model: Awaited<ReturnType<typeof buildModel>>['model'];
  prompts: ObjectPrompt[];
  order: number[];
  reverse: boolean;
  start: number | undefined;
  count: number | undefined;
  /** the output folder (created once the prompts are in) */
  outArg: string;
  quiet: boolean;
  withOverlay: boolean;
  fpsArg: number | undefined;
  out: Output;
  choiceFrom: string;
  weights: string;
  source: string;
  t0: number;
}

async function run(a: RunArgs): Promise<number> {
  const { reader, ctx, model, out } = a;
  const { numFrames: N, width: W, height: H } = reader;
  const options: VideoPredictorOptions = {
    frames: (i: number) => reader.get(i),
    numFrames: N, videoHeight: H, videoWidth: W,
    // a plain pass: only the memories ahead are needed, old frames' outputs can go
    streaming: !a.reverse,
  };
  const vp = new VideoPredictor(model, options);

  // prompts, in the order given
  for (const q of a.prompts) {
    const pts = q.points.map((pt) => [pt.x, pt.y]);
    const labels = q.points.map((pt) => pt.label);
    const fm = q.box ? await vp.addBox(q.frame, q.id, q.box, { points: pts, labels }) : await vp.addPoints(q.frame, q.id, pts, labels);
    fm.release();
  }
  const ids = vp.objIds;
  const dir = await prepareOutDir(a.outArg, 'track');

  for (const id of ids) await makeDir(join(dir, 'masks', `obj${id}`));
  if (a.withOverlay) await makeDir(join(dir, 'overlays'));
  const coco = await CocoWriter.create(join(dir, 'masks.json'), {
    tool: 'etam track', source: a.source, weights: a.weights, model: a.choiceFrom,
    prompts: a.prompts.map((q) => ({ object_id: q.id, frame: q.frame, points: q.points.map((pt) => [pt.x, pt.y, pt.label]), box: q.box ?? null })),
    reverse: a.reverse,
    rle: 'COCO compressed RLE (pycocotools string), column-major',
    score: 'sigmoid(object_score_logit): the probability that the object is present',
  }, ids.map((id) => ({ id, name: `object ${id}` })));
  let video: VideoWriter | null = null;
  let videoNote = '';
  if (a.withOverlay) {
    if (haveFfmpeg()) video = new VideoWriter(join(dir, 'overlay.mp4'), W, H, a.fpsArg ?? reader.fps ?? 24);
    else videoNote = 'no overlay.mp4: ffmpeg is not installed (apt install ffmpeg)';
  }
  const colors = ids.map((_, k) => colorOf(k));
  const colorOfId = new Map(ids.map((id, k) => [id, colors[k]!]));

  let done = 0;
  let pending: Promise<void> = Promise.resolve();
  /** set by a second signal: no new files are started, the open ones are closed */
  let quitting = false;
  const writeFrame = async (t: number, masks: Uint8Array, scores: Float32Array): Promise<void> => {
    if (quitting) return;
    const name = reader.frameName(t);
    const planes = ids.map((_, k) => masks.subarray(k * H * W, (k + 1) * H * W));
    const anns: Record<string, unknown>[] = [];
    await Promise.all(planes.map(async (m, k) => {
      await writeFileAtomic(join(dir, 'masks', `obj${ids[k]}`, `${name}.png`), await maskPng(m, W, H));
    }));
    planes.forEach((m, k) => {
      const s = scores[k]!;
      anns.push(cocoAnnotation(m, H, W, { category_id: ids[k], object_id: ids[k], frame: t, score: Number(sigmoid(s).toFixed(6)), object_score_logit: s, present: s > 0 }));
    });
    // masks.json lists the frame once its PNGs are on disk (even when quitting: they are there)
    await coco.add({ id: t, file_name: reader.fileName(t), width: W, height: H }, anns);
    if (a.withOverlay && !quitting) {
      const rgb = overlay((await reader.get(t)).data, W, H, planes.filter((_, k) => scores[k]! > 0), colors.filter((_, k) => scores[k]! > 0));
      // the prompts given on this frame, in their objects' colours
      drawPrompts(rgb, W, H, a.prompts.filter((q) => q.frame === t).map((q) => ({ points: q.points, box: q.box, color: colorOfId.get(q.id)! })));
      await writeFileAtomic(join(dir, 'overlays', `${name}.jpg`), await encodeRgb(rgb, W, H, 'jpeg'));
      if (!quitting) await video?.write(rgb);
    }
  };

  // Ctrl-C, SIGTERM or SIGHUP: finish the frame in hand and close the files. A second one: close
  // the files now (the frame being written completes, masks.json and overlay.mp4 are finished
  // with the frames written before it) and leave. A third: leave at once (each file is then
  // complete or absent: they are written under temporary names).
  const bar = new Progress('track', a.order.length, { enabled: !a.quiet, unit: 'frames' });
  const signals = new StopSignals(() => {
    bar.message('stopping after this frame (Ctrl-C again to stop at once)...');
  }, async () => {
    quitting = true;
    bar.message('stopping now: closing masks.json and overlay.mp4 with the frames written...');
    await pending.catch(() => undefined);
    await coco.close().catch(() => coco.discard());
    await video?.close(5000);
  }).install();

  const mem = { rssAt10: 0, gpuAt10: 0, rssPeak: 0, gpuPeak: 0, rssLast: 0, gpuLast: 0 };
  const sample = () => {
    const rss = process.memoryUsage().rss;
    mem.rssLast = rss;
    mem.gpuLast = ctx.bytesHeld;
    mem.rssPeak = Math.max(mem.rssPeak, rss);
    mem.gpuPeak = Math.max(mem.gpuPeak, ctx.bytesHeld);
    if (done === 10) { mem.rssAt10 = rss; mem.gpuAt10 = ctx.bytesHeld; }
  };
  const tTrack = performance.now();
  let failure: unknown = null;
  let cocoNote = '';
  try {
    for await (const fm of vp.propagate({ start: a.order[0], maxFrames: a.order.length - 1, reverse: a.reverse })) {
      let masks: Uint8Array, scores: Float32Array;
      try {
        masks = (await fm.masks()) as Uint8Array; // [objects, H, W]
        scores = await fm.objectScores(); // [objects]
      } finally {
        fm.release();
      }
      await pending; // the previous frame's files are on disk before this one's are started
      if (quitting) break;
      const frameDone = writeFrame(fm.frameIndex, masks, scores).then(() => { done++; });
      pending = frameDone;
      frameDone.catch(() => undefined);
      sample();
      bar.update(done + 1);
      if (signals.stopping) break;
    }
    await pending;
  } catch (e) {
    failure = e;
    await pending.catch(() => undefined);
  } finally {
    bar.finish();
    // masks.json lists the frames whose files were all written; if it cannot be completed, none is left
    try {
      await coco.close();
    } catch (e) {
      await coco.discard();
      cocoNote = `masks.json not written: ${(e as Error).message}`;
      failure ??= e;
    }
    const err = video ? await video.close() : null;
    if (err) videoNote = err;
    signals.uninstall();
    vp.dispose();
  }
  const secs = (performance.now() - tTrack) / 1000;
  const rssEnd = mem.rssLast, gpuEnd = mem.gpuLast; // after the last frame

  if (failure) {
    const msg = failure instanceof Error ? failure.message : String(failure);
    const kept = cocoNote ? `${cocoNote}; the masks of the ${done} frame${done === 1 ? '' : 's'} tracked before it are in ${dir}/masks/`
      : `the ${done} frame${done === 1 ? '' : 's'} tracked before it are written to ${dir}/`;
    throw new CliError(`${msg}\n(${kept})`);
  }
  const stopping = signals.stopping;
  const fps = done / secs;
  out.print(`track: ${a.source} (${N} frames, ${W}x${H}), ${ids.length} object${ids.length > 1 ? 's' : ''} [${ids.join(', ')}], ` +
    `${done}${stopping ? ` of ${a.order.length}` : ''} frames ${a.reverse ? 'backwards ' : ''}from frame ${a.order[0]} -> ${resolve(dir)}/`);
  if (stopping) out.print(`  interrupted (${signals.signal === 'SIGINT' ? 'Ctrl-C' : signals.signal}): the frames tracked so far are written and masks.json is complete for them`);
  out.print(`  masks/obj<K>/<frame>.png, masks.json${a.withOverlay ? `, overlays/<frame>.jpg${video ? ', overlay.mp4' : ''}` : ''}`);
  if (videoNote) out.print(`  ${videoNote}`);
  out.print(`time: ${formatDuration(secs)} tracking (${fps >= 10 ? fps.toFixed(1) : fps.toFixed(2)} frames/s), ` +
    `${formatDuration((tTrack - a.t0) / 1000)} loading; model: ${a.choiceFrom}`);
  const maxRss = resourceUsage().maxRSS * 1024;
  const after10 = (v: number) => (v ? `${formatBytes(v)} after 10 frames, ` : '');
  out.print(`memory: RSS ${after10(mem.rssAt10)}${formatBytes(rssEnd)} at the end, peak ${formatBytes(Math.max(maxRss, mem.rssPeak))}; ` +
    `GPU buffers ${after10(mem.gpuAt10)}${formatBytes(gpuEnd)} at the end, peak ${formatBytes(mem.gpuPeak)}`);
  return stopping ? signals.exitCode : 0;
}
