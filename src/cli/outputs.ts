/**
 * What the commands write:
 *
 *   mask PNGs     8-bit greyscale, 255 inside the mask, 0 outside, the picture's size (sharp).
 *   masks.json    COCO-style: `images`, `categories` (one per object), `annotations` (one per
 *                 object and frame / mask) whose `segmentation` is a COCO RLE in pycocotools'
 *                 compressed form: {"size": [H, W], "counts": "<string>"}, the run lengths taken
 *                 COLUMN-MAJOR (down each column, left to right, starting with a run of zeros) and
 *                 written as pycocotools' `rleToString` does (5 bits a character, deltas from the
 *                 run two back). `pycocotools.mask.decode` reads it as it is.
 *                 Written as it goes (annotations first, `images` at the end), so a stopped run
 *                 still closes a valid file.
 *   overlays      the picture with each object's mask tinted in its colour and outlined.
 */
import { access, constants, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { loadSharp } from '../io/sharp.js';
import { CliError, usageError } from './args.js';
import { AtomicFile, describeFsError } from './files.js';

// ---------------------------------------------------------------------------------------- PNG

/** A 0/1 mask [H, W] as a PNG (0 / 255 greyscale). */
export async function maskPng(mask: Uint8Array, width: number, height: number): Promise<Buffer> {
  const sharp = await loadSharp();
  const px = new Uint8Array(width * height);
  for (let i = 0; i < px.length; i++) px[i] = mask[i] ? 255 : 0;
  // b-w: a 1-channel (greyscale) PNG; without it libvips writes RGB
  return sharp(px, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png({ compressionLevel: 6 }).toBuffer();
}

/** A PNG (or any image) file as a 0/1 mask (pixels > 127 are in). */
export async function readMaskPng(path: string): Promise<{ mask: Uint8Array; width: number; height: number }> {
  const sharp = await loadSharp();
  const { data, info } = await sharp(path).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  const mask = new Uint8Array(info.width * info.height);
  for (let i = 0; i < mask.length; i++) mask[i] = data[i]! > 127 ? 1 : 0;
  return { mask, width: info.width, height: info.height };
}

/** RGB pixels as a PNG or JPEG file's bytes. */
export async function encodeRgb(rgb: Uint8Array, width: number, height: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const sharp = await loadSharp();
  const img = sharp(rgb, { raw: { width, height, channels: 3 } });
  return format === 'png' ? img.png().toBuffer() : img.jpeg({ quality: 90 }).toBuffer();
}

// ---------------------------------------------------------------------------------------- RLE

/** COCO run lengths of a 0/1 mask [H, W] (row-major in memory), read column-major, zeros first. */
export function rleCounts(mask: Uint8Array, height: number, width: number): number[] {
  const counts: number[] = [];
  let cur = 0, run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== cur) { counts.push(run); run = 0; cur = v; }
      run++;
    }
  }
  counts.push(run);
  return counts;
}

/** pycocotools' compressed string of run lengths (rleToString). */
export function rleToString(counts: readonly number[]): string {
  let s = '';
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i]! - (i > 2 ? counts[i - 2]! : 0);
    for (let more = true; more;) {
      let c = x & 0x1f;
      x = Math.floor(x / 32); // an arithmetic shift, exact for any safe integer
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
}

/** Inverse of rleToString (pycocotools' rleFrString). */
export function rleFromString(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true, c = 0;
    while (more) {
      c = s.charCodeAt(p++) - 48;
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      k++;
    }
    if (c & 0x10) x -= 2 ** (5 * k); // sign extension
    if (counts.length > 2) x += counts[counts.length - 2]!;
    counts.push(x);
  }
  return counts;
}

/** A COCO RLE back to a 0/1 mask [H, W], row-major. */
export function rleDecode(rle: { size: [number, number]; counts: string | number[] }): Uint8Array {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === 'string' ? rleFromString(rle.counts) : rle.counts;
  const mask = new Uint8Array(h * w);
  let k = 0, v = 0;
  for (const n of counts) {
    for (let j = 0; j < n; j++, k++) if (v) mask[(k % h) * w + Math.floor(k / h)] = 1;
    v ^= 1;
  }
  if (k !== h * w) throw new Error(`RLE covers ${k} pixels, the mask has ${h * w}`);
  return mask;
}

export interface MaskStats {
  area: number;
  /** COCO bbox [x, y, width, height] (all zeros for an empty mask) */
  bbox: [number, number, number, number];
}

export function maskStats(mask: Uint8Array, height: number, width: number): MaskStats {
  let area = 0, x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      if (mask[row + x]) {
        area++;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return { area, bbox: area ? [x0, y0, x1 - x0 + 1, y1 - y0 + 1] : [0, 0, 0, 0] };
}

// ------------------------------------------------------------------------------- masks.json

export interface CocoImage {
  id: number;
  file_name: string;
  width: number;
  height: number;
}

/** One mask: its COCO RLE, area and box, plus the fields the command adds (score, object, ...). */
export function cocoAnnotation(mask: Uint8Array, height: number, width: number, extra: Record<string, unknown>): Record<string, unknown> {
  const { area, bbox } = maskStats(mask, height, width);
  return { ...extra, segmentation: { size: [height, width], counts: rleToString(rleCounts(mask, height, width)) }, area, bbox, iscrowd: 0 };
}

/**
 * Writes masks.json as annotations arrive: `{"info", "categories", "annotations": [...], "images": [...]}`.
 * The file is written under a temporary name (see files.ts), each annotation appended at once;
 * `close` writes the images list and the closing brackets and renames it to masks.json, so
 * masks.json is always either complete and valid or absent.
 */
export class CocoWriter {
  private count = 0;
  private readonly images: CocoImage[] = [];
  private closing: Promise<void> | null = null;

  private constructor(private readonly file: AtomicFile, readonly path: string) {}

  static async create(path: string, info: Record<string, unknown>, categories: { id: number; name: string }[]): Promise<CocoWriter> {
    const file = await AtomicFile.create(path);
    const w = new CocoWriter(file, path);
    void w.file.write(`{\n"info": ${JSON.stringify(info)},\n"categories": ${JSON.stringify(categories)},\n"annotations": [`).catch(() => undefined);
    return w;
  }

  get annotations(): number { return this.count; }

  /** Adds an image and its annotations; rejects (naming the file) when the write fails. */
  async add(image: CocoImage, annotations: Record<string, unknown>[]): Promise<void> {
    if (this.closing) throw new Error('CocoWriter.add after close');
    let s = '';
    let n = this.count;
    for (const a of annotations) {
      s += `${n === 0 ? '\n' : ',\n'}${JSON.stringify({ id: n + 1, image_id: image.id, ...a })}`;
      n++;
    }
    // counted once written: an image whose annotations did not reach the file is not listed
    await this.file.write(s);
    this.count = n;
    this.images.push(image);
  }

  /** Completes the file and gives it its name (once; later calls wait for the first). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.file.settled();
      void this.file.write(`\n],\n"images": [${this.images.map((i) => `\n${JSON.stringify(i)}`).join(',')}\n]\n}\n`).catch(() => undefined);
      await this.file.commit();
    })();
    return this.closing;
  }

  /** Drops the file (nothing is left under either name). */
  discard(): Promise<void> {
    this.closing ??= this.file.discard();
    return this.closing;
  }
}

// ----------------------------------------------------------------------------------- overlay

/** Distinct colours for objects 1, 2, 3, ... (cycled). */
export const OBJECT_COLORS: readonly (readonly [number, number, number])[] = [
  [30, 144, 255], [255, 64, 64], [64, 200, 64], [255, 200, 0], [200, 80, 255],
  [0, 220, 220], [255, 128, 0], [255, 100, 200], [150, 220, 50], [120, 120, 255],
];

export const colorOf = (index: number): readonly [number, number, number] => OBJECT_COLORS[index % OBJECT_COLORS.length]!;

/**
 * The picture with masks [n, H, W] (0/1) tinted over it (alpha 0.5, later masks on top) and a
 * full-colour outline on each mask's border. `colors[k]` is mask k's colour. -> RGB [H, W, 3].
 */
export function overlay(rgb: Uint8Array, width: number, height: number, masks: readonly Uint8Array[],
  colors: readonly (readonly [number, number, number])[], alpha = 0.5): Uint8Array {
  const out = new Uint8Array(rgb.subarray(0, width * height * 3));
  masks.forEach((m, k) => {
    const [r, g, b] = colors[k]!;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!m[i]) continue;
        const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1 ||
          !m[i - 1] || !m[i + 1] || !m[i - width] || !m[i + width];
        const a = edge ? 1 : alpha;
        const o = i * 3;
        out[o] = Math.round(out[o]! * (1 - a) + r * a);
        out[o + 1] = Math.round(out[o + 1]! * (1 - a) + g * a);
        out[o + 2] = Math.round(out[o + 2]! * (1 - a) + b * a);
      }
    }
  });
  return out;
}

/** A prompt to draw on an overlay, in image pixels, in its object's colour. */
export interface DrawnPrompt {
  points: readonly { x: number; y: number; label: 0 | 1 }[];
  box?: readonly [number, number, number, number];
  color: readonly [number, number, number];
}

/** Sizes of the prompt marks for a W x H picture: they grow with the picture, never below a few pixels. */
export function promptMarkSizes(width: number, height: number): { radius: number; ring: number; line: number } {
  const m = Math.min(width, height);
  return { radius: Math.max(4, Math.round(m / 90)), ring: Math.max(1, Math.round(m / 400)), line: Math.max(2, Math.round(m / 300)) };
}

/**
 * Draws prompts over RGB pixels [H, W, 3] (in place): a box as an outline in its object's colour;
 * a click as a dot in its object's colour, ringed in white for a positive click (label 1), ringed
 * in black with a black minus sign across it for a negative one (label 0).
 */
export function drawPrompts(rgb: Uint8Array, width: number, height: number, prompts: readonly DrawnPrompt[]): Uint8Array {
  const { radius, ring, line } = promptMarkSizes(width, height);
  const put = (x: number, y: number, c: readonly [number, number, number]) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const o = (y * width + x) * 3;
    rgb[o] = c[0]; rgb[o + 1] = c[1]; rgb[o + 2] = c[2];
  };
  for (const p of prompts) {
    if (p.box) {
      const [x0, y0, x1, y1] = p.box.map(Math.round) as [number, number, number, number];
      for (let t = 0; t < line; t++) {
        for (let x = x0 - t; x <= x1 + t; x++) { put(x, y0 - t, p.color); put(x, y1 + t, p.color); }
        for (let y = y0 - t; y <= y1 + t; y++) { put(x0 - t, y, p.color); put(x1 + t, y, p.color); }
      }
    }
  }
  // clicks over boxes
  for (const p of prompts) {
    for (const q of p.points) {
      const cx = Math.round(q.x), cy = Math.round(q.y);
      const edge: [number, number, number] = q.label === 1 ? [255, 255, 255] : [0, 0, 0];
      const R = radius + ring;
      for (let dy = -R; dy <= R; dy++) {
        for (let dx = -R; dx <= R; dx++) {
          const d2 = dx * dx + dy * dy;
          if (d2 > R * R) continue;
          const inner = d2 <= radius * radius;
          // a minus sign across a negative click's dot
          const bar = q.label === 0 && inner && Math.abs(dy) < ring && Math.abs(dx) < radius;
          put(cx + dx, cy + dy, !inner ? edge : bar ? [0, 0, 0] : p.color);
        }
      }
    }
  }
  return rgb;
}

// ------------------------------------------------------------------------------ the folder

/**
 * Checks, without creating anything, that the output folder could be made and written: the
 * command line is checked before the inputs are read, and the folder is created only once they
 * are valid (`prepareOutDir`), so a failed run leaves no empty folder behind.
 */
export async function checkOutDir(dir: string | undefined, command: string): Promise<string> {
  if (!dir) throw usageError(command, '--out is required: the folder to write the masks to');
  // the nearest part of the path that exists must be a folder we may write in
  let p = resolve(dir);
  for (;;) {
    let st;
    try {
      st = await stat(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') throw new CliError(`cannot write to the output folder ${dir}: a file is in the way`);
      if (code !== 'ENOENT' || dirname(p) === p) throw new CliError(`cannot write to the output folder ${dir}: ${describeFsError(e)}`);
      p = dirname(p);
      continue;
    }
    if (!st.isDirectory()) throw new CliError(`cannot write to the output folder ${dir}: a file is in the way (${p})`);
    try {
      await access(p, constants.W_OK);
    } catch (e) {
      throw new CliError(`cannot write to the output folder ${dir}: ${describeFsError(e)} (${p})`);
    }
    return dir;
  }
}

/** Creates the output folder (and parents) and checks that files can be written in it. */
export async function prepareOutDir(dir: string | undefined, command: string): Promise<string> {
  if (!dir) throw usageError(command, '--out is required: the folder to write the masks to');
  try {
    await mkdir(dir, { recursive: true });
    const probe = `${dir}/.etam-write-test-${process.pid}`;
    await writeFile(probe, '');
    await rm(probe);
  } catch (e) {
    throw new CliError(`cannot write to the output folder ${dir}: ${describeFsError(e)}`);
  }
  return dir;
}
