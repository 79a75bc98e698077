/**
 * Page fixture for tests/browser.test.ts: the sizes users have (tests/sizes.test.ts) in the
 * browser, on a device asked for WebGPU's default 128 MiB storage binding and 256 MiB buffer,
 * with the tiny golden model:
 *   - a 12-megapixel photo (pixels) with multimask;
 *   - three objects on a 4000x3000 video whose frames are canvases (the GPU copy of
 *     preprocessTexture);
 *   - a very wide and a very tall image, as long as the device's largest texture.
 * Masks are checked against the low-res logits at sampled pixels (tests/size_fixtures.ts).
 *
 *   await window.etamSizes()
 */
import { fetchCase } from '../../src/browser/golden.js';
import { caseModel } from '../../src/golden/stages.js';
import { GpuContext } from '../../src/gpu/context.js';
import { ImagePredictor } from '../../src/model/image_predictor.js';
import { VideoPredictor } from '../../src/model/video_predictor.js';
import { checkMaskSamples, picture, type SampleCheck } from '../size_fixtures.js';

export interface SizeRun extends SampleCheck {
  what: string;
  width: number;
  height: number;
  masks: number;
  seconds: number;
}

export interface SizesResult {
  adapter: string;
  maxStorageBufferBindingSize: number;
  maxTextureDimension2D: number;
  runs: SizeRun[];
  /** errors the device reported outside the library's calls */
  uncaptured: string[];
}

const MiB = 2 ** 20;
const logEl = document.getElementById('log')!;
const log = (s: string) => {
  logEl.textContent += `\n${s}`;
  console.log(s);
};

function canvasFrame(W: number, H: number, rect: [number, number, number, number], shade: number): OffscreenCanvas {
  const c = new OffscreenCanvas(W, H);
  const g = c.getContext('2d')!;
  g.fillStyle = `rgb(${90 + shade}, ${90 + shade}, ${90 + shade})`;
  g.fillRect(0, 0, W, H);
  g.fillStyle = 'rgb(30, 30, 30)';
  g.fillRect(0, 0, W, Math.floor(H / 10));
  g.fillStyle = 'rgb(230, 230, 230)';
  g.fillRect(rect[0], rect[2], rect[1] - rect[0], rect[3] - rect[2]);
  return c;
}

async function sizes(): Promise<SizesResult> {
  const ctx = await GpuContext.create({ limits: { maxStorageBufferBindingSize: 128 * MiB, maxBufferSize: 256 * MiB } });
  const uncaptured: string[] = [];
  ctx.device.addEventListener('uncapturederror', (e) => uncaptured.push((e as GPUUncapturedErrorEvent).error.message));
  const model = caseModel(ctx, await fetchCase('/shared/golden/tiny/'));
  const m = model.promptEncoder.maskInputSize;
  const runs: SizeRun[] = [];
  const side = ctx.device.limits.maxTextureDimension2D;

  const photos: [string, number, number, [number, number, number, number], [number, number]][] = [
    ['12 MP photo, multimask', 4000, 3000, [1500, 2600, 1000, 2200], [2000, 1500]],
    ['very wide image', side, 48, [side / 4, side / 2, 10, 40], [(3 * side) / 8, 25]],
    ['very tall image', 40, side, [5, 30, side / 4, side / 2], [20, (3 * side) / 8]],
  ];
  for (const [what, W, H, rect, point] of photos) {
    const t0 = performance.now();
    const p = new ImagePredictor(model);
    p.setImage(picture(W, H, 4, rect));
    const r = await p.predict({ points: [point], labels: [1], multimask: true });
    p.reset();
    const check = checkMaskSamples(r.masks as Uint8Array, r.lowResLogits!, 3, m, H, W, 300, true);
    runs.push({ what, width: W, height: H, masks: r.numMasks, seconds: (performance.now() - t0) / 1000, ...check });
    log(`${what} ${W}x${H}: ${check.checked} pixels checked, ${check.mismatches.length} wrong`);
  }

  const t0 = performance.now();
  const W = 4000, H = 3000;
  const frames = [canvasFrame(W, H, [1000, 2000, 800, 1800], 0), canvasFrame(W, H, [1040, 2040, 820, 1820], 4)];
  const vp = new VideoPredictor(model, { frames });
  (await vp.addPoints(0, 1, [[1500, 1300]], [1])).release();
  (await vp.addPoints(0, 2, [[3500, 2500]], [1])).release();
  (await vp.addBox(0, 3, [200, 100, 3800, 280])).release();
  for await (const fm of vp.propagate()) {
    const masks = (await fm.masks()) as Uint8Array;
    const check = checkMaskSamples(masks, await fm.lowResLogits(), 3, m, H, W, 200, false);
    runs.push({ what: `video frame ${fm.frameIndex}, 3 objects`, width: W, height: H, masks: 3, seconds: (performance.now() - t0) / 1000, ...check });
    log(`video frame ${fm.frameIndex}: ${check.checked} pixels checked, ${check.mismatches.length} wrong`);
    fm.release();
  }
  vp.dispose();
  const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const result: SizesResult = {
    adapter: info ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : 'unknown',
    maxStorageBufferBindingSize: ctx.device.limits.maxStorageBufferBindingSize,
    maxTextureDimension2D: side,
    runs,
    uncaptured,
  };
  ctx.destroy();
  return result;
}

declare global {
  interface Window {
    etamSizes: () => Promise<SizesResult>;
  }
}
window.etamSizes = sizes;
log('ready');
