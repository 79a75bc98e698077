/**
 * The library in a real browser: Debian's Chromium, headless, with its software WebGPU
 * (SwiftShader), pages served from 127.0.0.1 by a vite dev server (tests/browser/server.ts).
 *
 * - golden parity inside the page: the `tiny` case's image encoder and prompt outputs, and its
 *   whole video script, compared with the same bounds as the Node tests;
 * - the demo (demo/index.html) driven like a person would: load the weights, open the bedroom
 *   frames, segment everything on frame 0 (the masks drawn where the page says they are), click an
 *   object, track 8 frames; the screenshot is saved to test-output/demo.png.
 *   The demo draws on a WebGPU canvas (FrameMasks.draw); it shows in headless screenshots thanks
 *   to --use-vulkan=swiftshader (see CHROMIUM_ARGS in tests/browser/server.ts). And the demo under
 *   Chromium's default headless flags, where a WebGPU canvas kills the GPU process: it draws on a
 *   2D canvas instead, tracks, and recovers from a lost device without a page reload;
 * - live frames: the video predictor in streaming mode on a playing <video> (src/model/live.ts
 *   `videoFrames`), and the GPU copy of live frames (`preprocessTexture`) checked against the
 *   same frame's pixels read through a 2D canvas;
 * - sizes users have (tests/sizes.test.ts) at WebGPU's default 128 MiB binding limit: a 12 MP
 *   photo with multimask, three objects on a 4000x3000 video of canvas frames, a very wide and a
 *   very tall image.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, ElementHandle, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpackBits, type GoldenRow } from '../src/golden/compare.js';
import { loadCase } from '../src/golden/case.js';
import { chromiumAvailable, CHROMIUM, CHROMIUM_DEFAULT_ARGS, launch, openPage, REPO, serve, SHARED, type Served } from './browser/server.js';
import type { LiveResult } from './browser/live.js';
import type { SizesResult } from './browser/sizes.js';
import type { ParityRequest, ParityResult } from './browser/parity.js';

const OUT = resolve(REPO, 'test-output');

let served: Served;
let browser: Browser;

beforeAll(async () => {
  if (!chromiumAvailable()) throw new Error(`no Chromium at ${CHROMIUM} (bash .ci/setup installs it; or set CHROMIUM)`);
  served = await serve();
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
  await served?.close();
});

const sci = (v: number | null) => (v === null ? '-' : v.toExponential(2));

/** The worst float error relative to its bound, and the worst mask row, for the report. */
function summary(rows: GoldenRow[]): string {
  const floats = rows.filter((r) => r.kind === 'float');
  const masks = rows.filter((r) => r.kind === 'mask');
  const worst = floats.reduce<GoldenRow | null>((w, r) => (r.kind === 'float' && (!w || (w.kind === 'float' && r.maxAbsErr / r.bound > w.maxAbsErr / w.bound)) ? r : w), null);
  const maxDiff = masks.reduce((m, r) => Math.max(m, r.kind === 'mask' ? r.differing : 0), 0);
  return `${rows.length} rows; worst float ${worst?.name} err ${worst?.kind === 'float' ? sci(worst.maxAbsErr) : '-'} ` +
    `(bound ${worst?.kind === 'float' ? sci(worst.bound) : '-'}); most differing mask pixels ${maxDiff}`;
}

/** One parity page for both runs: the second reuses the first's device and compiled pipelines. */
let parityPage: Promise<{ page: Page; errors: string[] }> | null = null;

async function runParity(req: ParityRequest): Promise<ParityResult> {
  parityPage ??= openPage(browser, `${served.origin}/tests/browser/parity.html`, () => {});
  const { page, errors } = await parityPage;
  await page.waitForFunction(() => typeof window.etamParity === 'function');
  const r = await page.evaluate((q) => window.etamParity(q), req);
  expect(errors).toEqual([]);
  return r;
}

describe('browser (headless Chromium, SwiftShader WebGPU): golden tiny, tuned kernels', () => {
  it('tunes the kernels (stored in IndexedDB); the image encoder and every prompt.* output then match the reference', async () => {
    // a fresh browser profile: nothing stored, so the candidates are timed (a short budget)
    const r = await runParity({ case: 'tiny', what: 'prompts', tuneBudgetMs: 8000 });
    const k = r.kernels!;
    console.log(`browser kernels: ${k.source}, ${k.classes} classes, ${k.timed} timed in ${(k.tuneMs / 1000).toFixed(1)} s, ` +
      `${k.compiled} pipelines compiled ahead in ${(k.compileMs / 1000).toFixed(1)} s; not the default: ${k.changed.join('; ') || 'none'}`);
    expect(k).toMatchObject({ source: 'tuned', saved: true });
    expect(k.store).toMatch(/IndexedDB/);
    expect(k.timed).toBeGreaterThanOrEqual(1);
    expect(k.classes).toBeGreaterThan(10);
    console.log(`browser, ${r.adapter}, tiny prompts (${r.seconds.toFixed(1)} s)\n${r.table}\n${summary(r.rows)}`);
    expect(r.rows.map((x) => x.name).sort()).toEqual([...r.expected].sort());
    expect(r.rows.length).toBeGreaterThanOrEqual(18);
    for (const row of r.rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
  }, 300_000);

  it('the video script: every video.* reference matches, object presence agrees', async () => {
    const r = await runParity({ case: 'tiny', what: 'video' });
    await (await parityPage)?.page.close();
    const ms = [...r.frameMs].sort((a, b) => a - b);
    console.log(`browser, ${r.adapter}, tiny video script (${r.seconds.toFixed(1)} s, median ${ms[ms.length >> 1]?.toFixed(0)} ms per tracked frame)\n${r.table}\n${summary(r.rows)}`);
    expect(r.rows.map((x) => x.name).sort()).toEqual([...r.expected].sort());
    for (const row of r.rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
    expect(r.presence).toEqual([]);
  }, 600_000);

  it('a later page on the same profile uses the table stored in IndexedDB, timing nothing', async () => {
    const { page, errors } = await openPage(browser, `${served.origin}/tests/browser/parity.html`, () => {});
    try {
      await page.waitForFunction(() => typeof window.etamKernelsAgain === 'function');
      const k = await page.evaluate((c) => window.etamKernelsAgain(c), 'tiny');
      expect(k).toMatchObject({ source: 'stored table', timed: 0, dispatches: 0 });
      expect(k.classes).toBeGreaterThan(10);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 120_000);
});

describe('browser (headless Chromium, SwiftShader WebGPU): golden sam2_tiny (SAM 2.1: Hiera, FPN, high-resolution decoder)', () => {
  beforeAll(() => { parityPage = null; }); // a fresh parity page (the tiny tests close theirs)
  afterAll(async () => { await (await parityPage)?.page.close(); parityPage = null; });

  it('image encoder (Hiera stages, FPN levels, high-resolution maps) and every prompt.* output match the reference', async () => {
    const r = await runParity({ case: 'sam2_tiny', what: 'prompts' });
    console.log(`browser, ${r.adapter}, sam2_tiny prompts (${r.seconds.toFixed(1)} s)\n${r.table}\n${summary(r.rows)}`);
    expect(r.rows.map((x) => x.name).sort()).toEqual([...r.expected].sort());
    expect(r.rows.map((x) => x.name)).toEqual(expect.arrayContaining(['image.trunk.3', 'image.high_res_feats.0', 'prompt.refine.low_res_logits']));
    for (const row of r.rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
  }, 300_000);

  it('the video script: every video.* reference matches, object presence agrees (the absent frame included)', async () => {
    const r = await runParity({ case: 'sam2_tiny', what: 'video' });
    const ms = [...r.frameMs].sort((a, b) => a - b);
    console.log(`browser, ${r.adapter}, sam2_tiny video script (${r.seconds.toFixed(1)} s, median ${ms[ms.length >> 1]?.toFixed(0)} ms per tracked frame)\n${r.table}\n${summary(r.rows)}`);
    expect(r.rows.map((x) => x.name).sort()).toEqual([...r.expected].sort());
    for (const row of r.rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
    expect(r.presence).toEqual([]);
  }, 600_000);
});

/** Where the demo's canvas is on the page (document coordinates), and its pixel size. */
async function viewBox(page: Page): Promise<{ left: number; top: number; width: number; height: number; W: number; H: number }> {
  return page.$eval('#view', (c) => {
    const cv = c as HTMLCanvasElement;
    const r = cv.getBoundingClientRect();
    return { left: Math.round(r.left + cv.clientLeft + scrollX), top: Math.round(r.top + cv.clientTop + scrollY), width: cv.clientWidth, height: cv.clientHeight, W: cv.width, H: cv.height };
  });
}

/** Clicks at a point given in video pixels, through the canvas's scaling. */
async function clickVideo(page: Page, p: readonly [number, number]): Promise<void> {
  const at = await page.$eval('#view', (c, q) => {
    const cv = c as HTMLCanvasElement;
    const r = cv.getBoundingClientRect();
    return { x: r.left + cv.clientLeft + (q[0] * cv.clientWidth) / cv.width, y: r.top + cv.clientTop + (q[1] * cv.clientHeight) / cv.height };
  }, p);
  await page.mouse.click(at.x, at.y);
}

/**
 * The screenshot's canvas shows frame `frame` with object 1's mask blended in blue ([30, 144, 255]
 * at 0.55) where the golden's pass1 mask of object 1 is (object 1 tracked alone gives exactly that
 * mask): inside it the pixels must be much bluer than outside. Returns the mean blue - red inside
 * and outside.
 */
async function checkBlueMask(shot: string, box: { left: number; top: number; width: number; height: number }, frame: number,
  golden = 'tiny'): Promise<{ inside: number; outside: number }> {
  expect([box.width, box.height]).toEqual([960, 540]);
  const { default: sharp } = await import('sharp');
  const px = await sharp(shot).extract(box).removeAlpha().raw().toBuffer();
  const c = await loadCase(resolve(SHARED, `golden/${golden}`));
  const ref = c.tensors.info(`video.pass1.frame${frame}.masks_bits`);
  const [, H] = ref.shape as [number, number, number];
  const mask = unpackBits(c.tensors.getRaw(`video.pass1.frame${frame}.masks_bits`) as Uint8Array, [ref.shape[0]!, H, 960]);
  let inN = 0, inBR = 0, outN = 0, outBR = 0;
  for (let i = 0; i < H * 960; i++) {
    const br = px[i * 3 + 2]! - px[i * 3]!;
    if (mask[i]) { inN++; inBR += br; } else { outN++; outBR += br; }
  }
  const inside = inBR / inN, outside = outBR / outN;
  console.log(`object 1 on frame ${frame}: ${inN} px (${((100 * inN) / (H * 960)).toFixed(1)}%), mean blue-red inside ${inside.toFixed(1)}, outside ${outside.toFixed(1)}`);
  expect(inN).toBeGreaterThan(0.01 * H * 960);
  expect(inside - outside).toBeGreaterThan(60);
  return { inside, outside };
}

describe('browser: the demo, driven like a person would', () => {
  it('says clearly when the browser has no WebGPU', async () => {
    const page = await browser.newPage();
    try {
      await page.evaluateOnNewDocument(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
      await page.goto(`${served.origin}/demo/index.html`);
      await page.waitForSelector('body[data-model="no-webgpu"]');
      expect(await page.$eval('#banner', (e) => e.textContent)).toMatch(/WebGPU is not available.*navigator\.gpu is missing/s);
      expect(await page.$eval('#weightsFile', (e) => (e as HTMLInputElement).disabled)).toBe(true);
    } finally {
      await page.close();
    }
  });

  it('loads the tiny weights, opens the bedroom frames, segments everything on frame 0, tracks a clicked object over 8 frames; the screenshot shows its colour there', async () => {
    const { page, errors } = await openPage(browser, `${served.origin}/demo/index.html`);
    try {
      await page.waitForSelector('body[data-gpu="ready"]', { timeout: 60_000 });
      // the tiny model is not an official variant: its config.json goes with the weights
      const golden = resolve(SHARED, 'golden/tiny');
      const upload = async (sel: string, ...files: string[]) => ((await page.$(sel)) as ElementHandle<HTMLInputElement>).uploadFile(...files);
      // without it the page says what is wrong; choosing the config then loads the same weights
      await upload('#weightsFile', resolve(golden, 'weights.safetensors'));
      await page.waitForSelector('body[data-model="error"], body[data-model="ready"]');
      expect(await page.$eval('#modelStatus', (e) => e.textContent)).toMatch(/cannot be used.*config\.json/s);
      await upload('#configFile', resolve(golden, 'config.json'));
      await page.waitForSelector('body[data-model="ready"], body[data-model="error"]');
      const modelText = await page.$eval('#modelStatus', (e) => e.textContent ?? '');
      expect(await page.$eval('body', (b) => b.dataset.model), modelText).toBe('ready');

      const names = Array.from({ length: 8 }, (_, i) => resolve(SHARED, 'data/bedroom', `${String(i).padStart(5, '0')}.jpg`));
      await upload('#imageFiles', ...names);
      await page.waitForSelector('body[data-source="ready"], body[data-source="error"]');
      expect(await page.$eval('#sourceStatus', (e) => e.textContent)).toMatch(/8 frames/);

      // "Segment everything" on frame 0 (the thresholds at 0: random weights): every mask blended
      // over the frame on the GPU, so the pixels that change are the pixels under some mask
      const canvasBox = () => page.$eval('#view', (c) => {
        const cv = c as HTMLCanvasElement;
        const r = cv.getBoundingClientRect();
        return { left: Math.round(r.left + cv.clientLeft + scrollX), top: Math.round(r.top + cv.clientTop + scrollY), width: cv.clientWidth, height: cv.clientHeight };
      });
      const { default: sharpLib } = await import('sharp');
      const shoot = async () => sharpLib(await page.screenshot({ fullPage: true })).extract(await canvasBox()).removeAlpha().raw().toBuffer();
      const plain = await shoot();
      for (const [id, v] of [['#pointsPerSide', '4'], ['#predIou', '0'], ['#stability', '0']] as const) {
        await page.$eval(id, (e, val) => { (e as HTMLInputElement).value = val; }, v);
      }
      await page.click('#everything');
      await page.waitForFunction(() => document.body.dataset.busy === '0' && (document.body.dataset.everything ?? '') !== '', { timeout: 300_000 });
      const everything = await page.$eval('body', (b) => ({ n: b.dataset.everything, covered: Number(b.dataset.covered) }));
      const drawn = await shoot();
      let changed = 0;
      for (let i = 0; i < plain.length / 3; i++) if (Math.abs(plain[3 * i]! - drawn[3 * i]!) + Math.abs(plain[3 * i + 2]! - drawn[3 * i + 2]!) > 6) changed++;
      const changedFrac = changed / (plain.length / 3);
      console.log(`segment everything (4x4 points): ${everything.n} masks, ${(100 * everything.covered).toFixed(1)}% covered, ${(100 * changedFrac).toFixed(1)}% of the canvas changed; ` +
        `${await page.$eval('#everythingStatus', (e) => e.textContent)}`);
      expect(Number(everything.n)).toBeGreaterThan(0);
      expect(everything.covered).toBeGreaterThan(0.01);
      expect(Math.abs(changedFrac - everything.covered)).toBeLessThan(0.02);

      // click where the golden script clicks object 1 (video pixels), through the canvas's scaling
      expect(await page.$eval('body', (b) => b.dataset.display)).toBe('webgpu');
      const vb = await viewBox(page);
      expect([vb.W, vb.H]).toEqual([960, 540]);
      await clickVideo(page, [528, 324]);
      await page.waitForFunction(() => /prompted|rror/.test(document.getElementById('status')!.textContent ?? ''));
      expect(await page.$eval('#status', (e) => e.textContent)).toMatch(/Object 1 prompted on frame 0/);
      // the click is drawn in its object's colour (object 1: blue), not in a label colour
      const mark = await page.$eval('#marks', (c) => Array.from((c as HTMLCanvasElement).getContext('2d')!.getImageData(528, 324, 1, 1).data));
      expect(mark).toEqual([30, 144, 255, 255]);

      await page.click('#track');
      await page.waitForFunction(() => document.body.dataset.busy === '0' && /tracked|rror/.test(document.getElementById('status')!.textContent ?? ''));
      expect(await page.$eval('#status', (e) => e.textContent)).toBe('tracked 8 frames');
      const timings = await page.$eval('#timings', (e) => e.textContent ?? '');
      console.log(`demo timings (headless Chromium, SwiftShader, tiny model):\n${timings}`);
      // progress: all 8 frames of 8; the time per frame in view above the picture (viewport 1280x1000, checked at 900)
      expect(await page.$eval('#trackProgress', (e) => [(e as HTMLProgressElement).value, (e as HTMLProgressElement).max, (e as HTMLElement).hidden])).toEqual([8, 8, false]);
      const summary = await page.$eval('#timingSummary', (e) => ({ text: e.textContent ?? '', bottom: e.getBoundingClientRect().bottom + scrollY }));
      expect(summary.text).toMatch(/median \d+ ms per frame/);
      expect(summary.bottom).toBeLessThan(900);

      mkdirSync(OUT, { recursive: true });
      const shot = resolve(OUT, 'demo.png');
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`demo screenshot: ${shot}`);
      // the canvas shows frame 7 with object 1's mask blended in blue by drawMasks on the GPU
      await checkBlueMask(shot, await viewBox(page), 7);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 600_000);

  it('a SAM 2.1 model (sam2_tiny: Hiera, FPN, high-resolution decoder): loaded with its config, a click tracked over 8 frames, the golden mask in its colour', async () => {
    const { page, errors } = await openPage(browser, `${served.origin}/demo/index.html`);
    try {
      await page.waitForSelector('body[data-gpu="ready"]', { timeout: 60_000 });
      const golden = resolve(SHARED, 'golden/sam2_tiny');
      const upload = async (sel: string, ...files: string[]) => ((await page.$(sel)) as ElementHandle<HTMLInputElement>).uploadFile(...files);
      await upload('#configFile', resolve(golden, 'config.json'));
      await upload('#weightsFile', resolve(golden, 'weights.safetensors'));
      await page.waitForSelector('body[data-model="ready"], body[data-model="error"]');
      const modelText = await page.$eval('#modelStatus', (e) => e.textContent ?? '');
      expect(await page.$eval('body', (b) => b.dataset.model), modelText).toBe('ready');
      // the golden's video is these 8 frames (SAM 2.1's pointer encoding depends on the video's length)
      await upload('#imageFiles', ...Array.from({ length: 8 }, (_, i) => resolve(SHARED, 'data/bedroom', `${String(i).padStart(5, '0')}.jpg`)));
      await page.waitForSelector('body[data-source="ready"], body[data-source="error"]');
      await clickVideo(page, [528, 324]);
      await page.waitForFunction(() => /prompted|rror/.test(document.getElementById('status')!.textContent ?? ''));
      expect(await page.$eval('#status', (e) => e.textContent)).toMatch(/Object 1 prompted on frame 0/);
      await page.click('#track');
      await page.waitForFunction(() => document.body.dataset.busy === '0' && /tracked|rror/.test(document.getElementById('status')!.textContent ?? ''));
      expect(await page.$eval('#status', (e) => e.textContent)).toBe('tracked 8 frames');
      mkdirSync(OUT, { recursive: true });
      const shot = resolve(OUT, 'demo-sam2_tiny.png');
      await page.screenshot({ path: shot, fullPage: true });
      await checkBlueMask(shot, await viewBox(page), 7, 'sam2_tiny');
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 600_000);
});

describe("browser: the demo under Chromium's default headless flags", () => {
  it('draws on a 2D canvas where a WebGPU canvas fails, tracks, and recovers from a lost device without a page reload', async () => {
    const plain = await launch(CHROMIUM_DEFAULT_ARGS);
    try {
      const { page, errors } = await openPage(plain, `${served.origin}/demo/index.html`);
      await page.waitForSelector('body[data-gpu="ready"], body[data-model="no-webgpu"]', { timeout: 120_000 });
      // the probe noticed that a WebGPU canvas does not work here
      expect(await page.$eval('body', (b) => [b.dataset.gpu, b.dataset.display])).toEqual(['ready', '2d']);
      const golden = resolve(SHARED, 'golden/tiny');
      const upload = async (sel: string, ...files: string[]) => ((await page.$(sel)) as ElementHandle<HTMLInputElement>).uploadFile(...files);
      await upload('#configFile', resolve(golden, 'config.json'));
      await upload('#weightsFile', resolve(golden, 'weights.safetensors'));
      await page.waitForSelector('body[data-model="ready"], body[data-model="error"]');
      expect(await page.$eval('body', (b) => b.dataset.model), await page.$eval('#modelStatus', (e) => e.textContent ?? '')).toBe('ready');
      await upload('#imageFiles', ...Array.from({ length: 4 }, (_, i) => resolve(SHARED, 'data/bedroom', `0000${i}.jpg`)));
      await page.waitForSelector('body[data-source="ready"], body[data-source="error"]');
      await clickVideo(page, [528, 324]);
      await page.waitForFunction(() => /prompted|rror/.test(document.getElementById('status')!.textContent ?? ''));
      const trackAll = async () => {
        await page.click('#track');
        await page.waitForFunction(() => document.body.dataset.busy === '0' && /tracked|rror/.test(document.getElementById('status')!.textContent ?? ''));
        expect(await page.$eval('#status', (e) => e.textContent)).toBe('tracked 4 frames');
      };
      await trackAll();
      expect(await page.$eval('body', (b) => b.dataset.gpu)).toBe('ready'); // the device survived drawing
      mkdirSync(OUT, { recursive: true });
      const shot = resolve(OUT, 'demo-default-flags.png');
      await page.screenshot({ path: shot, fullPage: true });
      await checkBlueMask(shot, await viewBox(page), 3);

      // a lost device shows as lost, with the way back
      await page.evaluate(() => (window as unknown as { etamDemo: { loseDevice(): void } }).etamDemo.loseDevice());
      await page.waitForSelector('body[data-gpu="lost"]');
      expect(await page.$eval('body', (b) => b.dataset.model)).toBe('lost');
      expect(await page.$eval('#bannerText', (e) => e.textContent)).toMatch(/GPU device was lost/);
      expect(await page.$eval('#modelStatus', (e) => e.textContent)).toMatch(/lost: press Recover/);
      expect(await page.$eval('#recover', (e) => (e as HTMLButtonElement).hidden)).toBe(false);
      await page.click('#recover');
      await page.waitForFunction(() => (document.body.dataset.gpu === 'ready' && /restored|rror/.test(document.getElementById('status')!.textContent ?? '')) ||
        /Recovering failed/.test(document.getElementById('bannerText')!.textContent ?? ''));
      expect(await page.$eval('#status', (e) => e.textContent)).toMatch(/1 object\(s\) restored/);
      expect(await page.$eval('body', (b) => [b.dataset.gpu, b.dataset.model])).toEqual(['ready', 'ready']);
      // the same object, tracked again on the new device, gives the same mask
      await page.$eval('#frame', (e) => { (e as HTMLInputElement).value = '0'; e.dispatchEvent(new Event('input')); });
      await trackAll();
      await page.screenshot({ path: shot, fullPage: true });
      await checkBlueMask(shot, await viewBox(page), 3);
      expect(errors).toEqual([]);
    } finally {
      await plain.close();
    }
  }, 600_000);
});

describe('browser: live frames from a playing video element', () => {
  it('tracks a click over 6 streamed frames of an mp4; the GPU frame copy reads the same pixels as a 2D canvas', async () => {
    const { page, errors } = await openPage(browser, `${served.origin}/tests/browser/live.html`, () => {});
    try {
      await page.waitForFunction(() => typeof window.etamLive === 'function');
      // dog.mp4: 1280x720 H.264, 30000/1001 fps, 289 frames
      const r: LiveResult = await page.evaluate((q) => window.etamLive(q), {
        video: '/shared/data/videos/dog.mp4', frames: 6, point: [640, 360] as [number, number], capture: 2,
      });
      console.log(`live video (${r.seconds.toFixed(1)} s, ${r.videoWidth}x${r.videoHeight} -> ${r.imageSize}):\n` +
        r.frames.map((f) => `  frame ${f.frame} t=${(f.timestamp / 1e6).toFixed(3)} s logits ${f.min.toFixed(2)}..${f.max.toFixed(2)} ` +
          `${(100 * f.positive).toFixed(1)}% > 0 (${f.ms.toFixed(0)} ms)`).join('\n') + '\n' +
        r.pixels.map((p) => `  ${p.what} ${p.format} ${p.colorSpace}: max |texture - getImageData| ${p.maxAbsDiff.toExponential(2)}, ` +
          `bytes mean ${p.byteMean.toFixed(1)} std ${p.byteStd.toFixed(1)}, tensor std ${p.tensorStd.toFixed(3)}`).join('\n'));
      expect([r.videoWidth, r.videoHeight]).toEqual([1280, 720]);
      // the prompted frame 0, then 1..6, each a new frame of the video (it loops: however slow the
      // machine, playback never ends before tracking does; a timestamp may restart at the loop)
      expect(r.frames.map((f) => f.frame)).toEqual([0, 1, 2, 3, 4, 5, 6]);
      for (let i = 1; i < r.frames.length; i++) expect(r.frames[i]!.timestamp, `frame ${i}`).not.toBe(r.frames[i - 1]!.timestamp);
      for (const f of r.frames) expect(f.timestamp, `frame ${f.frame}`).toBeGreaterThanOrEqual(0);
      for (const f of r.frames) {
        expect(f.finite, `frame ${f.frame}`).toBe(true);
        expect(f.max - f.min, `frame ${f.frame}`).toBeGreaterThan(1);
      }
      expect(r.frames[0]!.positive).toBeGreaterThan(0);
      // copyExternalImageToTexture vs drawImage + getImageData: same bytes, same kernels
      expect(r.pixels.map((p) => p.what.split(' ')[0])).toEqual(['VideoFrame', 'paused']);
      for (const p of r.pixels) {
        expect(p.gpuErrors, p.what).toEqual([]);
        expect(p.maxAbsDiff, p.what).toBeLessThan(1e-5);
        expect(p.byteStd, p.what).toBeGreaterThan(10); // a real picture, not a blank frame
        expect(p.tensorStd, p.what).toBeGreaterThan(0.1);
      }
      expect(r.uncaptured).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 300_000);
});

describe('browser: sizes users have, at a 128 MiB binding limit', () => {
  it('a 12 MP photo with multimask, three objects on a 4000x3000 video, a very wide and a very tall image', async () => {
    const { page, errors } = await openPage(browser, `${served.origin}/tests/browser/sizes.html`, () => {});
    try {
      await page.waitForFunction(() => typeof window.etamSizes === 'function');
      const r: SizesResult = await page.evaluate(() => window.etamSizes());
      console.log(`browser sizes (${r.adapter}; binding limit ${r.maxStorageBufferBindingSize}, largest texture ${r.maxTextureDimension2D}):\n` +
        r.runs.map((x) => `  ${x.what} ${x.width}x${x.height}: ${x.checked} pixels checked, ${x.covered} covered, ${x.mismatches.length} wrong (${x.seconds.toFixed(1)} s)`).join('\n'));
      expect(r.maxStorageBufferBindingSize).toBe(128 * 2 ** 20);
      expect(r.runs.map((x) => x.what)).toEqual(['12 MP photo, multimask', 'very wide image', 'very tall image', 'video frame 0, 3 objects', 'video frame 1, 3 objects']);
      for (const x of r.runs) {
        expect(x.mismatches, x.what).toEqual([]);
        expect(x.checked, x.what).toBeGreaterThan(x.masks * 150);
      }
      expect(r.runs[0]!.covered).toBeGreaterThan(0);
      expect(r.uncaptured).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 600_000);
});
