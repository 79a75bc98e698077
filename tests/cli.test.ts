/**
 * The `etam` command line on the tiny golden case: `segment` and `track` write masks that match
 * the reference's `masks_bits`, masks.json's RLE decodes to the PNGs, the overlays exist; an MP4
 * read through ffmpeg (forwards and backwards); Ctrl-C keeps what was written; the errors a
 * person can act on. The CLI runs in this process (runCli) except where a real process matters.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readSafetensorsFile, type SafetensorsFile } from '../src/io/safetensors.js';
import { haveFfmpeg, openFrames, sortFrameNames } from '../src/cli/frames.js';
import { drawPrompts, promptMarkSizes, readMaskPng, rleCounts, rleDecode, rleFromString, rleToString } from '../src/cli/outputs.js';
import { outputFs, StopSignals } from '../src/cli/files.js';
import { parseObjects, parsePoint } from '../src/cli/prompts.js';
import { cli, rng } from './helpers.js';

const ROOT = resolve(__dirname, '..');
const TINY = resolve(ROOT, '../shared/golden/tiny');
const BEDROOM = resolve(ROOT, '../shared/data/bedroom');
const CUPS = resolve(ROOT, '../shared/data/videos/cups.mp4');
const W = 960, H = 540;

let tmp: string;
let ref: SafetensorsFile;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'etam-cli-'));
  ref = await readSafetensorsFile(join(TINY, 'tensors.safetensors'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Mask k of a reference `masks_bits` [n, H, ceil(W/8)] (numpy packbits, first pixel in the high bit). */
function refMask(name: string, k: number, from: SafetensorsFile = ref): Uint8Array {
  const bits = from.getRaw(name) as Uint8Array;
  const stride = Math.ceil(W / 8);
  const m = new Uint8Array(H * W);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) m[y * W + x] = (bits[(k * H + y) * stride + (x >> 3)]! >> (7 - (x % 8))) & 1;
  }
  return m;
}

const agreement = (a: Uint8Array, b: Uint8Array): number => {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
};

interface Coco {
  info: Record<string, unknown>;
  categories: { id: number }[];
  images: { id: number; file_name: string; width: number; height: number }[];
  annotations: { id: number; image_id: number; object_id: number; score: number; area: number; bbox: number[]; segmentation: { size: [number, number]; counts: string } }[];
}

/** Every annotation of masks.json decodes to the PNG it stands for. */
async function checkRle(coco: Coco, png: (a: Coco['annotations'][number]) => string): Promise<void> {
  for (const a of coco.annotations) {
    const { mask } = await readMaskPng(png(a));
    expect(a.segmentation.size).toEqual([H, W]);
    const dec = rleDecode(a.segmentation);
    expect(agreement(dec, mask), `annotation ${a.id}`).toBe(1);
    expect(a.area).toBe(mask.reduce((s, v) => s + v, 0));
  }
}

/** Every file under `dir`, relative paths. */
function walk(dir: string, base = ''): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name), join(base, e.name)) : [join(base, e.name)]);
}

/** Temporary files left behind (outputs are written as .NAME.etam-PID.tmp, then renamed). */
const temps = (dir: string): string[] => walk(dir).filter((f) => /\.etam-\d+\.tmp$/.test(f));

/** The PNG's IHDR: colour type (0 grey, 2 RGB, ...) and bit depth. */
function pngHeader(path: string): { colorType: number; bitDepth: number } {
  const b = readFileSync(path);
  expect(b.subarray(12, 16).toString('latin1')).toBe('IHDR');
  return { bitDepth: b[24]!, colorType: b[25]! };
}

/**
 * A full disk, simulated: files whose path matches `match` are opened for real, but every write to
 * them fails with ENOSPC (as write(2) does on a full disk). Returns the undo.
 */
function fullDiskFor(match: RegExp): () => void {
  const real = outputFs.open;
  outputFs.open = async (path: string, flags: string) => {
    const fh = await real(path, flags);
    if (!match.test(path)) return fh;
    const enospc = () => Promise.reject(Object.assign(new Error(`ENOSPC: no space left on device, write`), { code: 'ENOSPC', errno: -28, syscall: 'write' }));
    return { write: enospc, close: () => fh.close() } as unknown as FileHandle;
  };
  return () => { outputFs.open = real; };
}

/** Starts `etam ARGS` in its own process (bin/etam.js); resolves once `ready()` holds (polled). */
function spawnEtam(args: string[]): { child: ChildProcessWithoutNullStreams; out: { stdout: string; stderr: string }; exited: Promise<number | null>; until(ready: () => boolean): Promise<void> } {
  const child = spawn(process.execPath, [join(ROOT, 'bin/etam.js'), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => { out.stdout += d; });
  child.stderr.on('data', (d) => { out.stderr += d; });
  const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  let done = false;
  void exited.then(() => { done = true; });
  const until = async (ready: () => boolean) => {
    while (!ready()) {
      if (done) throw new Error(`etam ended before it was ready: ${out.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { child, out, exited, until };
}

/**
 * `etam track` on the bedroom frames (object 1 clicked, at most 60 frames) into tmp/NAME, in its
 * own process; resolves once `pngs` of its masks are written.
 */
async function trackUntil(name: string, pngs: number, extra: string[] = ['--no-overlay']) {
  const out = join(tmp, name);
  const dir = join(out, 'masks', 'obj1');
  const p = spawnEtam(['track', BEDROOM, '-w', TINY, '--object', 'point=528,324', '--frames', '60', ...extra, '--out', out]);
  await p.until(() => existsSync(dir) && readdirSync(dir).filter((f) => f.endsWith('.png')).length >= pngs);
  return { ...p, outDir: out, dir };
}

describe('pieces', () => {
  it("RLE: pycocotools' compressed strings, column-major, round trip", () => {
    // known pycocotools outputs: an empty 2x2 mask is "4"; a full 3x3 one is counts [0, 9] -> "09"
    expect(rleToString([4])).toBe('4');
    expect(rleToString(rleCounts(new Uint8Array(9).fill(1), 3, 3))).toBe('09');
    // column-major: [[1, 0], [1, 1]] -> down column 0: 1 1, column 1: 0 1 -> counts [0, 2, 1, 1]
    expect(rleCounts(Uint8Array.of(1, 0, 1, 1), 2, 2)).toEqual([0, 2, 1, 1]);
    const r = rng(3);
    for (const [h, w] of [[1, 1], [7, 5], [33, 65]] as const) {
      const m = new Uint8Array(h * w);
      for (let i = 0; i < m.length; i++) m[i] = r() < 0.3 + 0.4 * Math.sin(i / 40) ? 1 : 0;
      const counts = rleCounts(m, h, w);
      const s = rleToString(counts);
      expect(rleFromString(s)).toEqual(counts);
      expect(Array.from(rleDecode({ size: [h, w], counts: s }))).toEqual(Array.from(m));
    }
    // long runs and negative deltas survive
    const big = [0, 100000, 3, 2_000_000, 1, 5];
    expect(rleFromString(rleToString(big))).toEqual(big);
  });

  it('draws prompts: a box outline and click dots in the object colour, ringed white (positive) or black with a minus (negative)', () => {
    const w = 200, h = 120;
    const rgb = new Uint8Array(w * h * 3).fill(100);
    const c = [10, 20, 250] as const;
    drawPrompts(rgb, w, h, [{ box: [20, 30, 150, 100], points: [{ x: 60, y: 60, label: 1 }, { x: 120, y: 60, label: 0 }], color: c }]);
    const at = (x: number, y: number) => Array.from(rgb.subarray((y * w + x) * 3, (y * w + x) * 3 + 3));
    const { radius, ring } = promptMarkSizes(w, h);
    expect(at(85, 30)).toEqual([...c]); // the box's top edge
    expect(at(150, 70)).toEqual([...c]); // its right edge
    expect(at(85, 65)).toEqual([100, 100, 100]); // inside the box: untouched
    expect(at(60, 60)).toEqual([...c]); // positive click: the dot
    expect(at(60 + radius + ring, 60)).toEqual([255, 255, 255]); // and its white ring
    expect(at(120, 60)).toEqual([0, 0, 0]); // negative click: the minus sign
    expect(at(120, 60 - radius + 1)).toEqual([...c]); // its dot above the minus
    expect(at(120 + radius + ring, 60)).toEqual([0, 0, 0]); // its black ring
  });

  it('parses points, objects and frame names', () => {
    expect(parsePoint('12.5,3', 't')).toEqual({ x: 12.5, y: 3, label: 1 });
    expect(parsePoint('1,2:0', 't')).toEqual({ x: 1, y: 2, label: 0 });
    expect(() => parsePoint('1;2', 't')).toThrow(/x,y/);
    expect(() => parsePoint('1,2:5', 't')).toThrow(/label/);
    const objs = parseObjects(['frame=3 point=1,2 point=4,5:0', 'box=0,0,9,9 id=7', 'point=2,2'], 't');
    expect(objs.map((o) => [o.id, o.frame, o.points.length, !!o.box])).toEqual([[1, 3, 2, false], [7, 0, 0, true], [2, 0, 1, false]]);
    expect(() => parseObjects(['frame=0'], 't')).toThrow(/no point= or box=/);
    expect(() => parseObjects(['frame=0 pt=1,2'], 't')).toThrow(/'pt=1,2' is not one of/);
    expect(() => parseObjects(['box=5,5,1,1'], 't')).toThrow(/x1 must be >= x0/);
    expect(sortFrameNames(['10.jpg', '9.jpg', '00001.jpg'])).toEqual(['00001.jpg', '9.jpg', '10.jpg']);
    expect(sortFrameNames(['f10.png', 'f9.png'])).toEqual(['f9.png', 'f10.png']);
  });
});

describe('etam segment', () => {
  it("writes the golden 'point' prompt's three masks (as the reference's masks_bits), their RLE and the overlay", async () => {
    const out = join(tmp, 'segment');
    const [x, y] = ref.getF32('prompt.point.point_coords');
    // --no-antialias: the goldens' torchvision (< 0.17) resized the image without antialiasing
    const r = await cli('segment', join(BEDROOM, '00000.jpg'), '--weights', join(TINY, 'weights.safetensors'),
      '--point', `${x},${y}`, '--multimask', '--no-antialias', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/3 masks/);
    const ious = ref.getF32('prompt.point.ious');
    const coco = JSON.parse(readFileSync(join(out, 'masks.json'), 'utf8')) as Coco;
    expect(coco.annotations).toHaveLength(3);
    for (let m = 0; m < 3; m++) {
      const { mask, width, height } = await readMaskPng(join(out, `mask_obj1_${m}.png`));
      expect([width, height]).toEqual([W, H]);
      const agree = agreement(mask, refMask('prompt.point.masks_bits', m));
      console.log(`segment point mask ${m}: ${(100 * agree).toFixed(4)}% of pixels as the reference`);
      expect(agree).toBeGreaterThanOrEqual(0.999);
      expect(Math.abs(coco.annotations[m]!.score - ious[m]!)).toBeLessThan(1e-3);
    }
    await checkRle(coco, (a) => join(out, `mask_obj1_${(a as unknown as { mask_index: number }).mask_index}.png`));
    expect(statSync(join(out, 'overlay.png')).size).toBeGreaterThan(1000);
    // masks are 1-channel (greyscale) PNGs
    expect(pngHeader(join(out, 'mask_obj1_0.png'))).toEqual({ colorType: 0, bitDepth: 8 });
    expect(temps(out)).toEqual([]);
  });

  it('the overlay shows the box and the clicks over the masks', async () => {
    const out = join(tmp, 'segment-prompts');
    const r = await cli('segment', join(BEDROOM, '00000.jpg'), '-w', TINY, '--box', '96,108,384,378', '--point', '240,240', '--point', '300,200:0', '--quiet', '-o', out);
    expect(r.code, r.stderr).toBe(0);
    const { default: sharp } = await import('sharp');
    const { data, info } = await sharp(join(out, 'overlay.png')).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([W, H, 3]);
    const at = (x: number, y: number) => Array.from(data.subarray((y * W + x) * 3, (y * W + x) * 3 + 3));
    const blue = [30, 144, 255]; // object 1
    const { radius, ring } = promptMarkSizes(W, H);
    expect(at(200, 108)).toEqual(blue); // the box's top edge
    expect(at(96, 250)).toEqual(blue); // its left edge
    expect(at(240, 240)).toEqual(blue); // the positive click
    expect(at(240 + radius + ring, 240)).toEqual([255, 255, 255]);
    expect(at(300, 200)).toEqual([0, 0, 0]); // the negative click's minus sign
  });

  it("writes the golden 'box' prompt's mask", async () => {
    const out = join(tmp, 'segment-box');
    const box = Array.from(ref.getF32('prompt.box.box')).join(',');
    const r = await cli('segment', join(BEDROOM, '00000.jpg'), '-w', TINY, '--box', box, '--no-antialias', '--no-overlay', '-o', out);
    expect(r.code, r.stderr).toBe(0);
    const { mask } = await readMaskPng(join(out, 'mask_obj1_0.png'));
    expect(agreement(mask, refMask('prompt.box.masks_bits', 0))).toBeGreaterThanOrEqual(0.999);
    expect(existsSync(join(out, 'overlay.png'))).toBe(false);
  });
});

describe('etam track', () => {
  it("tracks the golden's two objects over its 8 frames: masks as the reference's pass1, RLE, overlays", async () => {
    const out = join(tmp, 'track');
    // the golden script's prompts before pass1: a click on object 1, a box on object 2, frame 0
    const r = await cli('track', BEDROOM, '--weights', join(TINY, 'weights.safetensors'),
      '--object', 'frame=0 point=528,324', '--object', 'frame=0 box=96,108,384,378', '--frames', '8', '--quiet', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/2 objects \[1, 2\], 8 frames from frame 0/);
    let worst = 1;
    for (let t = 0; t < 8; t++) {
      for (const k of [0, 1]) {
        const { mask } = await readMaskPng(join(out, 'masks', `obj${k + 1}`, `0000${t}.png`));
        const agree = agreement(mask, refMask(`video.pass1.frame${t}.masks_bits`, k));
        worst = Math.min(worst, agree);
        expect(agree, `frame ${t} object ${k + 1}`).toBeGreaterThanOrEqual(0.999);
      }
    }
    console.log(`track: worst frame/object ${(100 * worst).toFixed(4)}% of pixels as the reference`);
    const coco = JSON.parse(readFileSync(join(out, 'masks.json'), 'utf8')) as Coco;
    expect(coco.images.map((i) => i.file_name)).toEqual(Array.from({ length: 8 }, (_, t) => `0000${t}.jpg`));
    expect(coco.annotations).toHaveLength(16);
    expect(coco.categories.map((c) => c.id)).toEqual([1, 2]);
    await checkRle(coco, (a) => join(out, 'masks', `obj${a.object_id}`, `0000${a.image_id}.png`));
    expect(readdirSync(join(out, 'overlays')).sort()).toEqual(Array.from({ length: 8 }, (_, t) => `0000${t}.jpg`));
    if (haveFfmpeg()) expect(statSync(join(out, 'overlay.mp4')).size).toBeGreaterThan(1000);
    expect(pngHeader(join(out, 'masks/obj2/00005.png'))).toEqual({ colorType: 0, bitDepth: 8 });
    expect(temps(out)).toEqual([]);
    // the prompted frame's overlay shows object 1's click: its dot in object 1's colour (JPEG: near it)
    const { default: sharp } = await import('sharp');
    const px = await sharp(join(out, 'overlays/00000.jpg')).raw().toBuffer();
    const dot = Array.from(px.subarray((324 * W + 528) * 3, (324 * W + 528) * 3 + 3));
    const blue = [30, 144, 255];
    expect(Math.max(...dot.map((v, i) => Math.abs(v - blue[i]!))), `pixel ${dot}`).toBeLessThan(40);
  }, 300_000);

  it('Ctrl-C stops after the current frame and keeps a complete masks.json for the frames written', async () => {
    const p = await trackUntil('interrupted', 2);
    const { outDir: out, dir } = p;
    p.child.kill('SIGINT');
    const code = await p.exited;
    expect(code, p.out.stderr).toBe(130);
    expect(p.out.stdout).toMatch(/interrupted \(Ctrl-C\)/);
    const pngs = readdirSync(dir).sort();
    expect(pngs.length).toBeGreaterThanOrEqual(2);
    expect(pngs.length).toBeLessThan(60);
    const coco = JSON.parse(readFileSync(join(out, 'masks.json'), 'utf8')) as Coco;
    expect(coco.images.map((i) => `${i.file_name.replace('.jpg', '.png')}`)).toEqual(pngs);
    await checkRle(coco, (a) => join(dir, `${String(a.image_id).padStart(5, '0')}.png`));
    expect(temps(out)).toEqual([]);
  }, 120_000);

  it('SIGTERM stops like Ctrl-C (exit 143); SIGHUP too (the handlers, exit 129)', async () => {
    const p = await trackUntil('sigterm', 1);
    const { outDir: out, dir } = p;
    p.child.kill('SIGTERM');
    expect(await p.exited, p.out.stderr).toBe(143);
    expect(p.out.stdout).toMatch(/interrupted \(SIGTERM\)/);
    const coco = JSON.parse(readFileSync(join(out, 'masks.json'), 'utf8')) as Coco;
    expect(coco.images.map((i) => `${i.file_name.replace('.jpg', '.png')}`)).toEqual(readdirSync(dir).sort());
    expect(temps(out)).toEqual([]);

    // SIGHUP (the terminal closed) goes through the same handlers, in this process: a first one
    // asks to stop, a second closes the files and exits 129
    const stops: string[] = [];
    const exit = vi.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
    const quit = vi.fn(async () => undefined);
    const s = new StopSignals((sig) => stops.push(sig), quit).install();
    try {
      process.emit('SIGHUP', 'SIGHUP');
      expect(stops).toEqual(['SIGHUP']);
      expect(s.stopping).toBe(true);
      expect(s.exitCode).toBe(129);
      expect(exit).not.toHaveBeenCalled();
      process.emit('SIGINT', 'SIGINT');
      await vi.waitFor(() => expect(exit).toHaveBeenCalledWith(129));
      expect(quit).toHaveBeenCalledTimes(1);
    } finally {
      s.uninstall();
      exit.mockRestore();
    }
  }, 120_000);

  it('a second Ctrl-C stops at once and still leaves a valid masks.json and overlay.mp4 (or none), no partial files', async () => {
    const p = await trackUntil('interrupted-twice', 3, []); // with overlays and overlay.mp4
    const { outDir: out, dir } = p;
    p.child.kill('SIGINT');
    await p.until(() => /stopping after this frame/.test(p.out.stderr));
    p.child.kill('SIGINT');
    expect(await p.exited, p.out.stderr).toBe(130);
    const pngs = readdirSync(dir).sort();
    expect(temps(out)).toEqual([]);
    // masks.json: complete for the frames whose PNGs are there (it is renamed into place only when complete)
    if (existsSync(join(out, 'masks.json'))) {
      const coco = JSON.parse(readFileSync(join(out, 'masks.json'), 'utf8')) as Coco;
      expect(coco.images.map((i) => `${i.file_name.replace('.jpg', '.png')}`)).toEqual(pngs);
    }
    if (haveFfmpeg() && existsSync(join(out, 'overlay.mp4'))) {
      const probe = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', join(out, 'overlay.mp4')], { encoding: 'utf8' });
      expect(probe.status, probe.stderr).toBe(0);
      const n = Number(probe.stdout.trim());
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n).toBeLessThanOrEqual(readdirSync(join(out, 'overlays')).length);
    }
    console.log(`second Ctrl-C: ${pngs.length} frames kept, masks.json ${existsSync(join(out, 'masks.json')) ? 'valid' : 'absent'}, ` +
      `overlay.mp4 ${existsSync(join(out, 'overlay.mp4')) ? 'valid' : 'absent'}; stderr:\n${p.out.stderr}`);
  }, 120_000);
});

describe('SAM 2 from the command line (the sam2_tiny golden: a small SAM 2.1)', () => {
  const SAM2 = resolve(ROOT, '../shared/golden/sam2_tiny');
  let ref2: SafetensorsFile;
  beforeAll(async () => { ref2 = await readSafetensorsFile(join(SAM2, 'tensors.safetensors')); });
  const refMask2 = (name: string, k: number): Uint8Array => refMask(name, k, ref2);

  it("segment: the golden 'point' prompt's three masks (high-resolution decoder, antialiased input as the SAM 2 golden)", async () => {
    const out = join(tmp, 'sam2-segment');
    const [x, y] = ref2.getF32('prompt.point.point_coords');
    const r = await cli('segment', join(BEDROOM, '00000.jpg'), '-w', SAM2, '--point', `${x},${y}`, '--multimask', '--no-overlay', '-o', out);
    expect(r.code, r.stderr).toBe(0);
    for (let m = 0; m < 3; m++) {
      const { mask } = await readMaskPng(join(out, `mask_obj1_${m}.png`));
      expect(agreement(mask, refMask2('prompt.point.masks_bits', m)), `mask ${m}`).toBeGreaterThanOrEqual(0.999);
    }
  });

  it("track: the golden's two objects over its 8-frame video, as the reference's pass1", async () => {
    const out = join(tmp, 'sam2-track');
    // the video itself must be the golden's 8 frames, not 8 frames of a longer one: SAM 2.1 encodes
    // each object pointer's distance divided by min(frames, 16) - 1
    const video = join(tmp, 'sam2-frames');
    mkdirSync(video);
    for (let t = 0; t < 8; t++) copyFileSync(join(BEDROOM, `0000${t}.jpg`), join(video, `0000${t}.jpg`));
    const r = await cli('track', video, '-w', SAM2, '--object', 'frame=0 point=528,324', '--object', 'frame=0 box=96,108,384,378',
      '--quiet', '--no-overlay', '-o', out);
    expect(r.code, r.stderr).toBe(0);
    for (let t = 0; t < 8; t++) {
      for (const k of [0, 1]) {
        const { mask } = await readMaskPng(join(out, 'masks', `obj${k + 1}`, `0000${t}.png`));
        expect(agreement(mask, refMask2(`video.pass1.frame${t}.masks_bits`, k)), `frame ${t} object ${k + 1}`).toBeGreaterThanOrEqual(0.999);
      }
    }
  }, 300_000);

  it('convert and info: the SAM 2 checkpoint converts to its weights; not an official size, so it says so; a wrong --variant is refused', async () => {
    const dst = join(tmp, 'sam2.safetensors');
    const r = await cli('convert', join(SAM2, 'checkpoint.pt'), dst);
    expect(r.code, r.stderr).toBe(0);
    const a = await readSafetensorsFile(dst), b = await readSafetensorsFile(join(SAM2, 'weights.safetensors'));
    expect(a.names().sort()).toEqual(b.names().sort());
    expect(r.stderr).toMatch(/not an official variant's tensors \(.*width 16 with 8 blocks, which is no official variant's/);
    const i = await cli('info', SAM2);
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toMatch(/Hiera 16-d, stages \[1, 2, 3, 2\]/);
    const v = await cli('info', dst, '--variant', 'sam2.1_hiera_tiny');
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/model: +unknown: .*width 16 with 8 blocks, which is no official variant's/);
    expect((await cli('info', dst, '--variant', 'sam3_hiera_tiny')).stderr).toMatch(/--variant sam3_hiera_tiny is not one of .*sam2.1_hiera_large/);
  });
});

if (!haveFfmpeg()) console.warn('SKIPPED: the MP4 tests need ffmpeg, which is not installed here (apt install ffmpeg)');
describe.runIf(haveFfmpeg())('etam track on an MP4 (ffmpeg; skipped without it)', () => {
  it('decodes frames as needed, the same bytes in any order', async () => {
    const seq = await openFrames(CUPS);
    expect([seq.width, seq.height, seq.numFrames]).toEqual([1280, 720, 300]);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 12; i++) frames.push((await seq.get(i)).data.slice());
    seq.close();
    const rnd = await openFrames(CUPS);
    for (const i of [11, 3, 2, 7, 0, 11]) expect(Buffer.compare((await rnd.get(i)).data, frames[i]!), `frame ${i}`).toBe(0);
    rnd.close();
    // and as ffmpeg writes frame 5 on its own
    const r = spawnSync('ffmpeg', ['-v', 'error', '-i', CUPS, '-vf', 'select=eq(n\\,5)', '-vsync', '0', '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 24 });
    expect(Buffer.compare(r.stdout, frames[5]!)).toBe(0);
  });

  it('tracks a few frames forwards and backwards, writing masks and overlay.mp4', async () => {
    const fwd = join(tmp, 'mp4');
    const r = await cli('track', CUPS, '-w', TINY, '--object', 'frame=0 point=640,360', '--object', 'frame=2 box=100,100,500,400',
      '--frames', '3', '--quiet', '--out', fwd);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(join(fwd, 'masks', 'obj1')).sort()).toEqual(['00000.png', '00001.png', '00002.png']);
    expect(readdirSync(join(fwd, 'masks', 'obj2')).sort()).toEqual(['00000.png', '00001.png', '00002.png']);
    const coco = JSON.parse(readFileSync(join(fwd, 'masks.json'), 'utf8')) as Coco;
    // object 2, prompted on frame 2, is tracked on frames 0 and 1 too (from its memory of frame 2, as the official predictor does)
    expect(coco.annotations.map((a) => [a.image_id, a.object_id])).toEqual([[0, 1], [0, 2], [1, 1], [1, 2], [2, 1], [2, 2]]);
    expect(coco.annotations.every((a) => a.score >= 0 && a.score <= 1)).toBe(true);
    expect(statSync(join(fwd, 'overlay.mp4')).size).toBeGreaterThan(1000);

    const back = join(tmp, 'mp4-reverse');
    const b = await cli('track', CUPS, '-w', TINY, '--object', 'frame=4 point=640,360', '--reverse', '--frames', '3', '--quiet', '--no-overlay', '--out', back);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/3 frames backwards from frame 4/);
    expect(readdirSync(join(back, 'masks', 'obj1')).sort()).toEqual(['00002.png', '00003.png', '00004.png']);
  }, 300_000);
});

describe('errors a person can act on', () => {
  const img = join(BEDROOM, '00000.jpg');

  it('command line mistakes: exit code 2, a pointer to --help', async () => {
    const a = await cli('segment', img, '-w', TINY, '--pont', '1,2', '-o', tmp);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/unknown option --pont \(did you mean --point\?\)/);
    expect(a.stderr).toMatch(/etam segment --help/);
    expect((await cli('segment', img, '-w', TINY, '-o', tmp)).stderr).toMatch(/give a prompt/);
    expect((await cli('frobnicate')).stderr).toMatch(/unknown command 'frobnicate'/);
    expect((await cli('track', BEDROOM, '-w', TINY, '--object', 'point=1,2', '--frames', 'ten', '-o', tmp)).stderr).toMatch(/--frames takes a whole number/);
    const help = await cli('track', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--object SPEC/);
    // another command's way of giving prompts: what to type instead
    for (const flag of ['--point', '-p']) {
      const t = await cli('track', BEDROOM, '-w', TINY, flag, '528,324', '-o', tmp);
      expect(t.code).toBe(2);
      expect(t.stderr).toMatch(/unknown option (--point|-p): track takes each object's prompts in one --object: --object 'point=x,y'/);
    }
    expect((await cli('segment', img, '-w', TINY, '--object', 'point=1,2', '-o', tmp)).stderr).toMatch(/segment takes --point x,y/);
  });

  it('a failed run leaves no output folder behind', async () => {
    const cases: [string, string[], RegExp][] = [
      ['no --weights', ['segment', img, '--point', '5,5'], /--weights is required/],
      ['a missing image', ['segment', join(tmp, 'nope.jpg'), '-w', TINY, '--point', '5,5'], /cannot read .*nope\.jpg as an image/],
      ['a point off the image', ['segment', img, '-w', TINY, '--point', '5000,5'], /off the image/],
      ['a missing video', ['track', join(tmp, 'nope.mp4'), '-w', TINY, '--object', 'point=5,5'], /no such folder or video file/],
      ['a frame that does not exist', ['track', BEDROOM, '-w', TINY, '--object', 'frame=999 point=5,5'], /frame 999 does not exist/],
      ['weights that do not fit', ['track', BEDROOM, '-w', join(TINY, 'tensors.safetensors'), '--object', 'point=5,5'], /do not fit the model/],
    ];
    for (const [what, args, message] of cases) {
      const out = join(tmp, 'never', 'made');
      const r = await cli(...args, '-o', out);
      expect(r.code, what).not.toBe(0);
      expect(r.stderr, what).toMatch(message);
      expect(existsSync(join(tmp, 'never')), `${what}: the output folder was created`).toBe(false);
    }
  });

  it('missing or wrong weights', async () => {
    const missing = await cli('segment', img, '-w', join(tmp, 'nope.safetensors'), '--point', '5,5', '-o', join(tmp, 'e1'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/weights file not found: .*nope\.safetensors/);
    const notWeights = await cli('segment', img, '-w', img, '--point', '5,5', '-o', join(tmp, 'e2'));
    expect(notWeights.stderr).toMatch(/cannot read the weights .*00000\.jpg/);
    // the golden's reference tensors are a safetensors file, but not a model's weights
    const wrong = await cli('segment', img, '-w', join(TINY, 'tensors.safetensors'), '--point', '5,5', '-o', join(tmp, 'e3'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/do not fit the model/);
    expect(wrong.stderr).toMatch(/missing/);
  });

  it('a prompt off the image, a frame that does not exist', async () => {
    const off = await cli('segment', img, '-w', TINY, '--point', '1000,10', '-o', join(tmp, 'e4'));
    expect(off.code).toBe(2);
    expect(off.stderr).toMatch(/the point 1000,10 is off the image, which is 960x540/);
    const box = await cli('track', BEDROOM, '-w', TINY, '--object', 'box=10,10,970,100', '-o', join(tmp, 'e5'));
    expect(box.stderr).toMatch(/the box 10,10,970,100 is not inside the image, which is 960x540/);
    const frame = await cli('track', BEDROOM, '-w', TINY, '--object', 'frame=500 point=5,5', '-o', join(tmp, 'e6'));
    expect(frame.stderr).toMatch(/frame 500 does not exist \(.*has 200 frames/);
  });

  it('an output folder that cannot be written', async () => {
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'x');
    const r = await cli('segment', img, '-w', TINY, '--point', '5,5', '-o', join(file, 'out'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot write to the output folder .*a-file\/out: a file is in the way/);
  });

  it('a full disk: segment says which file could not be written; no partial file is left', async () => {
    for (const [k, [file, match]] of ([['masks.json', /masks\.json/], ['mask_obj1_0.png', /mask_obj1_0\.png/]] as const).entries()) {
      const out = join(tmp, `full-segment-${k}`);
      const undo = fullDiskFor(match);
      let r;
      try {
        r = await cli('segment', img, '-w', TINY, '--point', '528,324', '--quiet', '-o', out);
      } finally {
        undo();
      }
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^etam segment: error: cannot write .*${file.replace('.', '\\.')}: the disk is full$`, 'm'));
      expect(r.stderr).not.toMatch(/unexpected error|^\s+at /m);
      expect(existsSync(join(out, file))).toBe(false);
      expect(temps(out)).toEqual([]);
    }
  });

  it('a full disk: track stops with the file named, masks.json complete for the frames written before', async () => {
    const out = join(tmp, 'full-track');
    const undo = fullDiskFor(/00003\.png/);
    let r;
    try {
      r = await cli('track', BEDROOM, '-w', TINY, '--object', 'point=528,324', '--frames', '6', '--quiet', '-o', out);
    } finally {
      undo();
    }
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/cannot write .*masks\/obj1\/00003\.png: the disk is full/);
    expect(r.stderr).toMatch(/the 3 frames tracked before it are written/);
    expect(r.stderr).not.toMatch(/unexpected error|^\s+at /m);
    expect(readdirSync(join(out, 'masks/obj1')).sort()).toEqual(['00000.png', '00001.png', '00002.png']);
    const coco = JSON.parse(readFileSync(join(out, 'masks.json'), 'utf8')) as Coco;
    expect(coco.images.map((i) => i.id)).toEqual([0, 1, 2]);
    expect(temps(out)).toEqual([]);

    // the disk full from the start: masks.json cannot be finished, so there is none
    const out2 = join(tmp, 'full-track-json');
    const undo2 = fullDiskFor(/masks\.json/);
    try {
      r = await cli('track', BEDROOM, '-w', TINY, '--object', 'point=528,324', '--frames', '2', '--quiet', '--no-overlay', '-o', out2);
    } finally {
      undo2();
    }
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/cannot write .*masks\.json: the disk is full/);
    expect(existsSync(join(out2, 'masks.json'))).toBe(false);
    expect(temps(out2)).toEqual([]);
  });

  it('an unreadable frame stops the run with its name; the frames before it are written', async () => {
    const dir = join(tmp, 'broken-frames');
    mkdirSync(dir);
    copyFileSync(join(BEDROOM, '00000.jpg'), join(dir, '00000.jpg'));
    writeFileSync(join(dir, '00001.jpg'), 'not a jpeg');
    const out = join(tmp, 'broken-out');
    const r = await cli('track', dir, '-w', TINY, '--object', 'point=528,324', '--quiet', '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/frame 1 \(.*00001\.jpg\): cannot read it as an image/);
    expect(r.stderr).toMatch(/the 1 frame tracked before it are written/);
    expect(existsSync(join(out, 'masks', 'obj1', '00000.png'))).toBe(true);
    const coco = JSON.parse(readFileSync(join(out, 'masks.json'), 'utf8')) as Coco;
    expect(coco.images).toHaveLength(1);
  });

  it('a video without ffmpeg says how to get it', async () => {
    const saved = process.env.ETAM_FFMPEG;
    process.env.ETAM_FFMPEG = join(tmp, 'no-such-ffmpeg');
    try {
      const r = await cli('track', CUPS, '-w', TINY, '--object', 'point=5,5', '-o', join(tmp, 'e7'));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/reading a video needs ffmpeg.*apt install ffmpeg.*%05d\.jpg/);
    } finally {
      if (saved === undefined) delete process.env.ETAM_FFMPEG;
      else process.env.ETAM_FFMPEG = saved;
    }
  });
});

describe('etam info, convert, the bin', () => {
  it('info: variant, parameters, dtypes', async () => {
    const r = await cli('info', join(TINY, 'weights.safetensors'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/image size: 128x128/);
    expect(r.stdout).toMatch(/parameters: [\d,]+ \([\d.]+ M\) in \d+ tensors/);
    expect(r.stdout).toMatch(/dtypes: +F32 /);
  });

  it('info on a file that is no official variant and has no config: what it holds and what it would need', async () => {
    const dir = join(tmp, 'no-config');
    mkdirSync(dir);
    copyFileSync(join(TINY, 'weights.safetensors'), join(dir, 'model.safetensors'));
    const r = await cli('info', join(dir, 'model.safetensors'), '--tensors');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/parameters: [\d,]+ \([\d.]+ M\) in 307 tensors/);
    expect(r.stdout).toMatch(/^model: +unknown: .*the ViT width is 48, which is no official variant's/m);
    expect(r.stdout).toMatch(/^needs: +to run it, the model config \(--config FILE, or a config\.json beside the weights/m);
    expect(r.stdout).toMatch(/^ {2}image_encoder\.trunk +\d+ tensors +[\d.]+ M +F32$/m);
    expect(r.stdout).toMatch(/^ {2}sam_mask_decoder\.iou_token\.weight {2}F32 \[1, 64\]$/m);
    // with a config beside it that the tensors do not fit, it says so
    const bad = await cli('info', join(TINY, 'tensors.safetensors'));
    expect(bad.code, bad.stderr).toBe(0);
    expect(bad.stdout).toMatch(/^tensors: +does not fit: 307 missing/m);
    expect((await cli('info', join(TINY, 'weights.safetensors'))).stdout).toMatch(/^tensors: +every tensor the model needs, and nothing else$/m);
  });

  it('convert: the golden checkpoint to the same tensors as its weights.safetensors, into a folder it creates', async () => {
    const dst = join(tmp, 'new', 'folder', 'converted.safetensors');
    const r = await cli('convert', join(TINY, 'checkpoint.pt'), dst);
    expect(r.code, r.stderr).toBe(0);
    const a = await readSafetensorsFile(dst), b = await readSafetensorsFile(join(TINY, 'weights.safetensors'));
    expect(a.names().sort()).toEqual(b.names().sort());
    expect(temps(join(tmp, 'new'))).toEqual([]);
    expect((await cli('convert', join(tmp, 'missing.pt'), dst)).stderr).toMatch(/cannot read .*missing\.pt: no such file/);
    const st = await cli('convert', join(TINY, 'weights.safetensors'), join(tmp, 'again.safetensors'));
    expect(st.code).toBe(2);
    expect(st.stderr).toMatch(/weights\.safetensors is already a safetensors file: nothing to convert/);
    expect(existsSync(join(tmp, 'again.safetensors'))).toBe(false);
  });

  it('convert on a full disk: the file named, nothing left (no partial output)', async () => {
    const dst = join(tmp, 'full', 'converted.safetensors');
    const undo = fullDiskFor(/converted\.safetensors/);
    let r;
    try {
      r = await cli('convert', join(TINY, 'checkpoint.pt'), dst);
    } finally {
      undo();
    }
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^etam convert: error: cannot write .*converted\.safetensors: the disk is full$/m);
    expect(walk(join(tmp, 'full'))).toEqual([]);
  });

  it('convert: SIGTERM while converting stops the conversion there (exit 143, nothing written)', async () => {
    const dst = join(tmp, 'stopped', 'converted.safetensors');
    const before = process.listenerCount('SIGTERM');
    // If the signal came too late (while writing), that phase would exit the process: make it throw instead.
    const exit = vi.spyOn(process, 'exit').mockImplementation(((code: number) => { throw new Error(`process.exit(${code})`); }) as never);
    try {
      const run = cli('convert', join(TINY, 'checkpoint.pt'), dst);
      // the conversion's handlers are installed once the file is read; the conversion then yields
      // to the event loop between its slices, where this signal lands
      while (process.listenerCount('SIGTERM') === before) await new Promise((r) => setImmediate(r));
      process.emit('SIGTERM');
      const r = await run;
      expect(r.code).toBe(143);
      expect(existsSync(join(tmp, 'stopped'))).toBe(false);
      expect(process.listenerCount('SIGTERM')).toBe(before);
    } finally {
      exit.mockRestore();
    }
  });

  it('bin/etam.js runs the CLI (through tsx when there is no build)', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/etam.js'), '--help'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/etam segment|segment +Segment/);
    const bad = spawnSync(process.execPath, [join(ROOT, 'bin/etam.js'), 'info'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/missing argument/);
  });
});
