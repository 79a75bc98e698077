/**
 * A CPU transcription of the official automatic mask generator (automatic_mask_generator.py,
 * utils/amg.py, the image predictor's postprocess_masks), for tests: everything after the mask
 * decoder runs here, one candidate at a time, at full resolution, as the reference does. The
 * prompt encoder and mask decoder are the library's (ImagePredictor.decode, checked against the
 * goldens elsewhere); their raw low-res logits and IoUs are read back per batch.
 *
 * Also counts what each filter dropped, so that a test can show its settings exercise them.
 */
import { resizeBilinearCpu } from '../src/kernels/mask_ops.js';
import type { ImageSource } from '../src/kernels/preprocess.js';
import { rleCounts } from '../src/io/rle.js';
import {
  batchedNms, boxXyxyToXywh, buildAllLayerPointGrids, cocoEncodeRle, cropPoints, generateCropBoxes, isBoxNearCropEdge,
  rleToMask, type BoxXYXY, type UncompressedRLE,
} from '../src/model/amg.js';
import { cropImage, type AutomaticMaskGeneratorOptions, type MaskRecord } from '../src/model/automatic_mask_generator.js';
import { ImagePredictor } from '../src/model/image_predictor.js';
import { postprocessCpu } from './helpers.js';

const f = Math.fround;

export interface ReferenceResult {
  records: MaskRecord[];
  /** candidates dropped by each filter, over all crops */
  dropped: { iou: number; stability: number; edge: number; nms: number; cropNms: number };
  /** low-res pixels the hole / sprinkle postprocessing changed */
  postprocessed: number;
  candidates: number;
}

interface Cand {
  logits: Float32Array; // crop-size logits [ch, cw]
  iou: number;
  point: [number, number];
  stability?: number;
  box?: BoxXYXY;
  rle?: UncompressedRLE;
}

/** calculate_stability_score on one mask's logits. */
function stabilityScore(logits: Float32Array, t: number, off: number): number {
  const hi = f(t + off), lo = f(t - off);
  let inter = 0, union = 0;
  for (const v of logits) { if (v > hi) inter++; if (v > lo) union++; }
  return f(f(inter) / f(union));
}

/** batched_mask_to_box for one mask [h, w] (0/1): XYXY of the set pixels, [0, 0, 0, 0] if none. */
function maskToBox(mask: Uint8Array, h: number, w: number): BoxXYXY {
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    if (!mask[y * w + x]) continue;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  return x1 < x0 ? [0, 0, 0, 0] : [x0, y0, x1, y1];
}

export async function generateReference(model: ConstructorParameters<typeof ImagePredictor>[0], image: ImageSource,
  opts: AutomaticMaskGeneratorOptions): Promise<ReferenceResult> {
  const o = {
    pointsPerSide: 32, pointsPerBatch: 64, predIouThresh: 0.8, stabilityScoreThresh: 0.95, stabilityScoreOffset: 1.0,
    maskThreshold: 0.0, boxNmsThresh: 0.7, cropNLayers: 0, cropNmsThresh: 0.7, cropOverlapRatio: 512 / 1500,
    cropNPointsDownscaleFactor: 1, minMaskRegionArea: 0, outputMode: 'binary_mask', useM2m: false, multimaskOutput: true,
    ...opts,
  };
  const grids = buildAllLayerPointGrids(o.pointsPerSide!, o.cropNLayers, o.cropNPointsDownscaleFactor);
  const predictor = new ImagePredictor(model, { antialias: opts.antialias ?? true });
  const { width: W, height: H } = image;
  const m = model.promptEncoder.maskInputSize;
  const dropped = { iou: 0, stability: 0, edge: 0, nms: 0, cropNms: 0 };
  let postprocessed = 0, candidates = 0;

  // _predict's masks: postprocess_masks (holes, sprinkles on the low-res logits; predictor threshold 0), then the resize
  const masksOf = (low: Float32Array, planes: number, ch: number, cw: number): Float32Array[] => {
    const post = o.minMaskRegionArea > 0 ? postprocessCpu(low, m, m, o.minMaskRegionArea, o.minMaskRegionArea) : low;
    for (let i = 0; i < low.length; i++) if (post[i] !== low[i]) postprocessed++;
    const up = resizeBilinearCpu(post, planes, m, m, ch, cw);
    return Array.from({ length: planes }, (_, p) => up.subarray(p * ch * cw, (p + 1) * ch * cw));
  };
  const decode = async (pts: [number, number][], maskInput?: Float32Array, multimask = o.multimaskOutput) => {
    const d = predictor.decode({ points: pts.map((p) => [p]), labels: pts.map(() => [1]), maskInput, multimask });
    // one readback: the raw low-res logits, then the IoUs
    const ctx = predictor.ctx;
    const both = ctx.empty([d.lowRes.size + d.iou.size]);
    ctx.copy(d.lowRes, both, d.lowRes.size * 4);
    ctx.copy(d.iou, both, d.iou.size * 4, 0, d.lowRes.size * 4);
    const data = await both.read();
    both.release();
    d.release();
    return { low: data.subarray(0, d.lowRes.size), iou: data.subarray(d.lowRes.size), M: d.numMasks };
  };

  const { cropBoxes, layerIdxs } = generateCropBoxes(H, W, o.cropNLayers, o.cropOverlapRatio);
  const all: { c: Cand; crop: BoxXYXY }[] = [];
  for (let ci = 0; ci < cropBoxes.length; ci++) {
    const crop = cropBoxes[ci]!;
    const [x0, y0, x1, y1] = crop;
    const cw = x1 - x0, ch = y1 - y0;
    predictor.setImage(cropImage(image, crop));
    const pf = cropPoints(grids[layerIdxs[ci]!]!, cw, ch);
    const points = Array.from({ length: pf.length / 2 }, (_, i): [number, number] => [pf[2 * i]!, pf[2 * i + 1]!]);
    let data: Cand[] = [];
    for (let b = 0; b < points.length; b += o.pointsPerBatch) {
      const pts = points.slice(b, b + o.pointsPerBatch);
      const { low, iou, M } = await decode(pts);
      let batch: Cand[] = masksOf(low, pts.length * M, ch, cw).map((logits, k) => ({ logits, iou: iou[k]!, point: pts[Math.floor(k / M)]! }));
      candidates += batch.length;
      if (o.useM2m) {
        // refine_with_m2m: every mask again, its low-res logits (clamped to +-32) as the mask prompt
        const clamped = low.map((v) => Math.min(32, Math.max(-32, v)));
        const refined: Cand[] = [];
        for (let s = 0; s < batch.length; s += o.pointsPerBatch) {
          const n = Math.min(o.pointsPerBatch, batch.length - s);
          const r = await decode(batch.slice(s, s + n).map((c) => c.point), clamped.slice(s * m * m, (s + n) * m * m), false);
          masksOf(r.low, n, ch, cw).forEach((logits, k) => refined.push({ logits, iou: r.iou[k]!, point: batch[s + k]!.point }));
        }
        batch = refined;
      }
      if (o.predIouThresh > 0) {
        const keep = batch.filter((c) => c.iou > o.predIouThresh);
        dropped.iou += batch.length - keep.length;
        batch = keep;
      }
      for (const c of batch) c.stability = stabilityScore(c.logits, o.maskThreshold, o.stabilityScoreOffset);
      if (o.stabilityScoreThresh > 0) {
        const keep = batch.filter((c) => c.stability! >= o.stabilityScoreThresh);
        dropped.stability += batch.length - keep.length;
        batch = keep;
      }
      const kept: Cand[] = [];
      for (const c of batch) {
        const bin = Uint8Array.from(c.logits, (v) => (v > f(o.maskThreshold) ? 1 : 0));
        c.box = maskToBox(bin, ch, cw);
        if (isBoxNearCropEdge(c.box, crop, [0, 0, W, H])) { dropped.edge++; continue; }
        // uncrop_masks (zero padding) and the RLE of the full-size mask
        const full = new Uint8Array(H * W);
        for (let y = 0; y < ch; y++) full.set(bin.subarray(y * cw, (y + 1) * cw), (y0 + y) * W + x0);
        c.rle = { size: [H, W], counts: rleCounts(full, H, W) };
        kept.push(c);
      }
      data = data.concat(kept);
    }
    const keep = batchedNms(data.map((c) => c.box!), Float32Array.from(data, (c) => c.iou), o.boxNmsThresh);
    dropped.nms += data.length - keep.length;
    for (const i of keep) {
      const c = data[i]!;
      all.push({ c: { ...c, box: [c.box![0] + x0, c.box![1] + y0, c.box![2] + x0, c.box![3] + y0], point: [f(c.point[0] + x0), f(c.point[1] + y0)] }, crop });
    }
  }
  let final = all;
  if (cropBoxes.length > 1) {
    const scores = Float32Array.from(all, (a) => 1 / ((a.crop[2] - a.crop[0]) * (a.crop[3] - a.crop[1])));
    const keep = batchedNms(all.map((a) => a.c.box!), scores, o.cropNmsThresh);
    dropped.cropNms += all.length - keep.length;
    final = keep.map((i) => all[i]!);
  }
  predictor.reset();
  const records = final.map(({ c, crop }): MaskRecord => ({
    segmentation: o.outputMode === 'coco_rle' ? cocoEncodeRle(c.rle!) : o.outputMode === 'binary_mask' ? rleToMask(c.rle!) : c.rle!,
    area: c.rle!.counts.reduce((a, n, i) => a + (i % 2 ? n : 0), 0),
    bbox: boxXyxyToXywh(c.box!),
    predictedIou: c.iou,
    pointCoords: [c.point],
    stabilityScore: c.stability!,
    cropBox: boxXyxyToXywh(crop),
  }));
  return { records, dropped, postprocessed, candidates };
}
