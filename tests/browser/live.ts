/**
 * Page fixture for tests/browser.test.ts: the video predictor in streaming mode on a playing
 * (looping) <video> element (src/model/live.ts `videoFrames`), with the tiny golden model.
 *
 *   await window.etamLive({ video: '/shared/data/videos/dog.mp4', frames: 6, point: [640, 360] })
 *
 * Besides tracking, it checks that the GPU copy of live frames (`preprocessTexture`:
 * copyExternalImageToTexture) reads the frame's real pixels: the tensor it makes from one of the
 * VideoFrames the predictor took is compared with `preprocessImage` of the same frame's pixels read
 * back through a 2D OffscreenCanvas (getImageData). The two differ only in how the bytes reach
 * the GPU, so they should agree to float rounding. The same is done for the video element itself
 * once paused.
 */
import { fetchCase } from '../../src/browser/golden.js';
import { caseModel } from '../../src/golden/stages.js';
import { GpuContext } from '../../src/gpu/context.js';
import { preprocessImage, preprocessTexture, type TextureSource } from '../../src/kernels/preprocess.js';
import { videoFrames } from '../../src/model/live.js';
import { VideoPredictor } from '../../src/model/video_predictor.js';

export interface LiveRequest {
  /** URL of the video */
  video: string;
  /** frames to track after the prompted one */
  frames: number;
  /** the click on frame 0, in video pixels */
  point: [number, number];
  /** which frame taken from the element to keep a copy of for the pixel comparison */
  capture: number;
}

export interface PixelCheck {
  /** what was compared */
  what: string;
  width: number;
  height: number;
  /** the VideoFrame's pixel format and colour space ('' for the element) */
  format: string;
  colorSpace: string;
  /** max |preprocessTexture - preprocessImage(getImageData)| over the [1, S, S, 3] tensor */
  maxAbsDiff: number;
  /** mean and standard deviation of the getImageData bytes (R, G, B together): real pixels vary */
  byteMean: number;
  byteStd: number;
  /** standard deviation of the preprocessed tensor */
  tensorStd: number;
  /** GPU errors caught by an error scope around preprocessTexture */
  gpuErrors: string[];
}

export interface LiveFrame {
  frame: number;
  /** the VideoFrame's timestamp (µs), -1 for frames not seen */
  timestamp: number;
  finite: boolean;
  /** fraction of the low-res logits > 0 */
  positive: number;
  min: number;
  max: number;
  ms: number;
}

export interface LiveResult {
  videoWidth: number;
  videoHeight: number;
  imageSize: number;
  frames: LiveFrame[];
  pixels: PixelCheck[];
  /** GPU errors reported while tracking (uncapturederror) */
  uncaptured: string[];
  seconds: number;
}

const logEl = document.getElementById('log')!;
const log = (s: string) => {
  logEl.textContent += `\n${s}`;
  console.log(s);
};

/** The source's pixels through a 2D canvas: RGBA bytes. */
function canvasPixels(source: CanvasImageSource, W: number, H: number): ImageData {
  const canvas = new OffscreenCanvas(W, H);
  const g = canvas.getContext('2d', { willReadFrequently: true })!;
  g.drawImage(source, 0, 0, W, H);
  return g.getImageData(0, 0, W, H);
}

async function comparePixels(ctx: GpuContext, what: string, source: TextureSource & CanvasImageSource, W: number, H: number, S: number): Promise<PixelCheck> {
  const device = ctx.device;
  device.pushErrorScope('validation');
  device.pushErrorScope('internal');
  const viaTexture = preprocessTexture(ctx, source, S, { antialias: true });
  ctx.flush();
  const gpuErrors = [await device.popErrorScope(), await device.popErrorScope()].filter((e) => e !== null).map((e) => e.message);
  const img = canvasPixels(source, W, H);
  const viaImage = preprocessImage(ctx, { data: img.data, width: W, height: H, channels: 4 }, S, { antialias: true });
  const a = await viaTexture.read(), b = await viaImage.read();
  viaTexture.release();
  viaImage.release();
  let maxAbsDiff = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    maxAbsDiff = Number.isNaN(d) ? Infinity : Math.max(maxAbsDiff, d);
  }
  let s = 0, s2 = 0, n = 0;
  for (let i = 0; i < img.data.length; i++) {
    if ((i & 3) === 3) continue;
    s += img.data[i]!; s2 += img.data[i]! ** 2; n++;
  }
  let t = 0, t2 = 0;
  for (const v of a) { t += v; t2 += v * v; }
  const r: PixelCheck = {
    what, width: W, height: H, maxAbsDiff,
    format: source instanceof VideoFrame ? String(source.format) : '',
    colorSpace: source instanceof VideoFrame ? JSON.stringify(source.colorSpace.toJSON()) : '', byteMean: s / n, byteStd: Math.sqrt(Math.max(0, s2 / n - (s / n) ** 2)),
    tensorStd: Math.sqrt(Math.max(0, t2 / a.length - (t / a.length) ** 2)), gpuErrors,
  };
  log(`${what}: max |texture - imageData| ${r.maxAbsDiff.toExponential(2)}, ${r.format} ${r.colorSpace}, bytes mean ${r.byteMean.toFixed(1)} std ${r.byteStd.toFixed(1)}, GPU errors ${JSON.stringify(gpuErrors)}`);
  return r;
}

let ctxPromise: Promise<GpuContext> | null = null;

async function live(req: LiveRequest): Promise<LiveResult> {
  const t0 = performance.now();
  ctxPromise ??= GpuContext.create();
  const ctx = await ctxPromise;
  const uncaptured: string[] = [];
  ctx.device.addEventListener('uncapturederror', (e) => uncaptured.push((e as GPUUncapturedErrorEvent).error.message));
  const model = caseModel(ctx, await fetchCase('/shared/golden/tiny/'));
  const S = model.imageSize;

  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  // looping: however long the first steps take (pipeline compiles on a slow machine), the clip
  // is still playing when the tracker asks for its next frame
  video.loop = true;
  video.src = req.video;
  document.body.append(video);
  await video.play();
  const W = video.videoWidth, H = video.videoHeight;
  log(`playing ${req.video}: ${W}x${H}`);

  // the frames the predictor takes, with a copy of one kept for the pixel comparison
  const timestamps: number[] = [];
  let captured: VideoFrame | null = null;
  async function* tap(src: AsyncIterable<VideoFrame>): AsyncGenerator<VideoFrame> {
    for await (const f of src) {
      if (timestamps.length === req.capture) captured = f.clone();
      timestamps.push(f.timestamp);
      yield f;
    }
  }
  const ac = new AbortController();
  const vp = new VideoPredictor(model, { frames: tap(videoFrames(video, { signal: ac.signal })), streaming: true });
  const frames: LiveFrame[] = [];
  const record = async (fm: { frameIndex: number; lowResLogits(): Promise<Float32Array>; release(): void }, ms: number) => {
    const l = await fm.lowResLogits();
    let pos = 0, min = Infinity, max = -Infinity, finite = true;
    for (const v of l) {
      if (!Number.isFinite(v)) finite = false;
      if (v > 0) pos++;
      min = Math.min(min, v); max = Math.max(max, v);
    }
    fm.release();
    const f: LiveFrame = { frame: fm.frameIndex, timestamp: timestamps[fm.frameIndex] ?? -1, finite, positive: pos / l.length, min, max, ms };
    frames.push(f);
    log(`frame ${f.frame} (t ${(f.timestamp / 1e6).toFixed(3)} s): logits ${min.toFixed(2)} .. ${max.toFixed(2)}, ${(100 * f.positive).toFixed(1)}% > 0, ${ms.toFixed(0)} ms`);
  };
  let t = performance.now();
  await record(await vp.addPoints(0, 1, [req.point], [1]), performance.now() - t);
  t = performance.now();
  for await (const fm of vp.propagate({ maxFrames: req.frames })) {
    if (fm.frameIndex === 0) { fm.release(); t = performance.now(); continue; } // the prompted frame again
    await record(fm, performance.now() - t);
    t = performance.now();
  }
  ac.abort();
  video.pause();

  const pixels: PixelCheck[] = [];
  if (captured) {
    const vf = captured as VideoFrame;
    pixels.push(await comparePixels(ctx, `VideoFrame ${req.capture} (t ${(vf.timestamp / 1e6).toFixed(3)} s)`, vf, vf.displayWidth, vf.displayHeight, S));
    vf.close();
  }
  pixels.push(await comparePixels(ctx, `paused video element (t ${video.currentTime.toFixed(3)} s)`, video, W, H, S));
  video.remove();
  return { videoWidth: W, videoHeight: H, imageSize: S, frames, pixels, uncaptured, seconds: (performance.now() - t0) / 1000 };
}

declare global {
  interface Window {
    etamLive(req: LiveRequest): Promise<LiveResult>;
  }
}

window.etamLive = live;
logEl.textContent = 'ready';
