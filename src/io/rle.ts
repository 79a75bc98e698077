/**
 * COCO run-length encoding of binary masks, as pycocotools and the official `utils/amg.py` write
 * it: run lengths taken COLUMN-MAJOR (down each column, left to right), starting with a run of
 * zeros (so a mask whose first pixel is set starts with a 0), and pycocotools' compressed string
 * form (`rleToString`: 5 bits a character, each count as a delta from the count two back).
 */

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
