/**
 * The CPU helpers of the automatic mask generator, after the official `utils/amg.py`
 * (efficient_track_anything/utils/amg.py, the same as SAM 2's): point grids, crop boxes, boxes and
 * points back in the image's frame, run-length encodings of the output masks, and torchvision's
 * box NMS with the order PyTorch (1.13, CPU) gives its result.
 *
 * What runs on every candidate mask (stability score, thresholds, boxes, the NMS inside a crop) is
 * on the GPU (kernels/mask_stats.ts, kernels/nms.ts); what is here runs on the few numbers of a
 * crop or of the survivors.
 */
import { rleToString } from '../io/rle.js';

const f = Math.fround;

/** [x0, y0, x1, y1] in pixels (x1, y1 exclusive for crops; the last pixel's index for mask boxes). */
export type BoxXYXY = [number, number, number, number];

/** An uncompressed RLE: column-major run lengths starting with zeros (pycocotools' `frPyObjects` input). */
export interface UncompressedRLE {
  size: [number, number];
  counts: number[];
}

/** A COCO RLE as pycocotools' `encode` gives it (counts as its compressed string). */
export interface CocoRLE {
  size: [number, number];
  counts: string;
}

/**
 * build_point_grid: n x n points evenly spaced in [0, 1]^2, cell centres, x fastest.
 * numpy.linspace(1/(2n), 1 - 1/(2n), n) in float64: start + i * step, the last one exactly the stop
 * (n = 1: the start). Returns [n*n, 2] as (x, y) pairs in a Float64Array.
 */
export function buildPointGrid(n: number): Float64Array {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`buildPointGrid: ${n} points per side is not a positive integer`);
  const offset = 1 / (2 * n);
  const start = offset, stop = 1 - offset;
  const side = new Float64Array(n);
  const step = (stop - start) / (n - 1);
  for (let i = 0; i < n; i++) side[i] = n === 1 ? start : i * step + start;
  if (n > 1) side[n - 1] = stop;
  const out = new Float64Array(n * n * 2);
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
    out[(y * n + x) * 2] = side[x]!;
    out[(y * n + x) * 2 + 1] = side[y]!;
  }
  return out;
}

/** build_all_layer_point_grids: layer i has int(n / scale^i) points per side. */
export function buildAllLayerPointGrids(nPerSide: number, nLayers: number, scalePerLayer: number): Float64Array[] {
  const grids: Float64Array[] = [];
  for (let i = 0; i <= nLayers; i++) grids.push(buildPointGrid(Math.trunc(nPerSide / scalePerLayer ** i)));
  return grids;
}

/**
 * generate_crop_boxes: the whole image (layer 0), then for layer i = 1..nLayers a (2^i x 2^i) grid
 * of overlapping crops, listed x-major (all crops of the first column of x0, then the next: the
 * reference's itertools.product(x0s, y0s)). Boxes are XYXY, x1/y1 exclusive and clipped to the image.
 */
export function generateCropBoxes(imH: number, imW: number, nLayers: number, overlapRatio: number): { cropBoxes: BoxXYXY[]; layerIdxs: number[] } {
  const cropBoxes: BoxXYXY[] = [[0, 0, imW, imH]];
  const layerIdxs = [0];
  const shortSide = Math.min(imH, imW);
  const cropLen = (origLen: number, nCrops: number, overlap: number) => Math.trunc(Math.ceil((overlap * (nCrops - 1) + origLen) / nCrops));
  for (let layer = 0; layer < nLayers; layer++) {
    const nPerSide = 2 ** (layer + 1);
    const overlap = Math.trunc(overlapRatio * shortSide * (2 / nPerSide));
    const cropW = cropLen(imW, nPerSide, overlap), cropH = cropLen(imH, nPerSide, overlap);
    const x0s = Array.from({ length: nPerSide }, (_, i) => Math.trunc((cropW - overlap) * i));
    const y0s = Array.from({ length: nPerSide }, (_, i) => Math.trunc((cropH - overlap) * i));
    for (const x0 of x0s) for (const y0 of y0s) {
      cropBoxes.push([x0, y0, Math.min(x0 + cropW, imW), Math.min(y0 + cropH, imH)]);
      layerIdxs.push(layer + 1);
    }
  }
  return { cropBoxes, layerIdxs };
}

/**
 * The grid points of a crop in the crop's pixels, as the reference has them: the float64 grid
 * times the crop's (w, h), then float32 (torch.as_tensor(..., dtype=float32)). [n, 2] (x, y).
 */
export function cropPoints(grid: Float64Array, cropW: number, cropH: number): Float32Array {
  const out = new Float32Array(grid.length);
  for (let i = 0; i < grid.length; i += 2) {
    out[i] = grid[i]! * cropW;
    out[i + 1] = grid[i + 1]! * cropH;
  }
  return out;
}

/** box_xyxy_to_xywh (on the integer or float32 values the reference holds). */
export function boxXyxyToXywh(b: readonly number[]): [number, number, number, number] {
  return [b[0]!, b[1]!, f(b[2]! - b[0]!), f(b[3]! - b[1]!)];
}

/** uncrop_points: a crop's float32 points plus its offset, in float32. */
export function uncropPoint(x: number, y: number, crop: BoxXYXY): [number, number] {
  return [f(x + crop[0]), f(y + crop[1])];
}

/**
 * is_box_near_crop_edge for one box (XYXY, crop frame): after uncropping, a side within `atol` (20)
 * pixels of the crop's side that is not also within `atol` of the image's side.
 */
export function isBoxNearCropEdge(box: readonly number[], crop: BoxXYXY, orig: BoxXYXY, atol = 20): boolean {
  const off = [crop[0], crop[1], crop[0], crop[1]];
  for (let k = 0; k < 4; k++) {
    const v = box[k]! + off[k]!;
    if (Math.abs(v - crop[k]!) <= atol && !(Math.abs(v - orig[k]!) <= atol)) return true;
  }
  return false;
}

// ------------------------------------------------------------------------------------------ RLE

/** area_from_rle: the pixels in the mask (the odd runs). */
export function areaFromRle(rle: UncompressedRLE): number {
  let a = 0;
  for (let i = 1; i < rle.counts.length; i += 2) a += rle.counts[i]!;
  return a;
}

/** rle_to_mask: a 0/1 mask [H, W], row-major. */
export function rleToMask(rle: UncompressedRLE): Uint8Array {
  const [h, w] = rle.size;
  const mask = new Uint8Array(h * w);
  let k = 0, v = 0;
  for (const n of rle.counts) {
    if (v) for (let j = k; j < k + n; j++) mask[(j % h) * w + Math.floor(j / h)] = 1;
    k += n;
    v ^= 1;
  }
  if (k !== h * w) throw new Error(`rleToMask: the runs cover ${k} pixels, the mask has ${h * w}`);
  return mask;
}

/** coco_encode_rle: pycocotools' compressed form of an uncompressed RLE. */
export function cocoEncodeRle(rle: UncompressedRLE): CocoRLE {
  return { size: [rle.size[0], rle.size[1]], counts: rleToString(rle.counts) };
}

/**
 * The run lengths of a bit stream of `n` bits (bit k at word k >> 5, bit k & 31, from `offset`
 * words), zeros first, as mask_to_rle_pytorch gives them. Whole words of zeros or ones are skipped
 * at once, so a mask costs about its number of runs plus n / 32.
 */
export function runLengths(words: Uint32Array, offset: number, n: number): number[] {
  const counts: number[] = [];
  let cur = 0, run = 0, k = 0;
  while (k < n) {
    const w = words[offset + (k >>> 5)]!;
    if ((k & 31) === 0 && k + 32 <= n && (w === 0 || w === 0xffffffff)) {
      const v = w === 0 ? 0 : 1;
      if (v !== cur) { counts.push(run); run = 0; cur = v; }
      run += 32;
      k += 32;
      continue;
    }
    const v = (w >>> (k & 31)) & 1;
    if (v !== cur) { counts.push(run); run = 0; cur = v; }
    run++;
    k++;
  }
  counts.push(run);
  return counts;
}

/** A 0/1 mask of `n` pixels from the same bit stream (row-major bits give a row-major mask). */
export function unpackBitStream(words: Uint32Array, offset: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let k = 0; k < n; k++) out[k] = (words[offset + (k >>> 5)]! >>> (k & 31)) & 1;
  return out;
}

// ------------------------------------------------------------------------------------------ NMS

/**
 * Whether box NMS suppresses box b after keeping box a, as torchvision's CPU kernel decides it:
 * areas, intersection and union in float32, then float32(inter / union) > threshold (a double).
 */
export function nmsSuppresses(a: readonly number[], b: readonly number[], threshold: number): boolean {
  const areaA = f(f(a[2]! - a[0]!) * f(a[3]! - a[1]!));
  const areaB = f(f(b[2]! - b[0]!) * f(b[3]! - b[1]!));
  const w = Math.max(0, f(Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!)));
  const h = Math.max(0, f(Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!)));
  const inter = f(w * h);
  return f(inter / f(f(areaA + areaB) - inter)) > threshold;
}

/**
 * torchvision.ops.batched_nms with every box in one category, as the generator calls it (on the
 * CPU): greedy NMS over the boxes by decreasing score (a stable sort: equal scores keep their
 * order), then the kept indices in the order batched_nms returns them. Up to 1000 boxes that is
 * the NMS order; above (boxes.numel() > 4000), torchvision takes its other path, which sorts the
 * kept indices (ascending) by score again with PyTorch's unstable CPU sort: equal scores then come
 * out in the order libstdc++'s std::sort leaves them (`torchSortDescending`).
 */
export function batchedNms(boxes: readonly (readonly number[])[], scores: ArrayLike<number>, threshold: number): number[] {
  const n = boxes.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => (scores[j]! - scores[i]!) || i - j);
  const suppressed = new Uint8Array(n);
  const keep: number[] = [];
  for (let a = 0; a < n; a++) {
    const i = order[a]!;
    if (suppressed[i]) continue;
    keep.push(i);
    for (let b = a + 1; b < n; b++) {
      const j = order[b]!;
      if (!suppressed[j] && nmsSuppresses(boxes[i]!, boxes[j]!, threshold)) suppressed[j] = 1;
    }
  }
  return batchedNmsOrder(keep, scores, n);
}

/** The order batched_nms returns the kept indices in (see batchedNms), from the NMS's own order. */
export function batchedNmsOrder(keep: readonly number[], scores: ArrayLike<number>, numBoxes: number): number[] {
  if (numBoxes * 4 <= 4000) return [...keep];
  const byIndex = [...keep].sort((a, b) => a - b);
  const perm = torchSortDescending(byIndex.map((i) => scores[i]!));
  return perm.map((p) => byIndex[p]!);
}

/**
 * The permutation `torch.sort(values, descending=True)` gives on the CPU in PyTorch 1.13: libstdc++'s
 * std::sort (introsort: median-of-three quicksort down to runs of 16, heapsort past 2 log2(n)
 * levels, then insertion sort) over (value, index) pairs compared by value only, NaN first. Ties
 * come out in the order that algorithm leaves them, which is what the reference's unstable sort did.
 */
export function torchSortDescending(values: readonly number[]): number[] {
  const n = values.length;
  const v = values.slice();
  const ix = Array.from({ length: n }, (_, i) => i);
  // comp(a, b): a goes before b
  const comp = (a: number, b: number) => (Number.isNaN(a) && !Number.isNaN(b)) || a > b;
  const swap = (i: number, j: number) => {
    const t = v[i]!; v[i] = v[j]!; v[j] = t;
    const u = ix[i]!; ix[i] = ix[j]!; ix[j] = u;
  };
  const at = (i: number) => v[i]!;
  const set = (i: number, val: number, idx: number) => { v[i] = val; ix[i] = idx; };

  const moveMedianToFirst = (result: number, a: number, b: number, c: number) => {
    if (comp(at(a), at(b))) {
      if (comp(at(b), at(c))) swap(result, b);
      else if (comp(at(a), at(c))) swap(result, c);
      else swap(result, a);
    } else if (comp(at(a), at(c))) swap(result, a);
    else if (comp(at(b), at(c))) swap(result, c);
    else swap(result, b);
  };
  const unguardedPartition = (first: number, last: number, pivot: number) => {
    for (;;) {
      while (comp(at(first), at(pivot))) first++;
      last--;
      while (comp(at(pivot), at(last))) last--;
      if (!(first < last)) return first;
      swap(first, last);
      first++;
    }
  };
  // heap operations on [first, first + len), as libstdc++'s __adjust_heap / __push_heap
  const pushHeap = (first: number, hole: number, top: number, val: number, idx: number) => {
    let parent = Math.trunc((hole - 1) / 2);
    while (hole > top && comp(at(first + parent), val)) {
      set(first + hole, at(first + parent), ix[first + parent]!);
      hole = parent;
      parent = Math.trunc((hole - 1) / 2);
    }
    set(first + hole, val, idx);
  };
  const adjustHeap = (first: number, hole: number, len: number, val: number, idx: number) => {
    const top = hole;
    let second = hole;
    while (second < Math.trunc((len - 1) / 2)) {
      second = 2 * (second + 1);
      if (comp(at(first + second), at(first + second - 1))) second--;
      set(first + hole, at(first + second), ix[first + second]!);
      hole = second;
    }
    if ((len & 1) === 0 && second === Math.trunc((len - 2) / 2)) {
      second = 2 * (second + 1);
      set(first + hole, at(first + second - 1), ix[first + second - 1]!);
      hole = second - 1;
    }
    pushHeap(first, hole, top, val, idx);
  };
  const heapSort = (first: number, last: number) => {
    const len = last - first;
    if (len >= 2) {
      for (let parent = Math.trunc((len - 2) / 2); ; parent--) {
        adjustHeap(first, parent, len, at(first + parent), ix[first + parent]!);
        if (parent === 0) break;
      }
    }
    while (last - first > 1) {
      last--;
      const val = at(last), idx = ix[last]!;
      set(last, at(first), ix[first]!);
      adjustHeap(first, 0, last - first, val, idx);
    }
  };
  const introsortLoop = (first: number, last: number, depth: number) => {
    while (last - first > 16) {
      if (depth === 0) { heapSort(first, last); return; }
      depth--;
      const mid = first + Math.trunc((last - first) / 2);
      moveMedianToFirst(first, first + 1, mid, last - 1);
      const cut = unguardedPartition(first + 1, last, first);
      introsortLoop(cut, last, depth);
      last = cut;
    }
  };
  const unguardedLinearInsert = (last: number) => {
    const val = at(last), idx = ix[last]!;
    let next = last - 1;
    while (comp(val, at(next))) {
      set(last, at(next), ix[next]!);
      last = next;
      next--;
    }
    set(last, val, idx);
  };
  const insertionSort = (first: number, last: number) => {
    if (first === last) return;
    for (let i = first + 1; i < last; i++) {
      if (comp(at(i), at(first))) {
        const val = at(i), idx = ix[i]!;
        for (let j = i; j > first; j--) set(j, at(j - 1), ix[j - 1]!);
        set(first, val, idx);
      } else {
        unguardedLinearInsert(i);
      }
    }
  };
  if (n > 1) {
    introsortLoop(0, n, 2 * (31 - Math.clz32(n)));
    if (n > 16) {
      insertionSort(0, 16);
      for (let i = 16; i < n; i++) unguardedLinearInsert(i);
    } else {
      insertionSort(0, n);
    }
  }
  return ix;
}
