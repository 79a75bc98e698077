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
import { mkdir, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { CliError, usageError } from './args.js';

// ---------------------------------------------------------------------------------------- PNG

/** A 0/1 mask [H, W] as a PNG (0 / 255 greyscale). */
export async function maskPng(mask: Uint8Array, width: number, height: number): Promise<Buffer> {
  const { default: sharp } = await import('sharp');
  const px = new Uint8Array(width * height);
  for (let i = 0; i < px.length; i++) px[i] = mask[i] ? 255 : 0;
  return sharp(px, { raw: { width, height, channels: 1 } }).png({ compressionLevel: 6 }).toBuffer();
}

/** A PNG (or any image) file as a 0/1 mask (pixels > 127 are in). */
export async function readMaskPng(path: string): Promise<{ mask: Uint8Array; width: number; height: number }> {
  const { default: sharp } = await import('sharp');
  const { data, info } = await sharp(path).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  const mask = new Uint8Array(info.width * info.height);
  for (let i = 0; i < mask.length; i++) mask[i] = data[i]! > 127 ? 1 : 0;
  return { mask, width: info.width, height: info.height };
}

/** RGB pixels as a PNG or JPEG file's bytes. */
export async function encodeRgb(rgb: Uint8Array, width: number, height: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const { default: sharp } = await import('sharp');
  const img = sharp(rgb, { raw: { width, height, channels: 3 } });
  return format === 'png' ? img.png().toBuffer() : img.jpeg({ quality: 90 }).toBuffer();
}

// ---------------------------------------------------------------------------------------- RLE

// COCO run-length encoding lives in the library (src/io/rle.ts); re-exported for the commands.
export { rleCounts, rleDecode, rleFromString, rleToString } from '../io/rle.js';
import { rleCounts, rleToString } from '../io/rle.js';

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
 * Each annotation is appended (and flushed to the OS) at once; `close` writes the images list and
 * the closing brackets.
 */
export class CocoWriter {
  private count = 0;
  private readonly images: CocoImage[] = [];
  private closed = false;

  private constructor(private readonly fh: FileHandle, readonly path: string) {}

  static async create(path: string, info: Record<string, unknown>, categories: { id: number; name: string }[]): Promise<CocoWriter> {
    const fh = await open(path, 'w');
    const w = new CocoWriter(fh, path);
    await fh.write(`{\n"info": ${JSON.stringify(info)},\n"categories": ${JSON.stringify(categories)},\n"annotations": [`);
    return w;
  }

  get annotations(): number { return this.count; }

  async add(image: CocoImage, annotations: Record<string, unknown>[]): Promise<void> {
    this.images.push(image);
    let s = '';
    for (const a of annotations) {
      s += `${this.count === 0 ? '\n' : ',\n'}${JSON.stringify({ id: this.count + 1, image_id: image.id, ...a })}`;
      this.count++;
    }
    if (s) await this.fh.write(s);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.write(`\n],\n"images": [${this.images.map((i) => `\n${JSON.stringify(i)}`).join(',')}\n]\n}\n`);
    await this.fh.close();
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

// ------------------------------------------------------------------------------ the folder

/** Creates the output folder (and parents) and checks that files can be written in it. */
export async function prepareOutDir(dir: string | undefined, command: string): Promise<string> {
  if (!dir) throw usageError(command, '--out is required: the folder to write the masks to');
  try {
    await mkdir(dir, { recursive: true });
    const probe = `${dir}/.etam-write-test-${process.pid}`;
    await writeFile(probe, '');
    await rm(probe);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'EACCES' || err.code === 'EPERM' ? 'permission denied'
      : err.code === 'ENOTDIR' || err.code === 'EEXIST' ? 'a file is in the way' : err.code === 'EROFS' ? 'read-only file system'
      : err.code === 'ENOSPC' ? 'the disk is full' : err.message;
    throw new CliError(`cannot write to the output folder ${dir}: ${why}`);
  }
  return dir;
}
