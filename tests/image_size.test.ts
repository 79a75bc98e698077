/**
 * Images too large to take are refused before they are decoded (a decode bomb: a PNG of a few
 * kilobytes declaring 16000x16000 pixels), in the Node decoder and the command line's frames
 * reader; and images of many different sizes do not grow GPU memory or compile pipelines.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { deflateSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { openFrames } from '../src/cli/frames.js';
import { CliError } from '../src/cli/args.js';
import { loadCase } from '../src/golden/case.js';
import { decodeImageFile } from '../src/io/image.js';
import { ImageSizeError, MAX_IMAGE_PIXELS } from '../src/io/image_size.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { ImagePredictor } from '../src/model/image_predictor.js';
import { gpu } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'etam-image-size-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A valid 1-bit greyscale PNG of W x H black pixels (deflate makes it a few kB). */
function blackPng(W: number, H: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => { let c = 0xffffffff; for (const x of b) c = crcTable[(c ^ x) & 255]! ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const c = Buffer.alloc(4); c.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(W, 0); ihdr.writeUInt32BE(H, 4);
  ihdr[8] = 1; ihdr[9] = 0; // 1 bit, greyscale
  const raw = Buffer.alloc(H * (1 + Math.ceil(W / 8))); // each row: filter 0, then zero bits
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

describe('decode bombs', () => {
  const bomb = join(dir, 'bomb.png');
  writeFileSync(bomb, blackPng(16000, 16000));

  it('decodeImageFile refuses a 16000x16000 PNG before decoding it', async () => {
    const rss = process.memoryUsage().rss;
    const e = await decodeImageFile(bomb).then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(ImageSizeError);
    expect((e as Error).message).toMatch(/16000x16000 is 256.0 megapixels, more than the 134.2 megapixels/);
    // decoded, it would be 768 MB of RGB
    expect(process.memoryUsage().rss - rss).toBeLessThan(100 * 2 ** 20);
    // a smaller image decodes, unless the caller's limit is lower
    const small = join(dir, 'small.png');
    writeFileSync(small, blackPng(40, 30));
    expect((await decodeImageFile(small)).width).toBe(40);
    await expect(decodeImageFile(small, { maxPixels: 1000 })).rejects.toThrow(ImageSizeError);
    expect(MAX_IMAGE_PIXELS).toBe(2 ** 27);
  });

  it("the command line's frames reader refuses it as frame 0, and as a later frame of another size", async () => {
    const first = join(dir, 'first');
    const later = join(dir, 'later');
    for (const d of [first, later]) rmSync(d, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(first); mkdirSync(later);
    writeFileSync(join(first, '00000.png'), blackPng(16000, 16000));
    await expect(openFrames(first)).rejects.toThrow(CliError);
    await expect(openFrames(first)).rejects.toThrow(/megapixels/);
    writeFileSync(join(later, '00000.png'), blackPng(40, 30));
    writeFileSync(join(later, '00001.png'), blackPng(16000, 16000));
    const frames = await openFrames(later);
    expect((await frames.get(0)).width).toBe(40);
    const rss = process.memoryUsage().rss;
    await expect(frames.get(1)).rejects.toThrow(/frame 1 .*cannot read it as an image/);
    expect(process.memoryUsage().rss - rss).toBeLessThan(100 * 2 ** 20);
    frames.close();
  });
});

describe('many image sizes', () => {
  it('compile nothing after the first and keep GPU memory bounded', async () => {
    const ctx = await gpu();
    const c = await loadCase(resolve(__dirname, '../../shared/golden/tiny'));
    const model = EfficientTAM.load(ctx, c.weights, c.config);
    const p = new ImagePredictor(model);
    const held: number[] = [];
    let compiled = 0;
    for (let k = 0; k < 10; k++) {
      const W = 1152 + 8 * k, H = 864 + 6 * k; // about 1 MP each, all different
      p.setImage({ data: new Uint8Array(W * H * 3).fill(40 + k), width: W, height: H, channels: 3 });
      await p.predict({ points: [[W / 2, H / 2]], labels: [1] });
      if (k === 0) compiled = ctx.stats.pipelinesCompiled;
      held.push(ctx.bytesHeld);
    }
    p.reset();
    console.log(`GPU bytes held after each size (MB): ${held.map((b) => (b / 1e6).toFixed(1)).join(' ')}`);
    expect(ctx.stats.pipelinesCompiled).toBe(compiled);
    expect(held.at(-1)! - held[0]!).toBeLessThan(8 * 2 ** 20);
  });
});
