/**
 * Demo: track what you click, with EfficientTAM on WebGPU, using only the library's public API.
 *
 *   1. weights: a file (safetensors, or an official .pt converted on the fly) or a URL, with a
 *      config.json for models that are not one of the official variants;
 *   2. a video file (sampled at FPS frames per second), image files (one image, or the frames of a
 *      video, in name order) or the webcam;
 *   3. click (positive), shift/right-click (negative) or drag a box on the shown frame to prompt an
 *      object; "Track" propagates every object forwards from the shown frame, drawing the masks
 *      in one colour per object as it goes, with per-frame timings;
 *   4. "Segment everything": the automatic mask generator on the shown frame, every mask in its own
 *      colour (drawn on the GPU by the generator, over the frame texture).
 *
 * The webcam goes through the library's live source (videoFrames) in the predictor's streaming
 * mode: frame 0 is the image taken when you first click, and tracking takes the newest camera
 * image each time it is ready for one.
 *
 * Drawing stays on the GPU: the canvas has a 'webgpu' context on the model's device, the frame is
 * copied into a texture (copyExternalImageToTexture from an ImageBitmap, or its pixels uploaded
 * when that copy is refused) and FrameMasks.draw blends the masks over it from the low-res
 * logits; no mask is read back. Where a WebGPU canvas does not work (Chromium headless with its
 * default flags: the first getCurrentTexture() takes the GPU process down, and every device with
 * it), a probe at start-up on a throwaway device notices, and the page draws on a 2D canvas
 * instead: the frame with drawImage, the masks drawn by FrameMasks.draw into a texture that is
 * read back (one readback per frame shown, in that mode only). The FrameMasks of recent frames
 * are kept (on the GPU) for redisplay with the slider. Prompts are drawn on a 2D canvas on top,
 * in their object's colour.
 *
 * A lost GPU device is shown as lost (banner, model status); "Recover" makes a new device, reloads
 * the weights (the same file or URL) and puts the objects' prompts back, without a page reload.
 * State for tests: <body data-gpu="ready|lost|recovering" data-display="webgpu|2d"
 * data-model="ready|lost|..." data-source="ready" data-tracked="N" data-busy="0|1"
 * data-everything="N masks" data-covered="fraction of the frame under some mask">;
 * window.etamDemo.loseDevice() destroys the device (to test the recovery).
 */
import {
  AutomaticMaskGenerator, detectVariant, EfficientTAM, GpuContext, loadWeights, MAX_DRAW_COLORS, validateConfig, VideoPredictor, videoFrames, WebGPUUnavailableError,
  type EfficientTAMConfig, type FrameMasks, type ImageSource, type VideoPredictorOptions,
} from 'efficienttam-webgpu';

/** Frames per second sampled from a video file. */
const FPS = 10;
/** Decoded frames kept in memory (besides prompted frames). */
const FRAME_CACHE = 6;
/** Frames whose masks (low-res logits, on the GPU) are kept for redisplay with the slider. */
const MASK_CACHE = 300;
/** Live camera frames kept for display (those the predictor took most recently). */
const LIVE_KEEP = 8;
const COLORS: [number, number, number][] = [
  [30, 144, 255], [255, 60, 60], [60, 210, 80], [255, 200, 0], [200, 80, 255], [0, 220, 220], [255, 130, 0], [255, 90, 200],
];
const ALPHA = 0.55;

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const banner = $<HTMLDivElement>('banner');
const bannerText = $<HTMLSpanElement>('bannerText');
const recoverBtn = $<HTMLButtonElement>('recover');
const trackProgress = $<HTMLProgressElement>('trackProgress');
const timingSummary = $<HTMLSpanElement>('timingSummary');
const modelStatus = $<HTMLSpanElement>('modelStatus');
const progress = $<HTMLProgressElement>('progress');
const sourceStatus = $<HTMLSpanElement>('sourceStatus');
const statusEl = $<HTMLDivElement>('status');
const timingsEl = $<HTMLDivElement>('timings');
/** frame and masks: a WebGPU canvas */
const canvas = $<HTMLCanvasElement>('view');
/** prompts (points, boxes): a 2D canvas over it */
const marks = $<HTMLCanvasElement>('marks');
const slider = $<HTMLInputElement>('frame');
const frameLabel = $<HTMLSpanElement>('frameLabel');
const objectsEl = $<HTMLSpanElement>('objects');
const trackBtn = $<HTMLButtonElement>('track');
const stopBtn = $<HTMLButtonElement>('stop');
const everythingBtn = $<HTMLButtonElement>('everything');
const cancelEverythingBtn = $<HTMLButtonElement>('cancelEverything');
const everythingProgress = $<HTMLProgressElement>('everythingProgress');
const everythingStatus = $<HTMLDivElement>('everythingStatus');
const view = marks.getContext('2d')!;

const state = (k: string, v: string | number) => { document.body.dataset[k] = String(v); };

function showBanner(msg: string, recover = false): void {
  bannerText.textContent = msg;
  recoverBtn.hidden = !recover;
  banner.classList.add('show');
}

function hideBanner(): void {
  banner.classList.remove('show');
  recoverBtn.hidden = true;
}

function setStatus(el: HTMLElement, msg: string, kind: 'ok' | 'error' | '' = ''): void {
  el.textContent = msg;
  el.className = kind;
}

const errorText = (e: unknown): string => (e instanceof Error ? `${e.name === 'Error' ? '' : `${e.name}: `}${e.message}` : String(e));

// ------------------------------------------------------------------------------------- frames

/** A decoded frame: an ImageBitmap (shown through a texture), its pixels on request (for the predictor). */
interface Frame {
  bitmap: ImageBitmap;
  width: number;
  height: number;
}

/** Where the frames come from: decoded on demand, a few kept. */
interface Frames {
  label: string;
  count: number;
  width: number;
  height: number;
  /** a live camera: the predictor takes its frames itself (videoFrames), `get` shows the frame it took (or the current image) */
  live?: { video: HTMLVideoElement; stop: AbortController; taken: Map<number, Frame> };
  get(i: number): Promise<Frame>;
  /** keep this frame decoded (it has prompts) */
  pin(i: number): void;
  dispose(): void;
}

function grab(src: CanvasImageSource, w: number, h: number): ImageData {
  const c = new OffscreenCanvas(w, h);
  const g = c.getContext('2d', { willReadFrequently: true })!;
  g.drawImage(src, 0, 0, w, h);
  return g.getImageData(0, 0, w, h);
}

const frameOf = (bitmap: ImageBitmap): Frame => ({ bitmap, width: bitmap.width, height: bitmap.height });

/** 8-bit RGBA pixels of a frame, as the predictor takes them (exactly the reference's preprocessing). */
function framePixels(f: Frame): ImageSource {
  const img = grab(f.bitmap, f.width, f.height);
  return { data: img.data, width: img.width, height: img.height, channels: 4 };
}

/**
 * A cache of decoded frames: the last FRAME_CACHE used, and the pinned ones. Evicted bitmaps are
 * left to the garbage collector (one may still be on its way to the screen).
 */
function frameCache(decode: (i: number) => Promise<Frame>) {
  const cache = new Map<number, Frame>();
  const pinned = new Set<number>();
  let chain: Promise<unknown> = Promise.resolve();
  return {
    pinned,
    get(i: number): Promise<Frame> {
      const hit = cache.get(i);
      if (hit) {
        cache.delete(i);
        cache.set(i, hit);
        return Promise.resolve(hit);
      }
      // one decode at a time (video seeks must not overlap)
      const p = chain.then(async () => cache.get(i) ?? decode(i));
      chain = p.catch(() => undefined);
      return p.then((img) => {
        cache.set(i, img);
        for (const k of cache.keys()) {
          if (cache.size - pinned.size <= FRAME_CACHE) break;
          if (!pinned.has(k)) cache.delete(k);
        }
        return img;
      });
    },
  };
}

async function imageFrames(files: File[]): Promise<Frames> {
  files = [...files].sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  const decode = async (i: number): Promise<Frame> => frameOf(await createImageBitmap(files[i]!));
  const cache = frameCache(decode);
  const first = await cache.get(0);
  return {
    label: files.length === 1 ? files[0]!.name : `${files.length} frames (${files[0]!.name} … ${files[files.length - 1]!.name})`,
    count: files.length, width: first.width, height: first.height,
    get: cache.get, pin: (i) => cache.pinned.add(i), dispose: () => undefined,
  };
}

async function videoFileFrames(file: File): Promise<Frames> {
  const video = document.createElement('video');
  const url = URL.createObjectURL(file);
  video.muted = true;
  video.preload = 'auto';
  video.src = url;
  await new Promise<void>((res, rej) => {
    video.onloadeddata = () => res();
    video.onerror = () => rej(new Error(`${file.name}: this browser cannot decode the video`));
  });
  const w = video.videoWidth, h = video.videoHeight;
  const count = Math.max(1, Math.floor(video.duration * FPS));
  const decode = async (i: number): Promise<Frame> => {
    const t = Math.min((i + 0.5) / FPS, Math.max(video.duration - 1e-3, 0));
    if (Math.abs(video.currentTime - t) > 1e-4) {
      await new Promise<void>((res) => {
        video.addEventListener('seeked', () => res(), { once: true });
        video.currentTime = t;
      });
    }
    return frameOf(await createImageBitmap(video));
  };
  const cache = frameCache(decode);
  return {
    label: `${file.name}: ${count} frames at ${FPS} fps, ${w}x${h}`, count, width: w, height: h,
    get: cache.get, pin: (i) => cache.pinned.add(i),
    dispose: () => { video.removeAttribute('src'); video.load(); URL.revokeObjectURL(url); },
  };
}

async function webcamFrames(): Promise<Frames> {
  if (!navigator.mediaDevices?.getUserMedia) throw new Error('this browser gives no camera access (it needs https:// or localhost)');
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  await video.play();
  const w = video.videoWidth, h = video.videoHeight;
  const stop = new AbortController();
  const taken = new Map<number, Frame>();
  return {
    label: `webcam ${w}x${h} (live)`, count: Infinity, width: w, height: h, live: { video, stop, taken },
    // the image the predictor took as frame i, else what the camera shows now
    get: async (i) => taken.get(i) ?? frameOf(await createImageBitmap(video)), pin: () => undefined,
    dispose: () => { stop.abort(); for (const t of stream.getTracks()) t.stop(); },
  };
}

// ------------------------------------------------------------------------------------- state

interface Prompt { points: [number, number][]; labels: number[]; box?: [number, number, number, number] }
interface ObjectUI { id: number; color: [number, number, number]; prompts: Map<number, Prompt> }

let ctx: GpuContext | null = null;
let model: EfficientTAM | null = null;
let frames: Frames | null = null;
let predictor: VideoPredictor | null = null;
let objects: ObjectUI[] = [];
let current: ObjectUI | null = null;
let shown = 0;
let busy = false;
let stopRequested = false;
/** the masks last produced per frame (kept on the GPU; released when replaced or dropped) */
const masksByFrame = new Map<number, FrameMasks>();
const frameTimes: number[] = [];

function setBusy(b: boolean): void {
  busy = b;
  state('busy', b ? 1 : 0);
  canvas.classList.toggle('disabled', b || !predictor);
  trackBtn.disabled = b || !predictor || objects.every((o) => o.prompts.size === 0);
  everythingBtn.disabled = b || !model || !frames;
}

function renderObjects(): void {
  objectsEl.innerHTML = '';
  for (const o of objects) {
    const s = document.createElement('span');
    s.innerHTML = `<span class="swatch" style="background: rgb(${o.color.join(',')})"></span>object ${o.id}${o === current ? ' (current)' : ''} `;
    s.style.cursor = 'pointer';
    s.onclick = () => { current = o; renderObjects(); };
    objectsEl.appendChild(s);
  }
}

function newObject(): ObjectUI {
  const id = objects.length ? Math.max(...objects.map((o) => o.id)) + 1 : 1;
  const o: ObjectUI = { id, color: COLORS[(id - 1) % COLORS.length]!, prompts: new Map() };
  objects.push(o);
  current = o;
  renderObjects();
  return o;
}

function clearMasks(): void {
  // masks of a lost device are simply dropped
  if (ctx && !ctx.isLost) for (const fm of masksByFrame.values()) fm.release();
  masksByFrame.clear();
}

function resetObjects(): void {
  predictor?.reset();
  objects = [];
  current = null;
  clearMasks();
  renderObjects();
  state('tracked', 0);
  void showFrame(shown);
}

/**
 * VideoFrames as 8-bit pixels (drawn through a canvas). The predictor takes VideoFrames directly
 * (copied to a texture on the GPU), but that copy fails on Chromium's software WebGPU
 * (SwiftShader) with a camera's frames, so the demo goes through the CPU. Each frame taken is
 * also kept as an ImageBitmap (the last LIVE_KEEP) to be shown with its masks.
 */
async function* asPixels(frames: AsyncIterable<VideoFrame>, taken: Map<number, Frame>): AsyncGenerator<ImageSource> {
  let i = 0;
  for await (const vf of frames) {
    const img = grab(vf, vf.displayWidth, vf.displayHeight);
    vf.close();
    taken.set(i, frameOf(await createImageBitmap(img)));
    taken.delete(i - LIVE_KEEP);
    i++;
    yield { data: img.data, width: img.width, height: img.height, channels: 4 };
  }
}

/** A new predictor when both a model and frames are there. */
function rebuildPredictor(): void {
  if (ctx && !ctx.isLost) predictor?.dispose();
  predictor = null;
  objects = [];
  current = null;
  clearMasks();
  renderObjects();
  state('tracked', 0);
  if (model && frames) {
    const f = frames;
    const opts: VideoPredictorOptions = f.live
      // a live source: frames taken as the predictor asks for them, forgotten once its memory no longer needs them
      ? { frames: asPixels(videoFrames(f.live.video, { signal: f.live.stop.signal }), f.live.taken), streaming: true, videoHeight: f.height, videoWidth: f.width }
      : {
        frames: async (i: number): Promise<ImageSource> => framePixels(await f.get(i)),
        numFrames: f.count,
        videoHeight: f.height,
        videoWidth: f.width,
      };
    predictor = new VideoPredictor(model, opts);
    if (f.live) void livePreview(f);
    setStatus(statusEl, 'Click on the object to track (shift-click: negative point, drag: box).');
  }
  setBusy(false);
}

// ------------------------------------------------------------------------------------- drawing

/** How frames and masks reach the screen: a WebGPU canvas, or a 2D canvas where WebGPU canvases fail. */
let display: 'webgpu' | '2d' = 'webgpu';
/** The canvas's WebGPU context, configured on the predictor's device (GpuContext.device) once there is one. */
let gpuCanvas: GPUCanvasContext | null = null;
/** The canvas's 2D context (display '2d'). */
let view2d: CanvasRenderingContext2D | null = null;
/** The frame being shown, as a texture the masks are drawn over (recreated when the size changes). */
let frameTex: GPUTexture | null = null;
/** display '2d': the masks drawn into this texture, then read back */
let maskTex: GPUTexture | null = null;
/** copyExternalImageToTexture refused once: upload the frames' pixels instead */
let uploadPixels = false;

/**
 * Whether a WebGPU canvas works here, tried on a throwaway device and a hidden canvas: in Chromium
 * headless with its default flags, the first getCurrentTexture() takes the GPU process down, which
 * loses every device (the page makes its own afterwards).
 */
async function webgpuCanvasWorks(): Promise<boolean> {
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return false;
    const device = await adapter.requestDevice();
    let lost = false;
    void device.lost.then(() => { lost = true; });
    const probe = document.createElement('canvas');
    probe.width = probe.height = 4;
    const c = probe.getContext('webgpu');
    if (!c) return false;
    c.configure({ device, format: navigator.gpu.getPreferredCanvasFormat(), alphaMode: 'opaque' });
    const enc = device.createCommandEncoder();
    enc.beginRenderPass({ colorAttachments: [{ view: c.getCurrentTexture().createView(), loadOp: 'clear', storeOp: 'store', clearValue: [0, 0, 0, 1] }] }).end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone().catch(() => { lost = true; });
    // presented on the next frames
    for (let i = 0; i < 2; i++) await new Promise((r) => requestAnimationFrame(r));
    const works = !lost;
    if (works) device.destroy();
    return works;
  } catch {
    return false;
  }
}

function configureCanvas(device: GPUDevice): void {
  if (display === '2d') {
    view2d ??= canvas.getContext('2d');
    if (!view2d) throw new Error('the canvas has neither a WebGPU nor a 2D context');
    return;
  }
  gpuCanvas ??= canvas.getContext('webgpu');
  if (!gpuCanvas) throw new Error('the canvas has no WebGPU context');
  gpuCanvas.configure({
    device,
    format: navigator.gpu.getPreferredCanvasFormat(),
    // the frame is opaque and drawMasks keeps its alpha: no blending with the page
    alphaMode: 'opaque',
    // drawn into by drawMasks (a render pass), or the frame copied straight in when it has no masks
    usage: GPUTextureUsage.RENDER_ATTACHMENT | GPUTextureUsage.COPY_DST,
  });
}

/** A frame's pixels into a texture: copyExternalImageToTexture, or (when refused) its pixels uploaded. */
function uploadFrame(device: GPUDevice, f: Frame, texture: GPUTexture): void {
  if (!uploadPixels) {
    try {
      device.queue.copyExternalImageToTexture({ source: f.bitmap }, { texture }, [f.width, f.height]);
      return;
    } catch (e) {
      uploadPixels = true;
      logTiming(`copyExternalImageToTexture refused (${errorText(e)}): uploading pixels instead`);
    }
  }
  const px = grab(f.bitmap, f.width, f.height).data;
  if (texture.format.startsWith('bgra')) {
    for (let i = 0; i < px.length; i += 4) { const r = px[i]!; px[i] = px[i + 2]!; px[i + 2] = r; }
  }
  device.queue.writeTexture({ texture }, px, { bytesPerRow: f.width * 4 }, [f.width, f.height]);
}

function objectColors(fm: FrameMasks): [number, number, number][] {
  return fm.objIds.slice(0, MAX_DRAW_COLORS).map((id) => objects.find((o) => o.id === id)?.color ?? COLORS[(id - 1) % COLORS.length]!);
}

/**
 * Shows a frame with the masks the predictor gave for it. WebGPU canvas: all on the GPU, the
 * frame uploaded into a texture, then FrameMasks.draw renders the masks over it into the
 * canvas's texture (returns when the commands are submitted). 2D canvas: the frame drawn with
 * drawImage, the masks drawn on the GPU into a texture and read back. The prompts go on the 2D
 * canvas above.
 */
async function drawFrame(f: Frame, frame: number): Promise<void> {
  if (!ctx || ctx.isLost) return;
  const device = ctx.device;
  if (canvas.width !== f.width || canvas.height !== f.height) {
    canvas.width = marks.width = f.width;
    canvas.height = marks.height = f.height;
  }
  const fm = masksByFrame.get(frame);
  if (display === '2d') {
    view2d!.drawImage(f.bitmap, 0, 0);
    if (fm) view2d!.drawImage(await maskLayer(device, fm, f.width, f.height), 0, 0);
  } else if (gpuCanvas) {
    const target = gpuCanvas.getCurrentTexture();
    if (fm) {
      fm.draw(target, { image: frameTexture(device, f, target.format), colors: objectColors(fm), alpha: ALPHA });
    } else {
      uploadFrame(device, f, target);
    }
  }
  drawPrompts(frame, f.width);
}

/** The frame uploaded into a texture the masks are drawn over (kept, recreated when the size changes). */
function frameTexture(device: GPUDevice, f: Frame, format: GPUTextureFormat): GPUTexture {
  if (!frameTex || frameTex.width !== f.width || frameTex.height !== f.height || frameTex.format !== format) {
    frameTex?.destroy();
    frameTex = device.createTexture({
      label: 'demo frame',
      size: [f.width, f.height],
      format, // a copy straight into the canvas stays possible
      usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST | GPUTextureUsage.RENDER_ATTACHMENT,
    });
  }
  uploadFrame(device, f, frameTex);
  return frameTex;
}

/** display '2d': the texture masks are drawn into (transparent around them, straight alpha). */
function maskTexture(device: GPUDevice, w: number, h: number): GPUTexture {
  if (!maskTex || maskTex.width !== w || maskTex.height !== h) {
    maskTex?.destroy();
    maskTex = device.createTexture({ label: 'demo masks', size: [w, h], format: 'rgba8unorm', usage: GPUTextureUsage.RENDER_ATTACHMENT | GPUTextureUsage.COPY_SRC });
  }
  return maskTex;
}

/** display '2d': the masks as an image with alpha (drawn on the GPU, then read back). */
async function maskLayer(device: GPUDevice, fm: FrameMasks, w: number, h: number): Promise<ImageBitmap> {
  fm.draw(maskTexture(device, w, h), { colors: objectColors(fm), alpha: ALPHA });
  return readLayer(device, w, h);
}

/** display '2d': the mask texture read back as an image. */
async function readLayer(device: GPUDevice, w: number, h: number): Promise<ImageBitmap> {
  const row = Math.ceil((w * 4) / 256) * 256;
  const buf = device.createBuffer({ size: row * h, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyTextureToBuffer({ texture: maskTex! }, { buffer: buf, bytesPerRow: row }, [w, h]);
  device.queue.submit([enc.finish()]);
  try {
    await buf.mapAsync(GPUMapMode.READ);
    const src = new Uint8Array(buf.getMappedRange());
    const img = new ImageData(w, h);
    for (let y = 0; y < h; y++) img.data.set(src.subarray(y * row, y * row + w * 4), y * w * 4);
    return await createImageBitmap(img);
  } finally {
    buf.destroy();
  }
}

/** Points and boxes in their object's colour: a positive click ringed in white, a negative one ringed in black with a minus. */
function drawPrompts(frame: number, width: number): void {
  view.clearRect(0, 0, marks.width, marks.height);
  const r = Math.max(4, Math.round(width / 160));
  for (const o of objects) {
    const p = o.prompts.get(frame);
    if (!p) continue;
    const color = `rgb(${o.color.join(',')})`;
    if (p.box) {
      view.lineWidth = Math.max(2, r / 2);
      view.strokeStyle = color;
      const [x0, y0, x1, y1] = p.box;
      view.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
    p.points.forEach(([x, y], i) => {
      const positive = p.labels[i] === 1;
      view.beginPath();
      view.arc(x, y, r, 0, 2 * Math.PI);
      view.fillStyle = color;
      view.fill();
      view.lineWidth = 2;
      view.strokeStyle = positive ? '#fff' : '#000';
      view.stroke();
      if (!positive) {
        view.beginPath();
        view.moveTo(x - r * 0.6, y);
        view.lineTo(x + r * 0.6, y);
        view.stroke();
      }
    });
  }
}

/** The camera image on the canvas until the first prompt (the predictor takes frame 0 then). */
async function livePreview(f: Frames): Promise<void> {
  while (frames === f && objects.every((o) => o.prompts.size === 0) && !f.live!.stop.signal.aborted) {
    if (!busy) await drawFrame(await f.get(-1), -1);
    await new Promise((r) => requestAnimationFrame(r));
  }
}

async function showFrame(i: number): Promise<void> {
  if (!frames) return;
  shown = i;
  slider.value = String(i);
  frameLabel.textContent = frames.live ? `${i} (live)` : `${i} / ${frames.count - 1}`;
  await drawFrame(await frames.get(i), i);
}

/** Keeps a frame's masks (on the GPU) for drawing; the one they replace is released. */
function keepMasks(fm: FrameMasks): void {
  const old = masksByFrame.get(fm.frameIndex);
  if (old && old !== fm) old.release();
  masksByFrame.delete(fm.frameIndex);
  masksByFrame.set(fm.frameIndex, fm);
  while (masksByFrame.size > MASK_CACHE) {
    const [k, v] = masksByFrame.entries().next().value!;
    masksByFrame.delete(k);
    v.release();
  }
}

/** " (N GPU kernels compiled)" when kernels were compiled since `before`: the first uses of each are slow. */
function compiledNote(before: number): string {
  const k = ctx!.stats.pipelinesCompiled - before;
  return k > 0 ? ` (includes compiling ${k} GPU kernels)` : '';
}

function showTimings(lines: string[]): void {
  const sorted = [...frameTimes].sort((a, b) => a - b);
  const med = sorted.length ? sorted[sorted.length >> 1]! : NaN;
  const summary = sorted.length
    ? `median ${med.toFixed(0)} ms per frame (${(1000 / med).toFixed(1)} fps) over ${sorted.length} frames after the first, ${objects.length} object(s)` : '';
  // the summary and the latest line sit above the picture; the recent history below it
  timingSummary.textContent = [summary, lines[0] ?? ''].filter(Boolean).join(' · ');
  timingsEl.textContent = [summary ? `tracking: ${summary}` : '', ...lines].filter(Boolean).join('\n');
}
const timingLines: string[] = [];
function logTiming(s: string): void {
  timingLines.unshift(s);
  timingLines.length = Math.min(timingLines.length, 12);
  showTimings(timingLines);
}

// ------------------------------------------------------------------------------------- prompts and tracking

async function prompt(frame: number, obj: ObjectUI, p: Prompt): Promise<void> {
  if (!predictor || !frames) return;
  setBusy(true);
  try {
    frames.pin(frame);
    obj.prompts.set(frame, p);
    const t0 = performance.now();
    const compiled = ctx!.stats.pipelinesCompiled;
    const fm = p.points.length
      ? await predictor.addPoints(frame, obj.id, p.points, p.labels, p.box ? { box: p.box } : {})
      : await predictor.addBox(frame, obj.id, p.box!);
    keepMasks(fm);
    await ctx!.sync(); // the prompt's work done on the GPU
    const ms = performance.now() - t0;
    await showFrame(frame);
    logTiming(`prompt on frame ${frame} (object ${obj.id}): ${ms.toFixed(0)} ms${compiledNote(compiled)}`);
    setStatus(statusEl, `Object ${obj.id} prompted on frame ${frame}. Add points, another object, or press Track.`);
  } catch (e) {
    obj.prompts.delete(frame);
    setStatus(statusEl, errorText(e), 'error');
  } finally {
    setBusy(false);
  }
}

async function track(): Promise<void> {
  if (!predictor || !frames || busy) return;
  setBusy(true);
  stopBtn.disabled = false;
  stopRequested = false;
  frameTimes.length = 0;
  let n = 0;
  const start = shown;
  // forwards from the shown frame to the end (a live camera: no end)
  const total = Number.isFinite(frames.count) ? frames.count - start : 0;
  trackProgress.hidden = total === 0;
  trackProgress.max = Math.max(1, total);
  trackProgress.value = 0;
  setStatus(statusEl, `tracking from frame ${start}…`);
  try {
    const it = predictor.propagate({ start });
    let t0 = performance.now();
    let compiled = ctx!.stats.pipelinesCompiled;
    for await (const fm of it) {
      keepMasks(fm);
      await ctx!.sync(); // only waits for the GPU to finish tracking (nothing is read back)
      const t1 = performance.now();
      await showFrame(fm.frameIndex); // the frame uploaded and the masks drawn over it, on the GPU
      await ctx!.device.queue.onSubmittedWorkDone();
      const t2 = performance.now();
      const note = compiledNote(compiled);
      // the first frame (memories of the prompted frames, most kernel compiles) is not representative
      if (n > 0) frameTimes.push(t1 - t0);
      n++;
      state('tracked', n);
      logTiming(`frame ${fm.frameIndex}: track ${(t1 - t0).toFixed(0)} ms, draw ${(t2 - t1).toFixed(0)} ms${note}`);
      trackProgress.value = n;
      setStatus(statusEl, total ? `tracking: frame ${fm.frameIndex}, ${n} of ${total} (${Math.round((100 * n) / total)}%)` : `tracking: frame ${fm.frameIndex} (${n} frames)`);
      if (stopRequested) break;
      t0 = performance.now();
      compiled = ctx!.stats.pipelinesCompiled;
    }
    setStatus(statusEl, `tracked ${n} frames${stopRequested ? ' (stopped)' : ''}`, 'ok');
  } catch (e) {
    setStatus(statusEl, errorText(e), 'error');
  } finally {
    stopBtn.disabled = true;
    setBusy(false);
  }
}

// ------------------------------------------------------------------------------------- segment everything

let everythingAbort: AbortController | null = null;

/**
 * The automatic mask generator on the shown frame. Its masks are drawn by the generator on the GPU
 * (`draw`), each in its own colour: over the frame into the WebGPU canvas, or (display '2d') into
 * a texture read back and laid over the frame.
 */
async function segmentEverything(): Promise<void> {
  if (!ctx || ctx.isLost || !model || !frames || busy) return;
  const num = (id: string) => Number($<HTMLInputElement>(id).value);
  setBusy(true);
  const ac = new AbortController();
  everythingAbort = ac;
  cancelEverythingBtn.disabled = false;
  everythingProgress.value = 0;
  state('everything', '');
  try {
    const device = ctx.device;
    const gen = new AutomaticMaskGenerator(model, {
      pointsPerSide: num('pointsPerSide'), predIouThresh: num('predIou'), stabilityScoreThresh: num('stability'),
    });
    const f = await frames.get(shown);
    const pixels = framePixels(f);
    const t0 = performance.now();
    const compiled = ctx.stats.pipelinesCompiled;
    setStatus(everythingStatus, `segmenting frame ${shown}…`);
    const canvasCtx = gpuCanvas;
    const draw = display === 'webgpu' && canvasCtx
      ? { target: () => canvasCtx.getCurrentTexture(), image: frameTexture(device, f, canvasCtx.getCurrentTexture().format), alpha: ALPHA }
      : { target: maskTexture(device, f.width, f.height), alpha: ALPHA };
    const records = await gen.generate(pixels, {
      signal: ac.signal,
      onProgress: (done, total) => { everythingProgress.max = total; everythingProgress.value = done; },
      draw,
    });
    if (display === '2d') {
      view2d!.drawImage(f.bitmap, 0, 0);
      view2d!.drawImage(await readLayer(device, f.width, f.height), 0, 0);
    }
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    const union = new Uint8Array(f.width * f.height);
    for (const r of records) {
      const m = r.segmentation as Uint8Array;
      for (let i = 0; i < union.length; i++) union[i] |= m[i]!;
    }
    const covered = union.reduce((a, v) => a + v, 0) / union.length;
    state('covered', covered.toFixed(4));
    state('everything', records.length);
    setStatus(everythingStatus, `frame ${shown}: ${records.length} masks, ${(100 * covered).toFixed(1)}% of the frame, in ${s} s${compiledNote(compiled)}`, 'ok');
  } catch (e) {
    const aborted = (e as Error)?.name === 'AbortError';
    setStatus(everythingStatus, aborted ? 'cancelled' : errorText(e), aborted ? '' : 'error');
    state('everything', aborted ? 'cancelled' : 'error');
  } finally {
    everythingAbort = null;
    cancelEverythingBtn.disabled = true;
    setBusy(false);
  }
}

// canvas: click = point, drag = box
let down: { x: number; y: number; shift: boolean; button: number } | null = null;
const toVideo = (e: MouseEvent): [number, number] => {
  const r = canvas.getBoundingClientRect();
  const x = ((e.clientX - r.left - canvas.clientLeft) * canvas.width) / canvas.clientWidth;
  const y = ((e.clientY - r.top - canvas.clientTop) * canvas.height) / canvas.clientHeight;
  return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
};
canvas.addEventListener('contextmenu', (e) => e.preventDefault());
canvas.addEventListener('mousedown', (e) => {
  if (busy || !predictor) return;
  const [x, y] = toVideo(e);
  down = { x, y, shift: e.shiftKey, button: e.button };
});
canvas.addEventListener('mouseup', (e) => {
  if (!down || busy || !predictor) return;
  const [x, y] = toVideo(e);
  const d = down;
  down = null;
  const obj = current ?? newObject();
  const old = obj.prompts.get(shown);
  const dragged = Math.hypot(x - d.x, y - d.y) > Math.max(6, canvas.width / 100);
  if (dragged) {
    // a box replaces the object's prompts on this frame
    const box: [number, number, number, number] = [Math.min(d.x, x), Math.min(d.y, y), Math.max(d.x, x), Math.max(d.y, y)];
    void prompt(shown, obj, { points: [], labels: [], box });
  } else {
    const label = d.shift || d.button === 2 ? 0 : 1;
    const p: Prompt = old ? { points: [...old.points], labels: [...old.labels], box: old.box } : { points: [], labels: [] };
    p.points.push([x, y]);
    p.labels.push(label);
    void prompt(shown, obj, p);
  }
});

// ------------------------------------------------------------------------------------- loading

let configOverride: EfficientTAMConfig | null = null;
let lastWeights: File | string | null = null;

async function loadModel(source: File | string): Promise<void> {
  if (!ctx) return;
  lastWeights = source;
  model = null;
  state('model', 'loading');
  rebuildPredictor();
  const name = typeof source === 'string' ? source : source.name;
  setStatus(modelStatus, `loading ${name}…`);
  progress.value = 0;
  progress.removeAttribute('max');
  const t0 = performance.now();
  try {
    const weights = await loadWeights(source, {
      onProgress: (loaded, total) => {
        const mb = (n: number) => (n / 2 ** 20).toFixed(1);
        if (total) { progress.max = total; progress.value = loaded; }
        setStatus(modelStatus, `loading ${name}: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''} MB`);
      },
    });
    let config: EfficientTAMConfig;
    let what: string;
    if (configOverride) {
      config = configOverride;
      what = 'the given config.json';
    } else {
      const size = Number($<HTMLSelectElement>('imageSize').value) || undefined;
      const v = detectVariant(weights, { imageSize: size });
      config = v.config;
      what = `${v.variant}${v.notes.length ? ` (${v.notes.join('; ')})` : ''}`;
    }
    // kernels for this GPU: the table stored for it, or timed now (a few seconds, once per GPU);
    // the model's pipelines compiled ahead so that the first frame does not wait for them
    model = await EfficientTAM.create(ctx, weights, config, {
      onProgress: (p) => setStatus(modelStatus, p.stage === 'tune'
        ? `choosing the fastest kernels for this GPU: ${p.tune.done} of ${p.tune.total}`
        : `compiling the model's kernels: ${p.done} of ${p.total}`),
    });
    await ctx.sync();
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    const k = model.kernelReport;
    setStatus(modelStatus, `${name}: ${what}, input ${model.imageSize}x${model.imageSize}, ready (${s} s; kernels: ${k?.source ?? 'defaults'})`, 'ok');
    state('model', 'ready');
  } catch (e) {
    model = null;
    const hint = configOverride ? '' : '\nIf this is not one of the official EfficientTAM, SAM 2 or SAM 2.1 checkpoints, also choose its config.json.';
    setStatus(modelStatus, `These weights cannot be used: ${errorText(e)}${hint}`, 'error');
    state('model', 'error');
  }
  rebuildPredictor();
}

async function openFrames(make: () => Promise<Frames>): Promise<void> {
  frames?.dispose();
  frames = null;
  state('source', 'loading');
  rebuildPredictor();
  setStatus(sourceStatus, 'opening…');
  try {
    frames = await make();
    slider.max = String(Number.isFinite(frames.count) ? frames.count - 1 : 0);
    slider.disabled = !!frames.live;
    setStatus(sourceStatus, frames.label, 'ok');
    state('source', 'ready');
    rebuildPredictor();
    await showFrame(0);
  } catch (e) {
    setStatus(sourceStatus, errorText(e), 'error');
    state('source', 'error');
  }
}

$<HTMLInputElement>('weightsFile').addEventListener('change', (e) => {
  const f = (e.target as HTMLInputElement).files?.[0];
  if (f) void loadModel(f);
});
$<HTMLInputElement>('configFile').addEventListener('change', async (e) => {
  const f = (e.target as HTMLInputElement).files?.[0];
  configOverride = null;
  if (!f) return;
  try {
    configOverride = validateConfig(JSON.parse(await f.text()));
    setStatus(modelStatus, `config ${f.name} read; now choose the weights`);
    if (lastWeights) void loadModel(lastWeights);
  } catch (err) {
    setStatus(modelStatus, `${f.name} is not a usable EfficientTAM / SAM 2 config: ${errorText(err)}`, 'error');
  }
});
$<HTMLSelectElement>('imageSize').addEventListener('change', () => { if (lastWeights && !configOverride) void loadModel(lastWeights); });
$<HTMLButtonElement>('loadUrl').addEventListener('click', () => {
  const url = $<HTMLInputElement>('weightsUrl').value.trim();
  if (url) void loadModel(url);
});
$<HTMLInputElement>('videoFile').addEventListener('change', (e) => {
  const f = (e.target as HTMLInputElement).files?.[0];
  if (f) void openFrames(() => videoFileFrames(f));
});
$<HTMLInputElement>('imageFiles').addEventListener('change', (e) => {
  const fs = [...((e.target as HTMLInputElement).files ?? [])];
  if (fs.length) void openFrames(() => imageFrames(fs));
});
$<HTMLButtonElement>('webcam').addEventListener('click', () => void openFrames(webcamFrames));
$<HTMLButtonElement>('newObject').addEventListener('click', () => { if (predictor) newObject(); });
$<HTMLButtonElement>('reset').addEventListener('click', () => { if (!busy) resetObjects(); });
trackBtn.addEventListener('click', () => void track());
stopBtn.addEventListener('click', () => { stopRequested = true; });
everythingBtn.addEventListener('click', () => void segmentEverything());
cancelEverythingBtn.addEventListener('click', () => everythingAbort?.abort());
slider.addEventListener('input', () => { if (!busy) void showFrame(Number(slider.value)); });

// ------------------------------------------------------------------------------------- start

/** Watches the context's device: a loss (any reason) shows as lost, with the way back. */
function watchDevice(c: GpuContext): void {
  void c.device.lost.then((info) => {
    if (ctx !== c) return; // a context already replaced
    predictor = null; // its tensors went with the device
    masksByFrame.clear();
    frameTex = maskTex = null;
    state('gpu', 'lost');
    canvas.classList.add('lost');
    setBusy(false);
    if (model) {
      model = null;
      state('model', 'lost');
      setStatus(modelStatus, 'The model was on the GPU device that was lost: press Recover above to load it again.', 'error');
    }
    setStatus(statusEl, 'The GPU device was lost: nothing can be tracked until you press Recover.', 'error');
    showBanner(`The GPU device was lost (${info.reason}${info.message ? `: ${info.message}` : ''}). ` +
      'Recover makes a new one, reloads the model and puts your objects back (no page reload).', true);
  });
}

/** After a lost device: a new context, the same weights again, the objects' prompts put back. */
async function recover(): Promise<void> {
  recoverBtn.disabled = true;
  state('gpu', 'recovering');
  const saved = objects.map((o) => ({ ...o, prompts: new Map(o.prompts) }));
  try {
    const c = await GpuContext.create();
    ctx = c;
    watchDevice(c);
    configureCanvas(c.device);
    canvas.classList.remove('lost');
    hideBanner();
    state('gpu', 'ready');
    if (lastWeights) await loadModel(lastWeights);
    if (model && predictor && saved.some((o) => o.prompts.size)) await restorePrompts(saved);
    else await showFrame(shown).catch(() => undefined);
  } catch (e) {
    state('gpu', 'lost');
    showBanner(`Recovering failed: ${errorText(e)}. Reload the page.`, true);
  } finally {
    recoverBtn.disabled = false;
  }
}

/** The prompts of objects made before a recovery, given to the new predictor in the same order. */
async function restorePrompts(saved: ObjectUI[]): Promise<void> {
  for (const o of saved) {
    const obj: ObjectUI = { id: o.id, color: o.color, prompts: new Map() };
    objects.push(obj);
    current = obj;
    for (const [frame, p] of o.prompts) await prompt(frame, obj, p);
  }
  renderObjects();
  setStatus(statusEl, `${objects.length} object(s) restored on the new GPU device. Press Track to go on.`);
}

async function main(): Promise<void> {
  state('model', 'none');
  state('source', 'none');
  state('tracked', 0);
  setBusy(false);
  try {
    if (!navigator.gpu) await GpuContext.create(); // throws the library's WebGPUUnavailableError
    // before the page's own device: the probe may take every device down with it
    display = (await webgpuCanvasWorks()) ? 'webgpu' : '2d';
    state('display', display);
    ctx = await GpuContext.create();
  } catch (e) {
    const msg = e instanceof WebGPUUnavailableError ? e.message : `WebGPU could not start: ${errorText(e)}`;
    showBanner(`WebGPU is not available, so this demo cannot run.\n${msg}`);
    state('model', 'no-webgpu');
    for (const el of document.querySelectorAll<HTMLInputElement | HTMLButtonElement>('input, button')) el.disabled = true;
    return;
  }
  configureCanvas(ctx.device);
  watchDevice(ctx);
  state('gpu', 'ready');
  if (display === '2d') logTiming('this browser cannot show a WebGPU canvas: frames and masks are drawn on a 2D canvas (masks read back)');
  const params = new URLSearchParams(location.search);
  const cfg = params.get('config'), w = params.get('weights');
  if (cfg) {
    try {
      configOverride = validateConfig(await (await fetch(cfg)).json());
    } catch (e) {
      setStatus(modelStatus, `${cfg}: ${errorText(e)}`, 'error');
    }
  }
  if (w) {
    $<HTMLInputElement>('weightsUrl').value = w;
    await loadModel(w);
  }
}

recoverBtn.addEventListener('click', () => void recover());

declare global {
  interface Window {
    /** for tests: what a person cannot easily do on purpose */
    etamDemo: { loseDevice(): void };
  }
}
window.etamDemo = { loseDevice: () => ctx?.device.destroy() };

void main();
