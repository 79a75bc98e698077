/**
 * The `etam` command line on the tiny golden case: `segment` and `track` write masks that match
 * the reference's `masks_bits`, masks.json's RLE decodes to the PNGs, the overlays exist; an MP4
 * read through ffmpeg (forwards and backwards); Ctrl-C keeps what was written; the errors a
 * person can act on. The CLI runs in this process (runCli) except where a real process matters.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensorsFile, type SafetensorsFile } from '../src/io/safetensors.js';
import { runCli, type Output } from '../src/cli/main.js';
import { haveFfmpeg, openFrames, sortFrameNames } from '../src/cli/frames.js';
import { readMaskPng, rleCounts, rleDecode, rleFromString, rleToString } from '../src/cli/outputs.js';
import { parseObjects, parsePoint } from '../src/cli/prompts.js';
import { rng } from './helpers.js';

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

/** Runs the CLI here; returns the exit code and what it printed. */
async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const o = { stdout: '', stderr: '' };
  const out: Output = { print: (l) => { o.stdout += `${l}\n`; }, note: (l) => { o.stderr += `${l}\n`; } };
  const code = await runCli(argv, out);
  return { code, ...o };
}

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
  }, 300_000);

  it('Ctrl-C stops after the current frame and keeps a complete masks.json for the frames written', async () => {
    const out = join(tmp, 'interrupted');
    const child = spawn(process.execPath, [join(ROOT, 'bin/etam.js'), 'track', BEDROOM, '-w', TINY, '--object', 'point=528,324',
      '--frames', '60', '--no-overlay', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    const dir = join(out, 'masks', 'obj1');
    for (let i = 0; i < 600 && !(existsSync(dir) && readdirSync(dir).length >= 2); i++) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGINT');
    const code = await exited;
    expect(code, stderr).toBe(130);
    expect(stdout).toMatch(/interrupted/);
    const pngs = readdirSync(dir).sort();
    expect(pngs.length).toBeGreaterThanOrEqual(2);
    expect(pngs.length).toBeLessThan(60);
    const coco = JSON.parse(readFileSync(join(out, 'masks.json'), 'utf8')) as Coco;
    expect(coco.images.map((i) => `${i.file_name.replace('.jpg', '.png')}`)).toEqual(pngs);
    await checkRle(coco, (a) => join(dir, `${String(a.image_id).padStart(5, '0')}.png`));
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
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(/width 16 with 8 blocks/);
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

  it('convert: the golden checkpoint to the same tensors as its weights.safetensors', async () => {
    const dst = join(tmp, 'converted.safetensors');
    const r = await cli('convert', join(TINY, 'checkpoint.pt'), dst);
    expect(r.code, r.stderr).toBe(0);
    const a = await readSafetensorsFile(dst), b = await readSafetensorsFile(join(TINY, 'weights.safetensors'));
    expect(a.names().sort()).toEqual(b.names().sort());
    expect((await cli('convert', join(tmp, 'missing.pt'), dst)).stderr).toMatch(/cannot read .*missing\.pt: no such file/);
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
