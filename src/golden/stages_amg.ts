/**
 * Golden stage of "segment everything": the official automatic mask generator's records on the
 * case's image, `amg.RUN.*` (RUN = grid, crops), with the settings of the file's metadata key
 * `amg` (see /work/shared/golden/README.md and tools/golden/make_golden.py).
 *
 * Rows: `count`; per record, in the reference's order: `masks_bits` (the binary-mask rule: where our
 * mask differs, our logit there, from the record's low-res logits upsampled to its crop on the CPU),
 * `bbox`, `predicted_iou`, `stability_score`, `point_coords`, `crop_box` (the float bound), and
 * `area` (within the pixels the mask rule let differ in that record). A count that differs fails
 * every per-record row (they cannot be paired).
 */
import { AutomaticMaskGenerator, type AutomaticMaskGeneratorOptions, type MaskRecord } from '../model/automatic_mask_generator.js';
import { unpackBits, type FloatRow } from './compare.js';
import type { CaseData, GoldenStage } from './case.js';
import { caseModel, findDataFile } from './stages.js';

/** The runs of the case: tag -> the official keyword arguments (snake_case). */
export function amgRuns(c: CaseData): Record<string, Record<string, unknown>> {
  const meta = c.tensors.metadata.amg;
  if (!meta) return {};
  return JSON.parse(meta) as Record<string, Record<string, unknown>>;
}

/** The official keyword arguments as this library's options (points_per_side -> pointsPerSide, ...). */
export function amgOptions(kw: Record<string, unknown>): AutomaticMaskGeneratorOptions {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(kw)) {
    const camel = k.replace(/_([a-z0-9])/g, (_, ch: string) => ch.toUpperCase());
    o[camel === 'useM2m' ? 'useM2m' : camel] = v;
  }
  return o as AutomaticMaskGeneratorOptions;
}

/** The EfficientTAM goldens' image predictor resized without antialiasing (torchvision 0.14); SAM 2's with. */
const caseAntialias = (c: CaseData): boolean => !String(c.config?._target_ ?? '').startsWith('efficient_track_anything');

/** Per case and run: our records' masks compared pixel by pixel, for the area rule. */
const differing = new WeakMap<CaseData, Map<string, number[]>>();

/**
 * Our logit at image pixel (y, x) for a record: its low-res logits upsampled to its crop, on the
 * CPU with resizeBilinearCpu's arithmetic (-inf outside the crop).
 */
function pixelLogit(r: MaskRecord, y: number, x: number): number {
  const low = r.lowResLogits!;
  const m = Math.round(Math.sqrt(low.length));
  const [x0, y0, cw, ch] = r.cropBox;
  if (x < x0 || y < y0 || x >= x0 + cw || y >= y0 + ch) return -Infinity;
  const f = Math.fround;
  const sh = f(m / ch), sw = f(m / cw);
  const oy = y - y0, ox = x - x0;
  const ry = Math.max(f(f(sh * f(oy + 0.5)) - 0.5), 0), rx = Math.max(f(f(sw * f(ox + 0.5)) - 0.5), 0);
  const ya = Math.floor(ry), xa = Math.floor(rx);
  const yb = Math.min(ya + 1, m - 1), xb = Math.min(xa + 1, m - 1);
  const ly1 = f(ry - ya), lx1 = f(rx - xa), ly0 = f(1 - ly1), lx0 = f(1 - lx1);
  const at = (yy: number, xx: number) => low[yy * m + xx]!;
  return f(f(ly0 * f(f(lx0 * at(ya, xa)) + f(lx1 * at(ya, xb)))) + f(ly1 * f(f(lx0 * at(yb, xa)) + f(lx1 * at(yb, xb)))));
}

/**
 * "Our logits" for the mask rule: +1 / -1 by our mask where it agrees with the reference (only the
 * differing pixels' logits are looked at), the upsampled logit where it differs.
 */
function maskLogits(records: MaskRecord[], ref: Uint8Array | null, H: number, W: number): Float32Array {
  const out = new Float32Array(records.length * H * W);
  records.forEach((r, i) => {
    const mask = r.segmentation as Uint8Array;
    for (let p = 0; p < H * W; p++) {
      const o = i * H * W + p;
      out[o] = ref && mask[p] !== ref[o] ? pixelLogit(r, Math.floor(p / W), p % W) : mask[p] ? 1 : -1;
    }
  });
  return out;
}

export const amgStage: GoldenStage = {
  name: 'amg',
  produces: (refs) => refs.filter((n) => /^amg\.[a-z0-9_]+\.(count|masks_bits|bbox|area|predicted_iou|stability_score|point_coords|crop_box)$/.test(n)),
  async *run(ctx, c) {
    const { decodeImageFile } = await import('../io/image.js');
    const image = await decodeImageFile(await findDataFile(c, c.tensors.metadata.image ?? ''));
    const model = caseModel(ctx, c);
    const { width: W, height: H } = image;
    const refs = c.tensors.names();
    const diffs = new Map<string, number[]>();
    differing.set(c, diffs);
    for (const [tag, kw] of Object.entries(amgRuns(c))) {
      const key = (k: string) => `amg.${tag}.${k}`;
      if (!refs.includes(key('count'))) continue;
      const gen = new AutomaticMaskGenerator(model, { ...amgOptions(kw), outputMode: 'binary_mask', antialias: caseAntialias(c) });
      const records = await gen.generate(image, { returnLowRes: true });
      yield [key('count'), Float32Array.of(records.length)] as [string, Float32Array];
      if (!refs.includes(key('masks_bits'))) continue;
      const n = records.length;
      // the mask rule's differing pixels per record, for the area row (when the counts agree)
      const refCount = c.tensors.getF32(key('count'))[0]!;
      let ref: Uint8Array | null = null;
      if (n === refCount) {
        ref = unpackBits(c.tensors.getRaw(key('masks_bits')) as Uint8Array, [n, H, W]);
        diffs.set(tag, records.map((r, i) => {
          const mask = r.segmentation as Uint8Array;
          let d = 0;
          for (let p = 0; p < H * W; p++) if (mask[p] !== ref![i * H * W + p]) d++;
          return d;
        }));
      }
      yield [key('masks_bits'), maskLogits(records, ref, H, W)] as [string, Float32Array];
      const flat = (get: (r: MaskRecord) => number[]) => Float32Array.from(records.flatMap(get));
      yield [key('bbox'), flat((r) => r.bbox)] as [string, Float32Array];
      yield [key('area'), flat((r) => [r.area])] as [string, Float32Array];
      yield [key('predicted_iou'), flat((r) => [r.predictedIou])] as [string, Float32Array];
      yield [key('stability_score'), flat((r) => [r.stabilityScore])] as [string, Float32Array];
      yield [key('point_coords'), flat((r) => r.pointCoords[0])] as [string, Float32Array];
      yield [key('crop_box'), flat((r) => r.cropBox)] as [string, Float32Array];
    }
  },
  compare(c, name, got): FloatRow | undefined {
    const m = /^amg\.([a-z0-9_]+)\.area$/.exec(name);
    if (!m) return undefined;
    const ref = c.tensors.getF32(name);
    const maxAbsRef = ref.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    const d = differing.get(c)?.get(m[1]!);
    if (!d || got.length !== ref.length) {
      return { kind: 'float', name, maxAbsErr: Infinity, maxAbsRef, bound: 0, pass: false, note: `length ${got.length}, reference ${ref.length}` };
    }
    let maxAbsErr = 0, bound = 0, pass = true;
    for (let i = 0; i < ref.length; i++) {
      const e = Math.abs(got[i]! - ref[i]!);
      maxAbsErr = Math.max(maxAbsErr, e);
      bound = Math.max(bound, d[i]!);
      if (!(e <= d[i]!)) pass = false;
    }
    return { kind: 'float', name, maxAbsErr, maxAbsRef, bound, pass, note: 'bound: each record\'s differing mask pixels' };
  },
};

