/**
 * The largest image the library takes, and the check made before anything of that size is
 * decoded or allocated (browser-safe: no Node imports).
 *
 * Memory grows with the pixels at several places: the decoded RGB(A) bytes (3-4 bytes a pixel),
 * their upload, and the masks returned at the image's resolution (1 byte a pixel per mask, 4 as
 * logits). A small file can declare a huge image (a 16000x16000 PNG of one colour is 0.8 MB and
 * decodes to 768 MB). So an image is refused, with an ImageSizeError, when
 *   - its width or height is not a positive integer,
 *   - it has more than MAX_IMAGE_PIXELS pixels (2^27 = 134,217,728: 16384 x 8192, or any photo of
 *     a 108-megapixel phone camera; callers can raise it per call), or
 *   - a side exceeds the GPU's largest texture (maxTextureDimension2D: 8192 on most devices,
 *     16384 on many; frames and drawn masks are textures).
 */

/** Default largest pixel count (width * height) of an image: 2^27. */
export const MAX_IMAGE_PIXELS = 2 ** 27;

/** An image whose size the library does not take; the message says why and what the limit is. */
export class ImageSizeError extends Error {
  override name = 'ImageSizeError';
}

export interface ImageSizeLimits {
  /** largest width * height (default MAX_IMAGE_PIXELS) */
  maxPixels?: number;
  /** largest width or height (e.g. the device's maxTextureDimension2D) */
  maxSide?: number;
}

/** Throws an ImageSizeError (its message starting with `what`) unless width x height is an image the library takes. */
export function checkImageSize(what: string, width: number, height: number, limits: ImageSizeLimits = {}): void {
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) {
    throw new ImageSizeError(`${what}: the size ${width}x${height} is not two positive integers`);
  }
  const maxPixels = limits.maxPixels ?? MAX_IMAGE_PIXELS;
  if (width * height > maxPixels) {
    const mp = (n: number) => `${(n / 1e6).toFixed(1)} megapixels`;
    throw new ImageSizeError(
      `${what}: ${width}x${height} is ${mp(width * height)}, more than the ${mp(maxPixels)} (${maxPixels} pixels) ` +
      'taken by default; downscale it, or raise the limit (maxPixels) if the memory is there');
  }
  const side = limits.maxSide;
  if (side !== undefined && (width > side || height > side)) {
    throw new ImageSizeError(`${what}: ${width}x${height} has a side longer than the GPU's largest texture (${side} pixels); downscale it`);
  }
}
