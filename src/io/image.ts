/**
 * Image decoding for Node. The reference decodes with Pillow (libjpeg-turbo, ISLOW IDCT, fancy
 * upsampling); `sharp` (libvips + mozjpeg's libjpeg-turbo code) gives byte-identical RGB for the
 * JPEGs of the goldens, so that is what is used here. `sharp` is an optional peer dependency,
 * loaded on the first call (a MissingPackageError says to install it), so importing this module
 * costs nothing in code that never decodes files, and browser bundles leave it alone.
 *
 *   const image = await decodeImageFile('photo.jpg');   // { data, width, height, channels: 3 }
 *   predictor.setImage(image);
 */
import { checkImageSize, MAX_IMAGE_PIXELS } from './image_size.js';
import { loadSharp } from './sharp.js';

/** Decoded 8-bit pixels, row-major, interleaved channels. */
export interface DecodedImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3 | 4;
}

export interface DecodeOptions {
  /** largest image decoded, in pixels (default MAX_IMAGE_PIXELS, 2^27) */
  maxPixels?: number;
}

/**
 * Decodes an image file (JPEG, PNG, WebP, ...) to 8-bit RGB, as Pillow's
 * `Image.open(path).convert("RGB")` does: EXIF orientation is NOT applied, alpha is dropped.
 * The size in the file's header is checked first: an image of more than `maxPixels` pixels is an
 * ImageSizeError before anything is decoded (a 0.8 MB PNG can hold 16000x16000 pixels).
 */
export async function decodeImageFile(path: string, o: DecodeOptions = {}): Promise<DecodedImage> {
  const sharp = await loadSharp('decodeImageFile');
  const maxPixels = o.maxPixels ?? MAX_IMAGE_PIXELS;
  const meta = await sharp(path).metadata();
  checkImageSize(`decodeImageFile: ${path}`, meta.width ?? 0, meta.height ?? 0, { maxPixels });
  const { data, info } = await sharp(path, { limitInputPixels: maxPixels })
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decodeImageFile: ${path} decoded to ${info.channels} channels, expected 3`);
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width: info.width,
    height: info.height,
    channels: 3,
  };
}
